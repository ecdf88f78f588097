//! The service's event types, `#[rpc(events(A, B))]`: each gets its wire
//! id from its position in the list (`A` is 0, `B` is 1), so two event
//! types of one service can never share an id. Listing a type twice is a
//! macro error; declaring it in two services is a compile error
//! (conflicting `Event` impls).

use proc_macro2::{Literal, TokenStream};
use quote::quote_spanned;
use syn::spanned::Spanned;

use super::Ctx;

pub fn generate(cx: &Ctx<'_>) -> TokenStream {
    let krate = cx.krate();
    let mut out = TokenStream::new();
    for (i, ty) in cx.args.events.iter().enumerate() {
        let id = Literal::u16_unsuffixed(i as u16);
        let doc = format!("Event type {i} of `{}` (its position in `#[rpc(events(...))]`).", cx.tr_name);
        // Spanned on the type: if it is not `Wire`, the supertrait's message
        // points at it.
        out.extend(quote_spanned! {ty.span()=>
            #[doc = #doc]
            impl #krate::__private::Event for #ty {
                const TYPE: u16 = #id;
            }
        });
    }
    out
}
