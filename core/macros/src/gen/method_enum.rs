//! `<Trait>Method`: the method ids, a `#[repr(u16)]` enum in declaration order.

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use super::Ctx;

pub fn generate(cx: &Ctx<'_>) -> TokenStream {
    let vis = cx.vis;
    let tr_name = &cx.tr_name;
    let method_enum = cx.method_enum();
    let methods = &cx.service.methods;
    let variants: Vec<_> = methods.iter().map(|m| &m.variant).collect();
    let names: Vec<_> = methods.iter().map(|m| m.name.as_str()).collect();
    let ids: Vec<_> = (0..methods.len()).map(|i| Literal::u16_unsuffixed(i as u16)).collect();
    let variant_docs = methods.iter().map(|m| {
        if m.docs.is_empty() {
            let doc = format!("`{}::{}`.", tr_name, m.name);
            quote!(#[doc = #doc])
        } else {
            let docs = &m.docs;
            quote!(#(#docs)*)
        }
    });
    let doc = format!(
        "The methods of `{tr_name}`, by wire id: a method's id is its position in the trait, so \
         appending methods keeps old ids valid while reordering or inserting breaks old clients."
    );
    quote! {
        #[doc = #doc]
        #[derive(
            ::core::fmt::Debug,
            ::core::clone::Clone,
            ::core::marker::Copy,
            ::core::cmp::PartialEq,
            ::core::cmp::Eq,
            ::core::hash::Hash
        )]
        #[repr(u16)]
        #vis enum #method_enum {
            #( #variant_docs #variants = #ids, )*
        }

        impl #method_enum {
            /// Every method, in id order.
            pub const ALL: &'static [Self] = &[#(Self::#variants),*];
            /// Every method's name as written in the trait, in id order.
            pub const NAMES: &'static [&'static str] = &[#(#names),*];

            /// The id this method has on the wire.
            pub fn id(self) -> u16 {
                self as u16
            }

            /// The method with wire id `id`, if there is one.
            pub fn from_id(id: u16) -> ::core::option::Option<Self> {
                match id {
                    #( #ids => ::core::option::Option::Some(Self::#variants), )*
                    _ => ::core::option::Option::None,
                }
            }

            /// The method's name as written in the trait.
            pub fn name(self) -> &'static str {
                Self::NAMES[self as usize]
            }
        }

        impl ::core::fmt::Display for #method_enum {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(self.name())
            }
        }
    }
}
