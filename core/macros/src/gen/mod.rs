//! One generator per emitted item, in the spirit of tarpc's `plugins/`: each
//! file turns the validated [`Service`] into one kind of item, so that what
//! the macro emits for, say, the client can be read without the rest.
//!
//! [`Ctx`] holds what every generator needs (names, visibility, crate path);
//! [`generate`] calls them in output order.

use proc_macro2::{Ident, TokenStream};
use quote::format_ident;
use syn::{ItemTrait, Path, Visibility};

use crate::model::{type_name, Args, Service};

pub(crate) mod checks;
mod client;
mod events;
mod io;
mod method_enum;
mod reflect;
mod reply;
mod schema;
mod service;

/// What every generator needs to know about the trait being expanded.
pub struct Ctx<'a> {
    /// The validated methods.
    pub service: &'a Service,
    /// The `#[rpc(...)]` arguments (crate path, events).
    pub args: &'a Args,
    /// Visibility of the trait, given to every generated item.
    pub vis: &'a Visibility,
    /// The trait's identifier.
    pub tr: &'a Ident,
    /// The trait's name without `r#`, for docs and messages.
    pub tr_name: String,
}

impl<'a> Ctx<'a> {
    pub fn new(item: &'a ItemTrait, service: &'a Service, args: &'a Args) -> Self {
        Self {
            service,
            args,
            vis: &item.vis,
            tr: &item.ident,
            tr_name: item.ident.to_string().trim_start_matches("r#").to_string(),
        }
    }

    /// Where HardLight's items are.
    pub fn krate(&self) -> &Path {
        &self.args.krate
    }

    /// `<Trait><suffix>`, spanned at the trait name.
    pub fn named(&self, suffix: &str) -> Ident {
        let mut id = format_ident!("{}{}", self.tr, suffix);
        id.set_span(self.tr.span());
        id
    }

    /// `<Trait>Method`.
    pub fn method_enum(&self) -> Ident {
        self.named("Method")
    }

    /// `<Trait>Reply`.
    pub fn reply_enum(&self) -> Ident {
        self.named("Reply")
    }

    /// `<Trait><Variant>Input`, one per method in order.
    pub fn inputs(&self) -> Vec<Ident> {
        self.service.methods.iter().map(|m| type_name(self.tr, &m.variant, "Input")).collect()
    }

    /// `<Trait><Variant>Output`, one per method in order.
    pub fn outputs(&self) -> Vec<Ident> {
        self.service.methods.iter().map(|m| type_name(self.tr, &m.variant, "Output")).collect()
    }
}

/// Every generated item, in output order. The wire-type checks come first
/// so that HardLight's own "cannot be sent over HardLight" error is the
/// first one a user reads.
pub fn generate(item: &ItemTrait, service: &Service, args: &Args) -> TokenStream {
    let cx = Ctx::new(item, service, args);
    let mut out = TokenStream::new();
    out.extend(checks::generate(&cx));
    out.extend(method_enum::generate(&cx));
    out.extend(schema::generate(&cx));
    out.extend(io::generate(&cx));
    out.extend(events::generate(&cx));
    out.extend(reply::generate(&cx));
    out.extend(service::generate(&cx));
    out.extend(client::generate(&cx));
    out.extend(reflect::generate(&cx));
    out
}
