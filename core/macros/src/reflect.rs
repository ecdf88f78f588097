//! Descriptions for code generators (`hardlight_core::reflect`): the
//! `Reflect` impl `#[hardlight::wire]` adds to its type, and the
//! `ReflectState` impl `#[derive(ConnectionState)]` adds.
//!
//! Every impl bounds its field types' `Reflect` impls under a `for<'a>`
//! binder. Such a bound is checked where the impl is used, not where it is
//! declared, so a type with a field that cannot be described (a
//! hand-derived rkyv type) still compiles; only generating a client for it
//! fails, naming the field's type.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Fields, Path, Type};

/// Field types in declaration order, for the `for<'a>` bounds.
fn field_types(fields: &Fields) -> Vec<&Type> {
    fields.iter().map(|f| &f.ty).collect()
}

/// `Fields::Named(...)`, `Fields::Unnamed(...)` or `Fields::Unit`.
fn fields_expr(krate: &Path, fields: &Fields) -> TokenStream {
    let r = quote!(#krate::__private::reflect);
    match fields {
        Fields::Unit => quote!(#r::Fields::Unit),
        Fields::Named(n) => {
            let items = n.named.iter().map(|f| {
                let name = f.ident.as_ref().map(|i| i.to_string().trim_start_matches("r#").to_string());
                let ty = &f.ty;
                quote!((::std::string::String::from(#name), <#ty as #r::Reflect>::shape(reg)))
            });
            quote!(#r::Fields::Named(::std::vec![#(#items),*]))
        }
        Fields::Unnamed(u) => {
            let items = u.unnamed.iter().map(|f| {
                let ty = &f.ty;
                quote!(<#ty as #r::Reflect>::shape(reg))
            });
            quote!(#r::Fields::Unnamed(::std::vec![#(#items),*]))
        }
    }
}

/// Whether a field changes rkyv's archived form (`#[rkyv(with = ...)]` and
/// the like): such a type's layout is not what its Rust fields say.
fn has_rkyv_field_attr(fields: &Fields) -> bool {
    fields.iter().any(|f| f.attrs.iter().any(|a| a.path().is_ident("rkyv")))
}

/// `impl Reflect for T`, or nothing for a generic type or one whose fields
/// carry rkyv attributes (neither can be described from its fields alone).
pub fn wire_impl(input: &DeriveInput, krate: &Path) -> TokenStream {
    if !input.generics.params.is_empty() {
        return TokenStream::new();
    }
    let name = &input.ident;
    let name_str = name.to_string().trim_start_matches("r#").to_string();
    let r = quote!(#krate::__private::reflect);
    let (kind, tys) = match &input.data {
        Data::Struct(s) => {
            if has_rkyv_field_attr(&s.fields) {
                return TokenStream::new();
            }
            let f = fields_expr(krate, &s.fields);
            (quote!(#r::TypeKind::Struct(#f)), field_types(&s.fields))
        }
        Data::Enum(e) => {
            if e.variants.iter().any(|v| has_rkyv_field_attr(&v.fields) || v.discriminant.is_some()) {
                return TokenStream::new();
            }
            let variants = e.variants.iter().map(|v| {
                let vname = v.ident.to_string();
                let f = fields_expr(krate, &v.fields);
                quote!(#r::Variant { name: ::std::string::String::from(#vname), fields: #f })
            });
            let tys = e.variants.iter().flat_map(|v| field_types(&v.fields)).collect();
            (quote!(#r::TypeKind::Enum(::std::vec![#(#variants),*])), tys)
        }
        Data::Union(_) => return TokenStream::new(),
    };
    quote! {
        impl #r::Reflect for #name where #(for<'__hl> #tys: #r::Reflect,)* {
            fn shape(reg: &mut #r::Registry) -> #r::Shape {
                reg.named::<Self>(#name_str, |reg| #kind)
            }
        }
    }
}

/// `impl ReflectState for T` for a `ConnectionState` struct with named fields.
pub fn state_impl(input: &DeriveInput, krate: &Path) -> TokenStream {
    let Data::Struct(s) = &input.data else { return TokenStream::new() };
    let Fields::Named(named) = &s.fields else { return TokenStream::new() };
    let name = &input.ident;
    let name_str = name.to_string();
    let r = quote!(#krate::__private::reflect);
    let tys = field_types(&s.fields);
    let items = named.named.iter().map(|f| {
        let fname = f.ident.as_ref().map(|i| i.to_string().trim_start_matches("r#").to_string());
        let ty = &f.ty;
        quote!((::std::string::String::from(#fname), <#ty as #r::Reflect>::shape(reg)))
    });
    quote! {
        impl #r::ReflectState for #name where #(for<'__hl> #tys: #r::Reflect,)* {
            const NAME: &'static str = #name_str;
            fn fields(reg: &mut #r::Registry) -> ::std::vec::Vec<(::std::string::String, #r::Shape)> {
                ::std::vec![#(#items),*]
            }
        }
    }
}
