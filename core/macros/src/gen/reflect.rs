//! `impl ReflectService for <Trait>Method`: the service's description for
//! client generators in other languages (`hardlight_core::reflect`).
//!
//! The impl is bounded, under a `for<'a>` binder, on every argument,
//! output, error and event type implementing `Reflect`, so a service that
//! uses a hand-derived rkyv type compiles as before; only describing it
//! fails.

use proc_macro2::TokenStream;
use quote::quote;
use syn::Type;

use super::Ctx;
use crate::model::Output;

pub fn generate(cx: &Ctx<'_>) -> TokenStream {
    let krate = cx.krate();
    let r = quote!(#krate::__private::reflect);
    let method_enum = cx.method_enum();
    let tr_name = &cx.tr_name;
    let mut tys: Vec<&Type> = Vec::new();
    let methods = cx.service.methods.iter().enumerate().map(|(i, m)| {
        let name = &m.name;
        let id = i as u16;
        let args = m.args.iter().map(|a| {
            let an = a.ident.to_string().trim_start_matches("r#").to_string();
            let ty = &a.ty;
            tys.push(ty);
            quote!((::std::string::String::from(#an), <#ty as #r::Reflect>::shape(reg)))
        });
        let args: Vec<TokenStream> = args.collect();
        let output = match &m.output {
            Output::Unit => quote!(#r::OutputDesc::Plain(#r::Shape::Unit)),
            Output::Plain(t) => {
                tys.push(t);
                quote!(#r::OutputDesc::Plain(<#t as #r::Reflect>::shape(reg)))
            }
            Output::Result { ok, err, .. } => {
                tys.push(ok);
                tys.push(err);
                quote!(#r::OutputDesc::Result {
                    ok: <#ok as #r::Reflect>::shape(reg),
                    err: <#err as #r::Reflect>::shape(reg),
                })
            }
        };
        let idempotent = m.idempotent;
        quote!(#r::MethodDesc {
            name: ::std::string::String::from(#name),
            id: #id,
            args: ::std::vec![#(#args),*],
            output: #output,
            idempotent: #idempotent,
        })
    });
    let methods: Vec<TokenStream> = methods.collect();
    let events = cx.args.events.iter().enumerate().map(|(i, ty)| {
        let id = i as u16;
        tys.push(ty);
        quote!(#r::EventDesc { id: #id, shape: <#ty as #r::Reflect>::shape(reg) })
    });
    let events: Vec<TokenStream> = events.collect();
    quote! {
        impl #r::ReflectService for #method_enum where #(for<'__hl> #tys: #r::Reflect,)* {
            fn describe(reg: &mut #r::Registry) -> #r::ServiceDesc {
                #r::ServiceDesc {
                    name: ::std::string::String::from(#tr_name),
                    fingerprint: Self::FINGERPRINT,
                    methods: ::std::vec![#(#methods),*],
                    events: ::std::vec![#(#events),*],
                }
            }
        }
    }
}
