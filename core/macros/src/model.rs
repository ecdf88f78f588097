//! Parsing and validation: from the attribute and the trait to a [`Service`]
//! description, or to errors spanned on the offending tokens.

use proc_macro2::{Ident, TokenStream, TokenTree};
use quote::{format_ident, quote, ToTokens};
use syn::ext::IdentExt;
use syn::punctuated::Punctuated;
use syn::{
    Attribute, FnArg, GenericArgument, ItemTrait, LitStr, Pat, Path, PathArguments, ReturnType, Signature, Token,
    TraitItem, TraitItemFn, Type,
};

/// What `#[rpc(...)]` was given.
pub struct Args {
    /// Where HardLight's items are (`::hardlight` unless overridden).
    pub krate: Path,
    /// The service's event types, `events(A, B)`: each one's wire id is its
    /// position in this list.
    pub events: Vec<Type>,
}

impl Args {
    pub fn parse(attr: TokenStream) -> syn::Result<Self> {
        let mut krate: Option<Path> = None;
        let mut events: Option<Vec<Type>> = None;
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("crate") {
                if krate.is_some() {
                    return Err(meta.error("`crate` given twice"));
                }
                let value = meta.value()?;
                krate = Some(if value.peek(LitStr) { value.parse::<LitStr>()?.parse()? } else { value.parse()? });
                Ok(())
            } else if meta.path.is_ident("events") {
                if events.is_some() {
                    return Err(meta.error("`events` given twice; list every event type in one `events(...)`"));
                }
                let content;
                syn::parenthesized!(content in meta.input);
                let list = Punctuated::<Type, Token![,]>::parse_terminated(&content)?;
                events = Some(check_events(list.into_iter().collect())?);
                Ok(())
            } else {
                Err(meta.error(
                    "unknown #[rpc] argument; the arguments are `events(EventType, ...)` and `crate = \"path::to::hardlight\"`",
                ))
            }
        });
        syn::parse::Parser::parse2(parser, attr)?;
        Ok(Self { krate: krate.unwrap_or_else(|| syn::parse_quote!(::hardlight)), events: events.unwrap_or_default() })
    }
}

/// Event ids are positions in the list, so a type listed twice would have
/// two ids; more than 65536 would not fit the u16 id.
fn check_events(events: Vec<Type>) -> syn::Result<Vec<Type>> {
    let mut errors = Errors::default();
    for (i, ty) in events.iter().enumerate() {
        let text = ty.to_token_stream().to_string();
        if let Some(first) = events[..i].iter().position(|t| t.to_token_stream().to_string() == text) {
            errors.spanned(
                ty,
                format!(
                    "event type `{}` is listed twice in `events(...)` (positions {first} and {i}); an event type's \
                     wire id is its position, so list each type once",
                    text.replace(' ', "")
                ),
            );
        }
        if let Err(e) = check_owned_type(ty, "event") {
            errors.push(e);
        }
    }
    if events.len() > usize::from(u16::MAX) + 1 {
        errors.spanned(&events[0], "a service can declare at most 65536 event types (event ids are u16)");
    }
    errors.finish()?;
    Ok(events)
}

/// A validated service trait.
pub struct Service {
    pub methods: Vec<Method>,
}

/// One validated `async fn`.
pub struct Method {
    /// The method's identifier as written (possibly raw, `r#type`).
    pub ident: Ident,
    /// The name sent in logs and listed in `NAMES`: the identifier without `r#`.
    pub name: String,
    /// UpperCamelCase of `name`, used for enum variants and type names.
    pub variant: Ident,
    pub args: Vec<Arg>,
    pub output: Output,
    /// The method's `#[doc]` attributes, copied onto the client method.
    pub docs: Vec<Attribute>,
    /// Marked `#[idempotent]`: a client that reconnects may send a call of
    /// it again when the connection dropped before the answer arrived.
    pub idempotent: bool,
}

/// The marker attribute on an `#[rpc]` method (removed from the emitted trait).
pub const IDEMPOTENT: &str = "idempotent";

/// One argument: `ident: ty`.
pub struct Arg {
    pub ident: Ident,
    pub ty: Type,
}

/// A method's declared return type.
// One per method, at compile time: boxing the types would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Output {
    /// No `->`: the method returns `()`.
    Unit,
    /// Any type that is not syntactically `Result<T, E>`; sent whole.
    Plain(Type),
    /// `Result<T, E>`: `Ok` travels as output, `Err` as application error.
    Result { whole: Type, ok: Type, err: Type },
}

