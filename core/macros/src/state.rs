//! `#[derive(ConnectionState)]`: per-field diff and apply for a state struct.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, LitStr, Path};

/// Most fields a state struct may have (field indexes are one byte).
const MAX_FIELDS: usize = 255;

pub(crate) fn derive(input: TokenStream) -> TokenStream {
    match expand(input) {
        Ok(ts) => ts,
        Err(e) => e.to_compile_error(),
    }
}

fn expand(input: TokenStream) -> syn::Result<TokenStream> {
    let input: DeriveInput = syn::parse2(input)?;
    let mut krate: Path = syn::parse_quote!(::hardlight);
    for attr in &input.attrs {
        if attr.path().is_ident("hardlight") {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("crate") {
                    let s: LitStr = meta.value()?.parse()?;
                    krate = s.parse()?;
                    Ok(())
                } else {
                    Err(meta.error("expected `crate = \"path\"`"))
                }
            })?;
        }
    }
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(&input.generics, "a ConnectionState struct cannot be generic"));
    }
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "ConnectionState can only be derived for a struct with named fields",
        ));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "ConnectionState needs named fields: each one is sent by its index",
        ));
    };
    if fields.named.len() > MAX_FIELDS {
        return Err(syn::Error::new_spanned(
            &input.ident,
            format!("a ConnectionState struct may have at most {MAX_FIELDS} fields"),
        ));
    }
    let reflect = crate::reflect::state_impl(&input, &krate);
    let name = &input.ident;
    let mut names = Vec::new();
    let mut diffs = Vec::new();
    let mut applies = Vec::new();
    let mut asserts = Vec::new();
    for (i, f) in fields.named.iter().enumerate() {
        let ident = f.ident.as_ref().expect("named field");
        let ty = &f.ty;
        let idx = i as u8;
        names.push(ident.to_string());
        diffs.push(quote! {
            if before.is_none_or(|b| b.#ident != self.#ident) {
                w.field(#idx, &self.#ident)?;
            }
        });
        applies.push(quote! {
            #idx => self.#ident = <#ty as #krate::__private::Wire>::decode(archive)?,
        });
        asserts.push(quote_spanned! {ty.span()=>
            __assert_field::<#ty>();
        });
    }
    Ok(quote! {
        const _: () = {
            fn __assert_field<T: #krate::__private::Wire + ::core::cmp::PartialEq + ::core::clone::Clone>() {}
            fn __check() {
                #(#asserts)*
            }
        };

        impl #krate::__private::ConnectionState for #name {
            const FIELDS: &'static [&'static str] = &[#(#names),*];

            fn write_diff(
                &self,
                before: ::core::option::Option<&Self>,
                w: &mut #krate::__private::state_diff::StateWriter,
            ) -> ::core::result::Result<(), #krate::__private::EncodeError> {
                #(#diffs)*
                ::core::result::Result::Ok(())
            }

            fn apply_field(&mut self, index: u8, archive: &[u8]) -> ::core::result::Result<(), #krate::__private::DecodeError> {
                match index {
                    #(#applies)*
                    other => {
                        return ::core::result::Result::Err(#krate::__private::DecodeError(::std::format!(
                            "unknown field {} of state `{}`", other, ::core::stringify!(#name)
                        )))
                    }
                }
                ::core::result::Result::Ok(())
            }
        }

        #reflect
    })
}
