//! The `#[rpc]` entry point: parse and validate the trait, then hand it to
//! the generators in [`crate::gen`], one per emitted item.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Item, ItemTrait};

use crate::model::{Args, Service};

/// The macro's entry point, on `proc_macro2` streams so that it is testable.
pub fn rpc(attr: TokenStream, item: TokenStream) -> TokenStream {
    let parsed = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Trait(t)) => t,
        Ok(other) => {
            let err = syn::Error::new_spanned(
                &other,
                "#[rpc] goes on a trait of `async fn`s, e.g. `#[hardlight::rpc] pub trait Counter { async fn \
                 get(&self) -> u32; }`",
            );
            return with_errors(item, err);
        }
        Err(e) => return with_errors(item, e),
    };
    // The trait is emitted even when something is wrong with it, so that the
    // only errors the user sees are ours, not "cannot find trait" at every use.
    let trait_tokens = trait_item(&parsed);
    let args = match Args::parse(attr) {
        Ok(a) => a,
        Err(e) => return with_errors(trait_tokens, e),
    };
    let service = match Service::from_trait(&parsed) {
        Ok(s) => s,
        Err(e) => return with_errors(trait_tokens, e),
    };
    let generated = crate::gen::generate(&parsed, &service, &args);
    quote! {
        #trait_tokens
        #generated
    }
}

fn with_errors(tokens: TokenStream, err: syn::Error) -> TokenStream {
    let err = err.to_compile_error();
    quote!(#tokens #err)
}

/// The trait as written, plus `#[allow(async_fn_in_trait)]`: handlers run on
/// a single-threaded executor, so the missing `Send` bound is intended.
/// `#[idempotent]` markers are taken off the methods: they are this macro's
/// input (read into the schema), not attributes rustc knows.
fn trait_item(item: &ItemTrait) -> TokenStream {
    let mut item = item.clone();
    for it in &mut item.items {
        if let syn::TraitItem::Fn(f) = it {
            f.attrs.retain(|a| !a.path().is_ident(crate::model::IDEMPOTENT));
        }
    }
    quote! {
        #[allow(async_fn_in_trait)]
        #item
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(attr: TokenStream, item: TokenStream) -> String {
        rpc(attr, item).to_string()
    }

    #[test]
    fn generates_every_item_through_the_crate_path() {
        let out = rpc(
            quote!(crate = "::my::hl"),
            quote! {
                pub trait Counter {
                    async fn increment(&self, amount: u32) -> u32;
                    async fn divide(&self, a: u32, b: u32) -> Result<u32, MathError>;
                }
            },
        );
        let file: syn::File = syn::parse2(out.clone()).expect("expansion parses as items");
        let names: Vec<String> = file
            .items
            .iter()
            .filter_map(|item| match item {
                Item::Trait(t) => Some(t.ident.to_string()),
                Item::Enum(e) => Some(e.ident.to_string()),
                Item::Struct(s) => Some(s.ident.to_string()),
                Item::Type(t) => Some(t.ident.to_string()),
                _ => None,
            })
            .collect();
        for expected in [
            "Counter",
            "CounterMethod",
            "CounterIncrementInput",
            "CounterIncrementOutput",
            "CounterDivideInput",
            "CounterDivideOutput",
            "CounterReply",
            "CounterService",
            "CounterClient",
        ] {
            assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
        }
        let text = out.to_string();
        assert!(text.contains(":: my :: hl :: __private :: service :: encode_result :: < u32 , MathError >"), "{text}");
        assert!(text.contains(":: my :: hl :: __private :: service :: decode_result :: < u32 , MathError >"), "{text}");
        assert!(!text.contains(":: hardlight ::"), "default path leaked: {text}");
    }

    #[test]
    fn attribute_errors() {
        let item = quote!(
            trait T {
                async fn f(&self);
            }
        );
        let out = expand(quote!(crate = "a", crate = "b"), item.clone());
        assert!(out.contains("`crate` given twice"), "{out}");
        let out = expand(quote!(krate = "a"), item.clone());
        assert!(out.contains("unknown #[rpc] argument"), "{out}");
        // Without a usable attribute the trait is still emitted, so that uses
        // of it do not add errors of their own.
        assert!(out.contains("trait T"), "{out}");
        let out = expand(
            quote!(),
            quote!(
                struct S;
            ),
        );
        assert!(out.contains("#[rpc] goes on a trait"), "{out}");
        let out = expand(
            quote!(),
            quote!(
                trait Empty {}
            ),
        );
        assert!(out.contains("has no methods"), "{out}");
    }

    #[test]
    fn colliding_names_and_cfg_are_rejected() {
        let out = expand(
            quote!(),
            quote!(
                trait T {
                    async fn get_x(&self);
                    async fn getX(&self);
                    #[cfg(feature = "x")]
                    async fn y(&self);
                }
            ),
        );
        assert!(out.contains("both become `GetX`"), "{out}");
        assert!(out.contains("#[cfg] is not allowed"), "{out}");
    }

    #[test]
    fn client_type_parameter_avoids_user_types() {
        let out = expand(
            quote!(),
            quote!(
                trait T {
                    async fn f(&self, c: C) -> u8;
                }
            ),
        );
        assert!(out.contains("struct TClient < __C >"), "{out}");
        let out = expand(
            quote!(),
            quote!(
                trait T {
                    async fn f(&self, c: u8) -> u8;
                }
            ),
        );
        assert!(out.contains("struct TClient < C >"), "{out}");
    }

    #[test]
    fn idempotent_marks_reach_the_schema_and_leave_the_trait() {
        let out = expand(
            quote!(),
            quote!(
                trait T {
                    #[idempotent]
                    async fn read(&self) -> u8;
                    async fn write(&self, v: u8);
                }
            ),
        );
        assert!(!out.contains("# [idempotent]"), "the marker is not left for rustc: {out}");
        assert!(out.contains("name : \"read\""), "{out}");
        let read = out.find("name : \"read\"").unwrap();
        let write = out.find("name : \"write\"").unwrap();
        assert!(out[read..write].contains("idempotent : true"), "{out}");
        assert!(out[write..].contains("idempotent : false"), "{out}");

        let out = expand(
            quote!(),
            quote!(
                trait T {
                    #[idempotent(always)]
                    async fn a(&self);
                    #[idempotent]
                    #[idempotent]
                    async fn b(&self);
                }
            ),
        );
        assert!(out.contains("write `#[idempotent]` alone on `T::a`"), "{out}");
        assert!(out.contains("`#[idempotent]` appears twice on `T::b`"), "{out}");
    }
}
