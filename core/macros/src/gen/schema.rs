use super::Ctx;
use proc_macro2::TokenStream;
pub fn generate(_cx: &Ctx<'_>) -> TokenStream {
    TokenStream::new()
}
