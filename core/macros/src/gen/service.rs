//! `<Trait>Service<T>`: the server side. Matches the method id, decodes the
//! input synchronously, and returns the handler's future.

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use super::Ctx;

pub fn generate(cx: &Ctx<'_>) -> TokenStream {
    let (vis, krate, tr, tr_name) = (cx.vis, cx.krate(), cx.tr, &cx.tr_name);
    let (method_enum, reply_enum, service_struct) = (cx.method_enum(), cx.reply_enum(), cx.named("Service"));
    let methods = &cx.service.methods;
    let variants: Vec<_> = methods.iter().map(|m| &m.variant).collect();
    let idents: Vec<_> = methods.iter().map(|m| &m.ident).collect();
    let ids: Vec<_> = (0..methods.len()).map(|i| Literal::u16_unsuffixed(i as u16)).collect();
    let inputs = cx.inputs();
    let arg_idents: Vec<Vec<_>> = methods.iter().map(|m| m.args.iter().map(|a| &a.ident).collect()).collect();
    let doc = format!(
        "Serves any `T: {tr_name}`: decodes a call's input, then runs the method on `T`. Hand it to the \
         HardLight server."
    );
    quote! {
        #[doc = #doc]
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

        impl<T: #tr> #krate::__private::Service for #service_struct<T> {
            type Reply = #reply_enum;

            const METHOD_NAMES: &'static [&'static str] = #method_enum::NAMES;

            const SCHEMA: ::core::option::Option<&'static #krate::__private::Schema> =
                ::core::option::Option::Some(&#method_enum::SCHEMA);

            fn call<'s>(
                &'s self,
                method: u16,
                input: &[u8],
                max_depth: usize,
            ) -> ::core::result::Result<
                impl ::core::future::Future<Output = #reply_enum> + use<'s, T>,
                #krate::__private::Rejection,
            > {
                // The decoded, owned input of the call; the future only holds
                // this, never `input`, which the driver reuses at once.
                enum __Args {
                    #( #variants(#inputs), )*
                }
                let args = match method {
                    #(
                        #ids => __Args::#variants(
                            <#inputs as #krate::__private::Wire>::decode_with_depth(input, max_depth)
                                .map_err(#krate::__private::Rejection::InvalidInput)?,
                        ),
                    )*
                    _ => return ::core::result::Result::Err(#krate::__private::Rejection::UnknownMethod(method)),
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
    }
}
