//! One input struct per method (`<Trait><Method>Input`, the call's archived
//! arguments) and one output alias (`<Trait><Method>Output`, the declared
//! return type).

use proc_macro2::TokenStream;
use quote::quote;

use super::Ctx;

pub fn generate(cx: &Ctx<'_>) -> TokenStream {
    let (vis, krate, tr_name) = (cx.vis, cx.krate(), &cx.tr_name);
    let mut out = TokenStream::new();
    for ((m, input), output) in cx.service.methods.iter().zip(cx.inputs()).zip(cx.outputs()) {
        let output_ty = m.output.ty();
        let input_doc = format!("The arguments of `{}::{}`, archived as one call input.", tr_name, m.name);
        let output_doc = format!("What `{}::{}` returns.", tr_name, m.name);
        let fields = m.args.iter().map(|a| {
            let (ident, ty) = (&a.ident, &a.ty);
            let doc = format!("Argument `{}`.", ident.to_string().trim_start_matches("r#"));
            quote!(#[doc = #doc] pub #ident: #ty)
        });
        out.extend(quote! {
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
    out
}
