//! Compile-time checks that every argument and output type can travel,
//! spanned on the type so that `Wire`'s message points at it.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::Type;

use super::Ctx;
use crate::model::Output;

pub fn generate(cx: &Ctx<'_>) -> TokenStream {
    let krate = cx.krate();
    let mut asserts = TokenStream::new();
    let mut assert_wire = |ty: &Type| {
        asserts.extend(quote_spanned! {ty.span()=>
            __assert_wire::<#ty>();
        });
    };
    for m in &cx.service.methods {
        for a in &m.args {
            assert_wire(&a.ty);
        }
        match &m.output {
            Output::Unit => {}
            Output::Plain(ty) => assert_wire(ty),
            Output::Result { ok, err, .. } => {
                assert_wire(ok);
                assert_wire(err);
            }
        }
    }
    quote! {
        const _: () = {
            fn __assert_wire<T: #krate::Wire>() {}
            #[allow(dead_code)]
            fn __check() {
                #asserts
            }
        };
    }
}
