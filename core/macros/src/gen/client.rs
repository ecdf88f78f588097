//! `<Trait>Client<C>`: the client side, one `async fn` per method over any
//! `Caller`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::Ctx;
use crate::model::Output;

pub fn generate(cx: &Ctx<'_>) -> TokenStream {
    let (vis, krate, tr_name) = (cx.vis, cx.krate(), &cx.tr_name);
    let (method_enum, client_struct) = (cx.method_enum(), cx.named("Client"));
    // The client's type parameter is `C`, unless a type in the trait mentions
    // a `C` of its own that the parameter would shadow in the method signatures.
    let caller = if cx.service.mentions_ident("C") { format_ident!("__C") } else { format_ident!("C") };
    let methods = cx.service.methods.iter().zip(cx.inputs()).map(|(m, input)| {
        let (ident, variant, docs) = (&m.ident, &m.variant, &m.docs);
        let args: Vec<_> = m.args.iter().map(|a| &a.ident).collect();
        let tys: Vec<_> = m.args.iter().map(|a| &a.ty).collect();
        let output_ty = m.output.ty();
        let decode = match &m.output {
            Output::Result { ok, err, .. } => quote!(#krate::__private::service::decode_result::<#ok, #err>(__hardlight_reply)),
            Output::Unit | Output::Plain(_) => {
                quote!(#krate::__private::service::decode_output::<#output_ty>(__hardlight_reply))
            }
        };
        let fallback_doc = format!("Calls `{}::{}`.", tr_name, m.name);
        let doc = if docs.is_empty() { quote!(#[doc = #fallback_doc]) } else { quote!(#(#docs)*) };
        quote! {
            #doc
            pub async fn #ident(
                &self,
                #(#args: #tys),*
            ) -> ::core::result::Result<#output_ty, #krate::__private::CallError> {
                let __hardlight_input = #krate::__private::service::encode_input(&#input { #(#args),* })?;
                let __hardlight_reply =
                    #krate::__private::Caller::call_raw(&self.caller, #method_enum::#variant as u16, __hardlight_input).await?;
                #decode
            }
        }
    });
    let doc = format!(
        "Calls `{tr_name}` methods over a HardLight connection (any `Caller`). Each method returns the declared \
         output, or a `CallError` when the call itself failed. `Clone` when the caller is (a connection is: \
         clones share the socket)."
    );
    quote! {
        #[doc = #doc]
        #vis struct #client_struct<#caller> {
            caller: #caller,
        }

        impl<#caller> #client_struct<#caller> {
            /// A client that makes its calls through `caller` (a client connection).
            pub fn new(caller: #caller) -> Self {
                Self { caller }
            }

            /// The connection calls go through.
            pub fn caller(&self) -> &#caller {
                &self.caller
            }
        }

        // By hand, not derived: the same bound a derive would add (`C:
        // Clone`), stated here so that a client over a non-`Clone` caller
        // stays usable and a `Clone` one (a connection) clones cheaply.
        impl<#caller: ::core::clone::Clone> ::core::clone::Clone for #client_struct<#caller> {
            fn clone(&self) -> Self {
                Self { caller: ::core::clone::Clone::clone(&self.caller) }
            }
        }

        #[allow(clippy::too_many_arguments)]
        impl<#caller: #krate::__private::Caller> #client_struct<#caller> {
            #(#methods)*
        }
    }
}