impl Output {
    /// The declared type, `()` for none.
    pub fn ty(&self) -> TokenStream {
        match self {
            Output::Unit => quote!(()),
            Output::Plain(ty) | Output::Result { whole: ty, .. } => ty.to_token_stream(),
        }
    }
}

/// Collects errors so that one expansion reports every problem at once.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    fn spanned(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

impl Service {
    pub fn from_trait(item: &ItemTrait) -> syn::Result<Self> {
        let mut errors = Errors::default();
        let trait_name = item.ident.unraw().to_string();

        if !item.generics.params.is_empty() {
            errors.spanned(
                &item.generics,
                format!(
                    "an #[rpc] trait cannot be generic: `{trait_name}` is one protocol with fixed types on the \
                     wire; use concrete types"
                ),
            );
        }
        if let Some(wc) = &item.generics.where_clause {
            errors.spanned(wc, "an #[rpc] trait cannot have a where clause");
        }

        let mut methods = Vec::new();
        for trait_item in &item.items {
            match trait_item {
                TraitItem::Fn(f) => match Method::from_fn(f, &trait_name) {
                    Ok(m) => methods.push(m),
                    Err(e) => errors.push(e),
                },
                TraitItem::Const(c) => errors.spanned(
                    c,
                    format!(
                        "an #[rpc] trait contains only `async fn` methods; associated constant `{}` is not \
                         allowed (define it outside the trait)",
                        c.ident
                    ),
                ),
                TraitItem::Type(t) => errors.spanned(
                    t,
                    format!(
                        "an #[rpc] trait contains only `async fn` methods; associated type `{}` is not allowed \
                         (the wire types must be concrete: use a concrete type in the signatures)",
                        t.ident
                    ),
                ),
                other => errors.spanned(other, "an #[rpc] trait contains only `async fn` methods"),
            }
        }

        if methods.is_empty() && item.items.is_empty() {
            errors.spanned(&item.ident, format!("#[rpc] trait `{trait_name}` has no methods"));
        }
        if methods.len() > usize::from(u16::MAX) + 1 {
            errors.spanned(&item.ident, "an #[rpc] trait can have at most 65536 methods (method ids are u16)");
        }
        for (i, m) in methods.iter().enumerate() {
            if let Some(first) = methods[..i].iter().find(|o| o.variant == m.variant) {
                errors.spanned(
                    &m.ident,
                    format!(
                        "methods `{}` and `{}` both become `{}` in the generated type names; rename one",
                        first.name, m.name, m.variant
                    ),
                );
            }
        }

        errors.finish()?;
        Ok(Self { methods })
    }
}

impl Service {
    /// Whether any argument or output type mentions the identifier `name`.
    pub fn mentions_ident(&self, name: &str) -> bool {
        fn walk(tokens: TokenStream, name: &str) -> bool {
            tokens.into_iter().any(|tt| match tt {
                TokenTree::Group(g) => walk(g.stream(), name),
                TokenTree::Ident(i) => i == name,
                _ => false,
            })
        }
        self.methods
            .iter()
            .any(|m| m.args.iter().any(|a| walk(a.ty.to_token_stream(), name)) || walk(m.output.ty(), name))
    }
}

