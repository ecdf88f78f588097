//! Compile-time checks that every argument, output, error and event type
//! can travel, spanned on the type so that `Wire`'s message ("`X` cannot be
//! sent over HardLight") points at it.
//!
//! Each type is checked once, as the argument of a function bounded by
//! `Wire`: rustc reports such a call with `Wire`'s own message. (Checking it
//! as a struct's bound instead puts the error first but under rkyv's
//! message, so this form is kept; rustc still reports rkyv's errors from
//! the generated input structs before it, see `tests/ui/not_archivable`.)

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::Type;

use super::Ctx;
use crate::model::Output;

pub fn generate(cx: &Ctx<'_>) -> TokenStream {
    let krate = cx.krate();
    let mut seen: Vec<String> = Vec::new();
    let mut fields = TokenStream::new();
    let mut check = |ty: &Type| {
        let text = ty.to_token_stream().to_string();
        if seen.contains(&text) {
            return;
        }
        seen.push(text);
        fields.extend(quote_spanned! {ty.span()=> __assert_wire::<#ty>(); });
    };
    for m in &cx.service.methods {
        for a in &m.args {
            check(&a.ty);
        }
        match &m.output {
            Output::Unit => {}
            Output::Plain(ty) => check(ty),
            Output::Result { ok, err, .. } => {
                check(ok);
                check(err);
            }
        }
    }
    for ty in &cx.args.events {
        check(ty);
    }
    quote! {
        const _: () = {
            fn __assert_wire<T: #krate::__private::Wire>() {}
            #[allow(dead_code)]
            fn __check() {
                #fields
            }
        };
    }
}
