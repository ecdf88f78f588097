//! `<Trait>Method::SCHEMA` and `FINGERPRINT`: what client and server must
//! agree on, hashed at compile time (see `hardlight_core::schema`).
//!
//! Each method's hash covers its position, name, argument names, and every
//! argument and output type *as written* (token text) plus the type's
//! `__HARDLIGHT_SHAPE`: for a `#[hardlight::wire]` type, its name, fields
//! and archived size and alignment; for any other type, nothing more (its
//! name as written is all the macro can see). Every type argument nested in
//! a type (`Vec<Point>`, `(A, B)`, `[T; 4]`) contributes its own shape too.
//! The events' hashes cover each listed type the same way.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::{GenericArgument, PathArguments, Type};

use super::Ctx;
use crate::model::Output;

/// The 64-bit FNV-1a offset basis; must match `hardlight_core::schema`.
const START: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a, the same function as `hardlight_core::schema::hash_bytes`, run
/// here on what the macro knows as text.
fn hash(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Text of a type with whitespace removed, so formatting never matters.
fn type_text(ty: &Type) -> String {
    ty.to_token_stream().to_string().split_whitespace().collect()
}

/// `ty` and every type nested in its generic arguments, tuples, arrays and slices.
fn collect_types<'t>(ty: &'t Type, out: &mut Vec<&'t Type>) {
    out.push(ty);
    match ty {
        Type::Path(p) => {
            for seg in &p.path.segments {
                if let PathArguments::AngleBracketed(ab) = &seg.arguments {
                    for arg in &ab.args {
                        if let GenericArgument::Type(t) = arg {
                            collect_types(t, out);
                        }
                    }
                }
            }
        }
        Type::Tuple(t) => t.elems.iter().for_each(|e| collect_types(e, out)),
        Type::Array(a) => collect_types(&a.elem, out),
        Type::Slice(s) => collect_types(&s.elem, out),
        Type::Paren(p) => collect_types(&p.elem, out),
        Type::Group(g) => collect_types(&g.elem, out),
        _ => {}
    }
}

/// A const expression folding `start` with `ty`'s text and the shapes of
/// `ty` and its nested types.
fn type_hash(cx: &Ctx<'_>, start: u64, ty: &Type) -> TokenStream {
    let krate = cx.krate();
    let h = hash(start, type_text(ty).as_bytes());
    let mut types = Vec::new();
    collect_types(ty, &mut types);
    types.into_iter().fold(quote!(#h), |acc, t| quote!(#krate::__private::schema::mix(#acc, <#t>::__HARDLIGHT_SHAPE)))
}

pub fn generate(cx: &Ctx<'_>) -> TokenStream {
    let krate = cx.krate();
    let method_enum = cx.method_enum();
    let tr_name = &cx.tr_name;
    let methods = cx.service.methods.iter().enumerate().map(|(i, m)| {
        let name = &m.name;
        let mut h = hash(START, format!("method {i} {name}").as_bytes());
        let mut expr = quote!(#h);
        for a in &m.args {
            h = hash(START, format!("arg {}", a.ident.to_string().trim_start_matches("r#")).as_bytes());
            let ty = type_hash(cx, h, &a.ty);
            expr = quote!(#krate::__private::schema::mix(#expr, #ty));
        }
        let outputs: Vec<(&str, &Type)> = match &m.output {
            Output::Unit => Vec::new(),
            Output::Plain(t) => vec![("output", t)],
            Output::Result { ok, err, .. } => vec![("ok", ok), ("err", err)],
        };
        for (what, t) in outputs {
            let ty = type_hash(cx, hash(START, what.as_bytes()), t);
            expr = quote!(#krate::__private::schema::mix(#expr, #ty));
        }
        let idempotent = m.idempotent;
        quote!(#krate::__private::schema::MethodSchema { name: #name, hash: #expr, idempotent: #idempotent })
    });
    let events = cx.args.events.iter().enumerate().map(|(i, ty)| {
        let name = type_text(ty);
        let id = i as u16;
        let h = type_hash(cx, hash(START, format!("event {i}").as_bytes()), ty);
        quote! {
            #krate::__private::schema::EventSchema {
                name: #name,
                id: #id,
                hash: #h,
                type_id: ::core::any::TypeId::of::<#ty>,
            }
        }
    });
    let doc = format!(
        "What a client and a server of `{tr_name}` must agree on: methods, argument, output, error and event \
         types. A generated client sends `FINGERPRINT` when connecting; a server of another schema refuses it."
    );
    quote! {
        impl #method_enum {
            #[doc = #doc]
            pub const SCHEMA: #krate::__private::Schema = {
                #[allow(unused_imports)]
                use #krate::__private::schema::DefaultShape as _;
                const METHODS: &[#krate::__private::schema::MethodSchema] = &[#(#methods),*];
                const EVENTS: &[#krate::__private::schema::EventSchema] = &[#(#events),*];
                let mut fingerprint = #krate::__private::schema::HASH_START;
                let mut i = 0;
                while i < METHODS.len() {
                    fingerprint = #krate::__private::schema::mix(fingerprint, METHODS[i].hash);
                    i += 1;
                }
                let mut i = 0;
                while i < EVENTS.len() {
                    fingerprint = #krate::__private::schema::mix(fingerprint, EVENTS[i].hash);
                    i += 1;
                }
                #krate::__private::Schema { service: #tr_name, methods: METHODS, events: EVENTS, fingerprint }
            };

            /// `SCHEMA.fingerprint`: the value a generated client sends in
            /// the `HardLight-Schema` upgrade header.
            pub const FINGERPRINT: u64 = Self::SCHEMA.fingerprint;
        }
    }
}