impl Method {
    fn from_fn(f: &TraitItemFn, trait_name: &str) -> syn::Result<Self> {
        let mut errors = Errors::default();
        let sig = &f.sig;
        let name = sig.ident.unraw().to_string();
        let fn_name = format!("{trait_name}::{name}");

        check_signature_shape(sig, &fn_name, &mut errors);

        if let Some(body) = &f.default {
            errors.spanned(
                body,
                format!(
                    "`{fn_name}` has a default body; an #[rpc] trait only declares the protocol: define the body \
                     in the impl"
                ),
            );
        }
        let mut idempotent = false;
        for attr in &f.attrs {
            if attr.path().is_ident(IDEMPOTENT) {
                if let Err(e) = attr.meta.require_path_only() {
                    errors
                        .spanned(attr, format!("write `#[idempotent]` alone on `{fn_name}`, without arguments ({e})"));
                } else if idempotent {
                    errors.spanned(attr, format!("`#[idempotent]` appears twice on `{fn_name}`"));
                }
                idempotent = true;
            }
            if attr.path().is_ident("cfg") || attr.path().is_ident("cfg_attr") {
                errors.spanned(
                    attr,
                    "#[cfg] is not allowed on #[rpc] methods: method ids are positions in the trait, so client and \
                     server built with different cfgs would disagree on them",
                );
            }
        }

        let mut inputs = sig.inputs.iter();
        match inputs.next() {
            Some(FnArg::Receiver(r)) => {
                let shared_ref = matches!(
                    &*r.ty,
                    Type::Reference(rf) if rf.mutability.is_none()
                        && matches!(&*rf.elem, Type::Path(p) if p.qself.is_none() && p.path.is_ident("Self"))
                );
                if !shared_ref {
                    errors.spanned(
                        r,
                        format!(
                            "`{fn_name}` must take `&self`: calls on one connection run concurrently and share \
                             the handler, so it only gets a shared reference (keep state in Cell, RefCell or a \
                             Mutex)"
                        ),
                    );
                }
            }
            Some(arg) => errors.spanned(
                arg,
                format!("`{fn_name}` must take `&self` as its first parameter (found an argument instead)"),
            ),
            None => errors.spanned(
                &sig.ident,
                format!("`{fn_name}` must take `&self` as its first parameter (it has no receiver)"),
            ),
        }

        let mut args = Vec::new();
        for input in inputs {
            let FnArg::Typed(pt) = input else {
                // A second receiver; rustc reports it too.
                errors.spanned(input, "`self` can only be the first parameter");
                continue;
            };
            match &*pt.pat {
                Pat::Ident(pi) if pi.by_ref.is_none() && pi.mutability.is_none() && pi.subpat.is_none() => {
                    if let Err(e) = check_owned_type(&pt.ty, "argument") {
                        errors.push(e);
                    }
                    args.push(Arg { ident: pi.ident.clone(), ty: (*pt.ty).clone() });
                }
                other => errors.spanned(
                    other,
                    format!(
                        "arguments of `{fn_name}` must be plain identifiers (`name: Type`): each one becomes a \
                         field of the generated input struct"
                    ),
                ),
            }
        }

        let output = match &sig.output {
            ReturnType::Default => Output::Unit,
            ReturnType::Type(_, ty) => {
                if let Err(e) = check_owned_type(ty, "return") {
                    errors.push(e);
                }
                match result_args(ty) {
                    Some((ok, err)) => Output::Result { whole: (**ty).clone(), ok, err },
                    None => Output::Plain((**ty).clone()),
                }
            }
        };

        let camel = upper_camel(&name);
        if camel.is_empty() || camel == "Self" {
            errors.spanned(&sig.ident, format!("method name `{name}` cannot be turned into a type name; rename it"));
        }

        errors.finish()?;
        Ok(Self {
            variant: Ident::new(&camel, sig.ident.span()),
            ident: sig.ident.clone(),
            name,
            args,
            output,
            docs: f.attrs.iter().filter(|a| a.path().is_ident("doc")).cloned().collect(),
            idempotent,
        })
    }
}

