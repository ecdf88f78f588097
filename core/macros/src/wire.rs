//! `#[hardlight::wire]`: one attribute that makes a struct or enum a wire
//! type (rkyv's three derives through HardLight's re-export, no `use
//! rkyv`) and gives it a shape for the service fingerprint.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::{Attribute, Data, DeriveInput, Fields, LitStr, Path};

pub fn wire(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr, item.clone()) {
        Ok(ts) => ts,
        // The item is emitted unchanged so that its uses add no errors of their own.
        Err(e) => {
            let e = e.to_compile_error();
            quote!(#item #e)
        }
    }
}

fn parse_crate(attr: TokenStream) -> syn::Result<Path> {
    let mut krate: Option<Path> = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            if krate.is_some() {
                return Err(meta.error("`crate` given twice"));
            }
            let value = meta.value()?;
            krate = Some(if value.peek(LitStr) { value.parse::<LitStr>()?.parse()? } else { value.parse()? });
            Ok(())
        } else {
            Err(meta.error("unknown #[wire] argument; the only one is `crate = \"path::to::hardlight\"`"))
        }
    });
    syn::parse::Parser::parse2(parser, attr)?;
    Ok(krate.unwrap_or_else(|| syn::parse_quote!(::hardlight)))
}

/// Rejects what would clash with what the attribute adds: rkyv's own derives
/// (conflicting impls) and `#[rkyv(crate = ...)]` (given twice). The
/// offending derive path or attribute is removed from `attrs`, so that the
/// expansion goes on and the user sees only this error.
fn check_attrs(attrs: &mut Vec<Attribute>) -> syn::Result<()> {
    let mut errors: Option<syn::Error> = None;
    let mut push = |e: syn::Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    let mut kept = Vec::with_capacity(attrs.len());
    for attr in attrs.drain(..) {
        if attr.path().is_ident("derive") {
            let paths = attr.parse_args_with(syn::punctuated::Punctuated::<Path, syn::Token![,]>::parse_terminated)?;
            let mut rest = Vec::new();
            for p in paths {
                let text: String = p.to_token_stream().to_string().split_whitespace().collect();
                let last = p.segments.last().map(|s| s.ident.to_string()).unwrap_or_default();
                let is_rkyv = text.contains("rkyv") || last == "Archive";
                if is_rkyv && matches!(last.as_str(), "Archive" | "Serialize" | "Deserialize") {
                    push(syn::Error::new_spanned(
                        &p,
                        format!(
                            "#[hardlight::wire] already derives rkyv's `Archive`, `Serialize` and `Deserialize`; \
                             remove `{text}` from this derive"
                        ),
                    ));
                } else {
                    rest.push(p);
                }
            }
            if !rest.is_empty() {
                kept.push(syn::parse_quote!(#[derive(#(#rest),*)]));
            }
            continue;
        }
        if attr.path().is_ident("rkyv") {
            let mut has_crate = false;
            let _ = attr.parse_nested_meta(|meta| {
                has_crate |= meta.path.is_ident("crate");
                if !meta.input.is_empty() && !meta.input.peek(syn::Token![,]) {
                    let _: TokenStream = meta.input.parse()?;
                }
                Ok(())
            });
            if has_crate {
                push(syn::Error::new_spanned(
                    &attr,
                    "#[hardlight::wire] already sets rkyv's crate path to HardLight's re-export; remove \
                     `crate = ...` from this #[rkyv(...)]",
                ));
                continue;
            }
        }
        kept.push(attr);
    }
    *attrs = kept;
    errors.map_or(Ok(()), Err)
}

/// What the attribute sees of the type, as text: its name, kind, and every
/// variant's and field's name and type, in order. Hashed for the fingerprint.
fn describe(input: &DeriveInput) -> syn::Result<String> {
    fn fields(out: &mut String, fields: &Fields) {
        for (i, f) in fields.iter().enumerate() {
            let name = f.ident.as_ref().map(|i| i.to_string()).unwrap_or_else(|| i.to_string());
            let ty: String = f.ty.to_token_stream().to_string().split_whitespace().collect();
            out.push_str(&format!(" {name}:{ty}"));
        }
    }
    let mut out = format!("wire {}", input.ident);
    match &input.data {
        Data::Struct(s) => {
            out.push_str(" struct");
            fields(&mut out, &s.fields);
        }
        Data::Enum(e) => {
            out.push_str(" enum");
            for v in &e.variants {
                out.push_str(&format!(" |{}", v.ident));
                fields(&mut out, &v.fields);
            }
        }
        Data::Union(u) => {
            return Err(syn::Error::new_spanned(
                u.union_token,
                "#[hardlight::wire] works on structs and enums; rkyv cannot archive a union",
            ))
        }
    }
    Ok(out)
}

fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let krate = parse_crate(attr)?;
    let mut input: DeriveInput = syn::parse2(item).map_err(|e| {
        syn::Error::new(e.span(), "#[hardlight::wire] goes on a struct or an enum (the type to send over HardLight)")
    })?;
    let attr_errors = check_attrs(&mut input.attrs).err().map(|e| e.to_compile_error());
    let shape_text = describe(&input)?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in shape_text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let reflect = crate::reflect::wire_impl(&input, &krate);
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    // A generic type's archived layout exists only where its parameters are
    // archivable; bound the impl on that.
    let bound = if input.generics.params.is_empty() {
        quote!(#where_clause)
    } else {
        let preds = where_clause.map(|w| {
            let p = &w.predicates;
            quote!(#p,)
        });
        quote!(where #preds Self: #krate::rkyv::Archive)
    };
    let field_check = field_check(&input, &krate);
    Ok(quote! {
        #field_check
        #[derive(#krate::rkyv::Archive, #krate::rkyv::Serialize, #krate::rkyv::Deserialize)]
        #[rkyv(crate = #krate::rkyv)]
        #input
        #attr_errors

        impl #impl_generics #name #ty_generics #bound {
            /// The type's shape for service fingerprints: its name, fields
            /// and archived size and alignment (see `hardlight::protocol::schema`).
            #[doc(hidden)]
            pub const __HARDLIGHT_SHAPE: u64 = #krate::__private::schema::mix_archived_layout::<Self>(#h);
        }

        #reflect
    })
}

/// A hidden trait whose where-clauses require every field type to be
/// `Wire`, emitted before the type so that a field that cannot travel is
/// reported first, on the field's type, with `Wire`'s own message (rustc
/// reports rkyv's errors from the derives after it). Only for non-generic
/// types: a generic field type names parameters the check cannot see.
fn field_check(input: &DeriveInput, krate: &syn::Path) -> TokenStream {
    if !input.generics.params.is_empty() {
        return TokenStream::new();
    }
    let mut seen: Vec<String> = Vec::new();
    let mut bounds = TokenStream::new();
    let mut check = |ty: &syn::Type| {
        let text = quote!(#ty).to_string();
        // A field of the type itself (through a Box) would make the check
        // ask about the type being defined; rkyv's own bounds cover it.
        if text.split(|c: char| !c.is_alphanumeric() && c != '_').any(|w| input.ident == w || w == "Self")
            || seen.contains(&text)
        {
            return;
        }
        seen.push(text);
        bounds.extend(quote::quote_spanned! {syn::spanned::Spanned::span(ty)=> #ty: __HardlightWire, });
    };
    match &input.data {
        syn::Data::Struct(d) => d.fields.iter().for_each(|f| check(&f.ty)),
        syn::Data::Enum(e) => e.variants.iter().flat_map(|v| v.fields.iter()).for_each(|f| check(&f.ty)),
        syn::Data::Union(_) => {}
    }
    crate::gen::checks::hidden_wire_check(krate, bounds)
}
