//! `<Trait>Reply`: the finished output of any method, and how the server
//! encodes it (a `Result` output travels split into output or error).

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::Ctx;
use crate::model::Output;

pub fn generate(cx: &Ctx<'_>) -> TokenStream {
    let (vis, krate, tr_name) = (cx.vis, cx.krate(), &cx.tr_name);
    let reply_enum = cx.reply_enum();
    let methods = &cx.service.methods;
    let variants: Vec<_> = methods.iter().map(|m| &m.variant).collect();
    let outputs = cx.outputs();
    // Spanned on the output type, like the assertions, should it not be `Wire`.
    let encode_arms = methods.iter().map(|m| {
        let variant = &m.variant;
        match &m.output {
            Output::Result { ok, err, whole } => quote_spanned! {whole.span()=>
                Self::#variant(value) => #krate::__private::service::encode_result::<#ok, #err>(value, buf)
            },
            Output::Plain(ty) => quote_spanned! {ty.span()=>
                Self::#variant(value) => #krate::__private::service::encode_output::<#ty>(value, buf)
            },
            Output::Unit => quote! {
                Self::#variant(value) => #krate::__private::service::encode_output::<()>(value, buf)
            },
        }
    });
    let doc = format!("The finished output of any `{tr_name}` method, as the server encodes it.");
    let variant_docs = methods.iter().map(|m| format!("What `{tr_name}::{}` returned.", m.name));
    quote! {
        #[doc = #doc]
        #vis enum #reply_enum {
            #( #[doc = #variant_docs] #variants(#outputs), )*
        }

        impl #krate::__private::Reply for #reply_enum {
            fn encode(
                &self,
                buf: &mut #krate::__private::AlignedBuf,
            ) -> ::core::result::Result<bool, #krate::__private::EncodeError> {
                match self {
                    #(#encode_arms,)*
                }
            }
        }
    }
}