fn check_signature_shape(sig: &Signature, fn_name: &str, errors: &mut Errors) {
    let head = {
        let fn_token = &sig.fn_token;
        let ident = &sig.ident;
        quote!(#fn_token #ident)
    };
    if sig.asyncness.is_none() {
        errors.spanned(
            &head,
            format!("`{fn_name}` must be an `async fn`: every #[rpc] method is awaited by the server and the client"),
        );
    }
    if let Some(c) = &sig.constness {
        errors.spanned(c, "#[rpc] methods cannot be `const`");
    }
    if let Some(u) = &sig.unsafety {
        errors.spanned(u, "#[rpc] methods cannot be `unsafe`");
    }
    if let Some(abi) = &sig.abi {
        errors.spanned(abi, "#[rpc] methods cannot have an `extern` ABI");
    }
    if let Some(v) = &sig.variadic {
        errors.spanned(v, "#[rpc] methods cannot be variadic");
    }
    if !sig.generics.params.is_empty() {
        errors.spanned(
            &sig.generics,
            format!("`{fn_name}` cannot be generic: an #[rpc] method has one fixed input and output type on the wire"),
        );
    }
    if let Some(wc) = &sig.generics.where_clause {
        errors.spanned(wc, format!("`{fn_name}` cannot have a where clause: #[rpc] methods are not generic"));
    }
}

/// Rejects types that cannot be a field of an owned, archived struct, with
/// messages better than what the generated code would get from rustc.
fn check_owned_type(ty: &Type, what: &str) -> syn::Result<()> {
    fn walk(tokens: TokenStream, what: &str) -> syn::Result<()> {
        let mut iter = tokens.into_iter().peekable();
        while let Some(tt) = iter.next() {
            match &tt {
                TokenTree::Group(g) => walk(g.stream(), what)?,
                TokenTree::Punct(p) if p.as_char() == '&' => {
                    return Err(syn::Error::new(
                        p.span(),
                        format!(
                            "{what} types of #[rpc] methods must be owned: values are decoded from (or encoded \
                             into) a message, so use String, Vec<T>, ... instead of a reference"
                        ),
                    ));
                }
                TokenTree::Punct(p) if p.as_char() == '\'' => {
                    if let Some(TokenTree::Ident(l)) = iter.peek() {
                        if l != "static" {
                            return Err(syn::Error::new(
                                l.span(),
                                format!("{what} types of #[rpc] methods cannot borrow: use owned types"),
                            ));
                        }
                    }
                }
                TokenTree::Ident(i) if i == "impl" => {
                    return Err(syn::Error::new(
                        i.span(),
                        format!("{what} types of #[rpc] methods must be concrete: `impl Trait` has no archived form"),
                    ));
                }
                TokenTree::Ident(i) if i == "Self" => {
                    return Err(syn::Error::new(
                        i.span(),
                        format!("{what} types of #[rpc] methods cannot mention `Self`: use concrete types"),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
    walk(ty.to_token_stream(), what)
}

/// `Some((T, E))` when `ty` is syntactically `...::Result<T, E>`.
fn result_args(ty: &Type) -> Option<(Type, Type)> {
    let Type::Path(tp) = ty else { return None };
    if tp.qself.is_some() {
        return None;
    }
    let last = tp.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(ab) = &last.arguments else {
        return None;
    };
    let mut types = Vec::new();
    for arg in &ab.args {
        match arg {
            GenericArgument::Type(t) => types.push(t.clone()),
            _ => return None,
        }
    }
    let mut types = types.into_iter();
    match (types.next(), types.next(), types.next()) {
        (Some(ok), Some(err), None) => Some((ok, err)),
        _ => None,
    }
}

/// `snake_case` (or anything else) to `UpperCamelCase`.
pub fn upper_camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for part in name.split('_').filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out
}

/// `<Trait><Variant><suffix>`, spanned at the trait name.
pub fn type_name(trait_ident: &Ident, variant: &Ident, suffix: &str) -> Ident {
    let mut id = format_ident!("{}{}{}", trait_ident, variant, suffix);
    id.set_span(trait_ident.span());
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_case() {
        assert_eq!(upper_camel("increment"), "Increment");
        assert_eq!(upper_camel("get_value_v2"), "GetValueV2");
        assert_eq!(upper_camel("_private"), "Private");
        assert_eq!(upper_camel("getValue"), "GetValue");
        assert_eq!(upper_camel("a__b"), "AB");
    }

    #[test]
    fn result_detection_is_syntactic() {
        let t: Type = syn::parse_quote!(Result<u32, MathError>);
        assert!(result_args(&t).is_some());
        let t: Type = syn::parse_quote!(std::result::Result<Vec<u8>, String>);
        let (ok, err) = result_args(&t).unwrap();
        assert_eq!(ok.to_token_stream().to_string(), "Vec < u8 >");
        assert_eq!(err.to_token_stream().to_string(), "String");
        let t: Type = syn::parse_quote!(io::Result<u32>);
        assert!(result_args(&t).is_none());
        let t: Type = syn::parse_quote!(MyResult);
        assert!(result_args(&t).is_none());
        let t: Type = syn::parse_quote!(Option<Result<u32, E>>);
        assert!(result_args(&t).is_none());
    }

    #[test]
    fn owned_type_check() {
        let ok: Type = syn::parse_quote!(Vec<Option<String>>);
        assert!(check_owned_type(&ok, "argument").is_ok());
        let ok: Type = syn::parse_quote!(Box<str>);
        assert!(check_owned_type(&ok, "argument").is_ok());
        for bad in [
            quote!(&str),
            quote!(Vec<&'static str>),
            quote!(Cow<'a, str>),
            quote!(impl Into<String>),
            quote!(Vec<Self>),
        ] {
            let ty: Type = syn::parse2(bad.clone()).unwrap();
            assert!(check_owned_type(&ty, "argument").is_err(), "{bad}");
        }
    }
}
