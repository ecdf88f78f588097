//! Generates a TypeScript client module from a HardLight service's Rust
//! definition.
//!
//! `#[hardlight::rpc]` describes the service (`ReflectService`),
//! `#[hardlight::wire]` its types (`Reflect`) and
//! `#[derive(ConnectionState)]` the state (`ReflectState`); this crate turns
//! those descriptions into one `.ts` module: the TypeScript types, the
//! shape descriptions the runtime (`clients/ts/`) encodes and decodes rkyv
//! archives with, and a typed client class. See `docs/ARCHITECTURE.md`
//! ("Browser client") for why the codecs are data interpreted by one
//! runtime rather than code per type.
//!
//! ```ignore
//! let ts = hardlight_codegen::TypeScript::new::<ChatMethod>()
//!     .state::<ChatState>()
//!     .runtime_import("../../src/index.js")
//!     .render()?;
//! std::fs::write("chat.gen.ts", ts)?;
//! ```

mod render;

use hardlight_core::reflect::{ReflectService, ReflectState, Registry, ServiceDesc, Shape};

/// Why a module could not be generated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GenError {
    /// Two Rust types share a name; TypeScript would see one.
    #[error("two different Rust types are both named `{0}`; rename one (the generated module names types by their last path segment)")]
    NameCollision(String),
    /// `Option<Option<T>>` or `Option<()>`: `null` could not tell the cases apart.
    #[error("`{0}` cannot be represented: an Option of an Option or of () would map both None and Some to null")]
    AmbiguousOption(String),
    /// An enum variant has a field named `tag`, which the TypeScript form uses for the variant's name.
    #[error("variant `{0}` has a field named `tag`, which the TypeScript form uses for the variant name")]
    TagField(String),
    /// A `Vec` of a zero-sized type: its length costs no bytes, so a hostile
    /// peer could announce four billion elements in eight bytes.
    #[error("`{0}` is a Vec of a zero-sized type, which a peer could make arbitrarily long for free")]
    ZeroSizedElements(String),
    /// rkyv's tag is a byte: at most 256 variants.
    #[error("enum `{0}` has more than 256 variants")]
    TooManyVariants(String),
}

/// A TypeScript module generator for one service.
pub struct TypeScript {
    desc: ServiceDesc,
    state: Option<(String, Vec<(String, Shape)>)>,
    reg: Registry,
    runtime: String,
}

impl TypeScript {
    /// Starts from the service `M` (`<Trait>Method`).
    pub fn new<M: ReflectService>() -> Self {
        let mut reg = Registry::new();
        let desc = M::describe(&mut reg);
        Self { desc, state: None, reg, runtime: "@hardlight/client".into() }
    }

    /// Adds the connection's state type (the one the server's factory
    /// hands to `ctx.state`), so that the client mirrors it typed.
    pub fn state<S: ReflectState>(mut self) -> Self {
        let fields = S::fields(&mut self.reg);
        self.state = Some((S::NAME.to_string(), fields));
        self
    }

    /// The module specifier the generated code imports the runtime from
    /// (`@hardlight/client` by default; a relative path for a checkout).
    pub fn runtime_import(mut self, path: impl Into<String>) -> Self {
        self.runtime = path.into();
        self
    }

    /// The service's description, as the macros produced it.
    pub fn service(&self) -> &ServiceDesc {
        &self.desc
    }

    /// The named types the service uses.
    pub fn registry(&self) -> &Registry {
        &self.reg
    }

    /// The TypeScript module's text.
    pub fn render(&self) -> Result<String, GenError> {
        render::check(&self.reg, &self.desc, self.state.as_ref())?;
        Ok(render::module(&self.reg, &self.desc, self.state.as_ref(), &self.runtime))
    }
}

/// A shape's description in the form `clients/ts/src/shape.ts` reads
/// (`{k:"vec",of:{k:"string"}}`), for tests and tools that pass shapes
/// to the TypeScript runtime directly.
pub fn shape_json(s: &Shape) -> String {
    render::shape(s)
}

/// Every named type's description, as the generated module's `TYPES`.
pub fn types_json(reg: &Registry) -> String {
    render::types(reg)
}
