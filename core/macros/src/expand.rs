//! Code generation: from a validated [`Service`] to the items listed in the
//! crate documentation.

use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Item, ItemTrait, Path, Type};

use crate::model::{type_name, Args, Output, Service};

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
    let generated = generate(&parsed, &service, &args.krate);
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
fn trait_item(item: &ItemTrait) -> TokenStream {
    quote! {
        #[allow(async_fn_in_trait)]
        #item
    }
}

fn generate(item: &ItemTrait, service: &Service, krate: &Path) -> TokenStream {
    let vis = &item.vis;
    let tr = &item.ident;
    let tr_name = tr.to_string().trim_start_matches("r#").to_string();
    let span = tr.span();
    let named = |suffix: &str| {
        let mut id = format_ident!("{}{}", tr, suffix);
        id.set_span(span);
        id
    };
    let method_enum = named("Method");
    let reply_enum = named("Reply");
    let service_struct = named("Service");
    let client_struct = named("Client");
    // The client's type parameter is `C`, unless a type in the trait mentions
    // a `C` of its own that the parameter would shadow in the method signatures.
    let caller_param = if service.mentions_ident("C") { format_ident!("__C") } else { format_ident!("C") };

    let methods = &service.methods;
    let variants: Vec<_> = methods.iter().map(|m| &m.variant).collect();
    let idents: Vec<_> = methods.iter().map(|m| &m.ident).collect();
    let names: Vec<_> = methods.iter().map(|m| m.name.as_str()).collect();
    let ids: Vec<_> = (0..methods.len()).map(|i| Literal::u16_unsuffixed(i as u16)).collect();
    let inputs: Vec<_> = methods.iter().map(|m| type_name(tr, &m.variant, "Input")).collect();
    let outputs: Vec<_> = methods.iter().map(|m| type_name(tr, &m.variant, "Output")).collect();
    let output_tys: Vec<_> = methods.iter().map(|m| m.output.ty()).collect();
    let arg_idents: Vec<Vec<_>> = methods.iter().map(|m| m.args.iter().map(|a| &a.ident).collect()).collect();
    let arg_tys: Vec<Vec<_>> = methods.iter().map(|m| m.args.iter().map(|a| &a.ty).collect()).collect();

    // The method ids.
    let variant_docs = methods.iter().map(|m| {
        if m.docs.is_empty() {
            let doc = format!("`{}::{}`.", tr_name, m.name);
            quote!(#[doc = #doc])
        } else {
            let docs = &m.docs;
            quote!(#(#docs)*)
        }
    });
    let method_enum_doc = format!(
        "The methods of `{tr_name}`, by wire id: a method's id is its position in the trait, so \
         appending methods keeps old ids valid while reordering or inserting breaks old clients."
    );
    let method_enum_tokens = quote! {
        #[doc = #method_enum_doc]
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
    };

    // Input structs and output aliases.
    let mut io_tokens = TokenStream::new();
    for (i, m) in methods.iter().enumerate() {
        let input = &inputs[i];
        let output = &outputs[i];
        let output_ty = &output_tys[i];
        let input_doc = format!("The arguments of `{}::{}`, archived as one call input.", tr_name, m.name);
        let output_doc = format!("What `{}::{}` returns.", tr_name, m.name);
        let fields = m.args.iter().map(|a| {
            let (ident, ty) = (&a.ident, &a.ty);
            let doc = format!("Argument `{}`.", ident.to_string().trim_start_matches("r#"));
            quote!(#[doc = #doc] pub #ident: #ty)
        });
        io_tokens.extend(quote! {
            #[doc = #input_doc]
            #[derive(#krate::rkyv::Archive, #krate::rkyv::Serialize, #krate::rkyv::Deserialize)]
            #[rkyv(crate = #krate::rkyv)]
            #vis struct #input {
                #(#fields,)*
            }

            #[doc = #output_doc]
            #vis type #output = #output_ty;
        });
    }

    // Compile-time checks that every argument and output type can travel,
    // spanned on the type so that `Wire`'s message points at it.
    let mut asserts = TokenStream::new();
    let mut assert_wire = |ty: &Type| {
        asserts.extend(quote_spanned! {ty.span()=>
            __assert_wire::<#ty>();
        });
    };
    for m in methods {
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
    let assert_tokens = quote! {
        const _: () = {
            fn __assert_wire<T: #krate::Wire>() {}
            #[allow(dead_code)]
            fn __check() {
                #asserts
            }
        };
    };

    // The finished value of any call.
    // Spanned on the output type, like the assertions, should it not be `Wire`.
    let encode_arms = methods.iter().map(|m| {
        let variant = &m.variant;
        match &m.output {
            Output::Result { ok, err, whole } => quote_spanned! {whole.span()=>
                Self::#variant(value) => #krate::service::encode_result::<#ok, #err>(value, buf)
            },
            Output::Plain(ty) => quote_spanned! {ty.span()=>
                Self::#variant(value) => #krate::service::encode_output::<#ty>(value, buf)
            },
            Output::Unit => quote! {
                Self::#variant(value) => #krate::service::encode_output::<()>(value, buf)
            },
        }
    });
    let reply_doc = format!("The finished output of any `{tr_name}` method, as the server encodes it.");
    let reply_variant_docs = names.iter().map(|n| format!("What `{tr_name}::{n}` returned."));
    let reply_tokens = quote! {
        #[doc = #reply_doc]
        #vis enum #reply_enum {
            #( #[doc = #reply_variant_docs] #variants(#outputs), )*
        }

        impl #krate::Reply for #reply_enum {
            fn encode(
                &self,
                buf: &mut #krate::AlignedBuf,
            ) -> ::core::result::Result<bool, #krate::EncodeError> {
                match self {
                    #(#encode_arms,)*
                }
            }
        }
    };

    // Server side.
    let service_doc = format!(
        "Serves any `T: {tr_name}`: decodes a call's input, then runs the method on `T`. Hand it to the \
         HardLight server."
    );
    let service_tokens = quote! {
        #[doc = #service_doc]
        #vis struct #service_struct<T>(
            /// The handler.
            pub T,
        );

        impl<T> #service_struct<T> {
            /// Wraps a handler.
            pub fn new(inner: T) -> Self {
                Self(inner)
            }
        }

        impl<T: #tr> #krate::Service for #service_struct<T> {
            type Reply = #reply_enum;

            const METHOD_NAMES: &'static [&'static str] = #method_enum::NAMES;

            fn call<'s>(
                &'s self,
                method: u16,
                input: &[u8],
                max_depth: usize,
            ) -> ::core::result::Result<
                impl ::core::future::Future<Output = #reply_enum> + use<'s, T>,
                #krate::Rejection,
            > {
                // The decoded, owned input of the call; the future only holds
                // this, never `input`, which the driver reuses at once.
                enum __Args {
                    #( #variants(#inputs), )*
                }
                let args = match method {
                    #(
                        #ids => __Args::#variants(
                            <#inputs as #krate::Wire>::decode_with_depth(input, max_depth)
                                .map_err(#krate::Rejection::InvalidInput)?,
                        ),
                    )*
                    _ => return ::core::result::Result::Err(#krate::Rejection::UnknownMethod(method)),
                };
                ::core::result::Result::Ok(async move {
                    match args {
                        #(
                            __Args::#variants(#inputs { #(#arg_idents),* }) => {
                                #reply_enum::#variants(<T as #tr>::#idents(&self.0, #(#arg_idents),*).await)
                            }
                        )*
                    }
                })
            }
        }
    };

    // Client side.
    let client_doc = format!(
        "Calls `{tr_name}` methods over a HardLight connection (any `Caller`). Each method returns the declared \
         output, or a `CallError` when the call itself failed."
    );
    let client_methods = methods.iter().enumerate().map(|(i, m)| {
        let ident = &m.ident;
        let variant = &m.variant;
        let input = &inputs[i];
        let docs = &m.docs;
        let (args, tys) = (&arg_idents[i], &arg_tys[i]);
        let output_ty = &output_tys[i];
        let decode = match &m.output {
            Output::Result { ok, err, .. } => quote!(#krate::service::decode_result::<#ok, #err>(__hardlight_reply)),
            Output::Unit | Output::Plain(_) => {
                quote!(#krate::service::decode_output::<#output_ty>(__hardlight_reply))
            }
        };
        let fallback_doc = format!("Calls `{}::{}`.", tr_name, m.name);
        let doc = if docs.is_empty() { quote!(#[doc = #fallback_doc]) } else { quote!(#(#docs)*) };
        quote! {
            #doc
            pub async fn #ident(
                &self,
                #(#args: #tys),*
            ) -> ::core::result::Result<#output_ty, #krate::CallError> {
                let __hardlight_input = #krate::service::encode_input(&#input { #(#args),* })?;
                let __hardlight_reply =
                    #krate::Caller::call_raw(&self.caller, #method_enum::#variant as u16, __hardlight_input).await?;
                #decode
            }
        }
    });
    let client_tokens = quote! {
        #[doc = #client_doc]
        #vis struct #client_struct<#caller_param> {
            caller: #caller_param,
        }

        impl<#caller_param> #client_struct<#caller_param> {
            /// A client that makes its calls through `caller` (a client connection).
            pub fn new(caller: #caller_param) -> Self {
                Self { caller }
            }

            /// The connection calls go through.
            pub fn caller(&self) -> &#caller_param {
                &self.caller
            }
        }

        #[allow(clippy::too_many_arguments)]
        impl<#caller_param: #krate::Caller> #client_struct<#caller_param> {
            #(#client_methods)*
        }
    };

    let mut out = TokenStream::new();
    for part in [method_enum_tokens, io_tokens, assert_tokens, reply_tokens, service_tokens, client_tokens] {
        part.to_tokens(&mut out);
    }
    out
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
        assert!(text.contains(":: my :: hl :: service :: encode_result :: < u32 , MathError >"), "{text}");
        assert!(text.contains(":: my :: hl :: service :: decode_result :: < u32 , MathError >"), "{text}");
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
}
