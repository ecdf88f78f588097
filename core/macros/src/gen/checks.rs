//! Compile-time checks that every argument, output, error and event type
//! can travel, spanned on the type so that `Wire`'s message ("`X` cannot be
//! sent over HardLight") points at it.
//!
//! Each type is checked once, as a field type of a struct whose parameter
//! requires `Wire`. Such a bound is checked when items are checked, before
//! any function body, so this message comes before the errors rustc then
//! reports from the generated code that uses the type.

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
        fields.extend(quote_spanned! {ty.span()=> __AssertWire<#ty>, });
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
            struct __AssertWire<T: #krate::Wire>(::core::marker::PhantomData<T>);
            #[allow(dead_code)]
            struct __Check(#fields);
        };
    }
}
