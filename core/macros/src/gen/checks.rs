//! Compile-time checks that every argument, output, error and event type
//! can travel, spanned on the type so that `Wire`'s message ("`X` cannot be
//! sent over HardLight") points at it.
//!
//! Each type is checked once, as a where-clause of a hidden trait emitted
//! before every other generated item. rustc checks item signatures (where
//! HardLight's generated input structs also meet rkyv's bounds) before
//! function bodies, and reports a failed where-clause of a trait with the
//! bound's own message, so `Wire`'s diagnostic comes first, ahead of
//! rkyv's errors from the generated structs (`tests/ui/not_archivable`).
//! (A call of a function bounded by `Wire` gives the same message, but last:
//! bodies are checked after signatures.)

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::Type;

use super::Ctx;
use crate::model::Output;

pub fn generate(cx: &Ctx<'_>) -> TokenStream {
    let krate = cx.krate();
    let mut seen: Vec<String> = Vec::new();
    let mut bounds = TokenStream::new();
    let mut check = |ty: &Type| {
        let text = ty.to_token_stream().to_string();
        if seen.contains(&text) {
            return;
        }
        seen.push(text);
        bounds.extend(quote_spanned! {ty.span()=> #ty: __HardlightWire, });
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
    hidden_wire_check(krate, bounds)
}

/// The hidden trait whose where-clauses (`Type: __HardlightWire, ...`, each
/// spanned on its type) carry the check; shared with `#[hardlight::wire]`.
pub(crate) fn hidden_wire_check(krate: &syn::Path, bounds: TokenStream) -> TokenStream {
    if bounds.is_empty() {
        return TokenStream::new();
    }
    quote! {
        const _: () = {
            use #krate::__private::Wire as __HardlightWire;
            #[allow(dead_code)]
            trait __HardlightWireCheck where #bounds {}
        };
    }
}
