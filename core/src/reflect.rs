//! Runtime descriptions of wire types and services, for code generators.
//!
//! Clients in other languages (the TypeScript client under `clients/ts/`)
//! need each wire type's structure to produce byte-identical rkyv archives:
//! field order, field types, variants. Rust has no runtime reflection, so
//! `#[hardlight::wire]` implements [`Reflect`] for the type it decorates,
//! `#[derive(ConnectionState)]` implements [`ReflectState`], and
//! `#[hardlight::rpc]` implements [`ReflectService`] for `<Trait>Method`.
//! A generator (the `hardlight-codegen` crate) reads those descriptions.
//!
//! Why our own and not `specta`: the description must follow rkyv's archive
//! rules, not serde's: `usize` is archived as 32 bits, enums as `u8` tags
//! with `repr(C)` variants, `Option` as a tag byte, and only the types rkyv
//! archives identically in every build are allowed. Specta describes types
//! as serde would show them (JSON), has no notion of archived layout, and
//! would add a dependency to every user's build; the macros already see
//! every field, so emitting a small description costs a few lines.
//!
//! The service and state impls carry `for<'a>` bounds on their types'
//! [`Reflect`] impls, so a service using a type that derives rkyv's traits
//! by hand (no [`Reflect`]) still compiles; only asking for its
//! description fails, naming the type.

use std::any::type_name;
use std::collections::BTreeMap;

/// How one value is archived: a primitive, a standard container, or a named
/// type whose definition is in the [`Registry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// `()`: nothing (size 0).
    Unit,
    /// `bool`: one byte, 0 or 1.
    Bool,
    /// `u8`.
    U8,
    /// `u16`, little-endian.
    U16,
    /// `u32` (and `usize`: rkyv archives it as 32 bits), little-endian.
    U32,
    /// `u64`, little-endian.
    U64,
    /// `u128`, little-endian.
    U128,
    /// `i8`.
    I8,
    /// `i16`, little-endian.
    I16,
    /// `i32` (and `isize`), little-endian.
    I32,
    /// `i64`, little-endian.
    I64,
    /// `i128`, little-endian.
    I128,
    /// `f32`, IEEE 754, little-endian.
    F32,
    /// `f64`, IEEE 754, little-endian.
    F64,
    /// `char`: a Unicode scalar value as a little-endian `u32`.
    Char,
    /// `String`: 8 bytes, inline up to 8 bytes or a relative pointer and length.
    String,
    /// `Vec<T>`: a relative pointer and a length; the elements out of line.
    Vec(Box<Shape>),
    /// `Option<T>`: a tag byte, then `T` at its alignment.
    Option(Box<Shape>),
    /// `[T; N]`: N elements inline, no length.
    Array(Box<Shape>, usize),
    /// `(A, B, ...)`: the elements as a `repr(C)` struct.
    Tuple(Vec<Shape>),
    /// A `#[hardlight::wire]` struct or enum, by its name in the registry.
    Named(String),
}

/// The fields of a struct or of an enum variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fields {
    /// `struct A;` or `Variant`.
    Unit,
    /// `struct A { x: T }`: names and shapes in declaration order.
    Named(Vec<(String, Shape)>),
    /// `struct A(T, U);`: shapes in declaration order.
    Unnamed(Vec<Shape>),
}

/// One variant of an enum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    /// The variant's name.
    pub name: String,
    /// Its fields.
    pub fields: Fields,
}

/// What a named type is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeKind {
    /// A struct.
    Struct(Fields),
    /// An enum; the archived tag is the variant's position (a `u8`).
    Enum(Vec<Variant>),
}

/// A named type's definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeDef {
    /// The Rust type's name (the last path segment).
    pub name: String,
    /// Struct or enum, with fields.
    pub kind: TypeKind,
}

/// The named types a description uses, by name, each defined once.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    defs: BTreeMap<String, (String, Option<TypeDef>)>,
    /// Two Rust types share one short name: generated code could not tell
    /// them apart, so the generator refuses.
    pub collisions: Vec<String>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `T` (whose full path is `type_name::<T>()`) under `name`
    /// unless it is there already; `define` runs only the first time, after
    /// the name is reserved, so recursive types terminate.
    pub fn named<T: ?Sized>(&mut self, name: &str, define: impl FnOnce(&mut Self) -> TypeKind) -> Shape {
        let full = type_name::<T>().to_string();
        match self.defs.get(name) {
            Some((existing, _)) => {
                if *existing != full && !self.collisions.contains(&name.to_string()) {
                    self.collisions.push(name.to_string());
                }
            }
            None => {
                self.defs.insert(name.to_string(), (full, None));
                let kind = define(self);
                if let Some(slot) = self.defs.get_mut(name) {
                    slot.1 = Some(TypeDef { name: name.to_string(), kind });
                }
            }
        }
        Shape::Named(name.to_string())
    }

    /// The definition of a named type.
    pub fn get(&self, name: &str) -> Option<&TypeDef> {
        self.defs.get(name).and_then(|(_, d)| d.as_ref())
    }

    /// Every definition, sorted by name (deterministic output).
    pub fn defs(&self) -> impl Iterator<Item = &TypeDef> {
        self.defs.values().filter_map(|(_, d)| d.as_ref())
    }
}

/// A type whose archived structure can be described. Implemented for the
/// primitives and standard containers rkyv archives portably, and by
/// `#[hardlight::wire]` for the types it decorates.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no description for code generators",
    note = "put `#[hardlight::wire]` on its definition; hand-written rkyv derives cannot be described"
)]
pub trait Reflect {
    /// The type's shape; named types register their definition in `reg`.
    fn shape(reg: &mut Registry) -> Shape;
}

macro_rules! prim {
    ($($t:ty => $s:ident),* $(,)?) => {
        $(impl Reflect for $t {
            fn shape(_: &mut Registry) -> Shape {
                Shape::$s
            }
        })*
    };
}

prim!(
    () => Unit, bool => Bool, u8 => U8, u16 => U16, u32 => U32, u64 => U64, u128 => U128,
    i8 => I8, i16 => I16, i32 => I32, i64 => I64, i128 => I128, f32 => F32, f64 => F64,
    char => Char, String => String, usize => U32, isize => I32,
);

impl<T: Reflect> Reflect for Vec<T> {
    fn shape(reg: &mut Registry) -> Shape {
        Shape::Vec(Box::new(T::shape(reg)))
    }
}

impl<T: Reflect> Reflect for Option<T> {
    fn shape(reg: &mut Registry) -> Shape {
        Shape::Option(Box::new(T::shape(reg)))
    }
}

impl<T: Reflect, const N: usize> Reflect for [T; N] {
    fn shape(reg: &mut Registry) -> Shape {
        Shape::Array(Box::new(T::shape(reg)), N)
    }
}

macro_rules! tuple {
    ($($t:ident),+) => {
        impl<$($t: Reflect),+> Reflect for ($($t,)+) {
            fn shape(reg: &mut Registry) -> Shape {
                Shape::Tuple(vec![$($t::shape(reg)),+])
            }
        }
    };
}
tuple!(A);
tuple!(A, B);
tuple!(A, B, C);
tuple!(A, B, C, D);
tuple!(A, B, C, D, E);
tuple!(A, B, C, D, E, F);

/// A method's declared output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputDesc {
    /// Any type, sent as RESULT_OK (`()` for methods without `->`).
    Plain(Shape),
    /// `Result<T, E>`: `T` as RESULT_OK, `E` as RESULT_ERR.
    Result {
        /// The `Ok` type.
        ok: Shape,
        /// The application's error type.
        err: Shape,
    },
}

/// One method of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodDesc {
    /// The method's name as written in the trait.
    pub name: String,
    /// Its id: the position in the trait.
    pub id: u16,
    /// Its arguments, in order (the input struct's fields).
    pub args: Vec<(String, Shape)>,
    /// Its output.
    pub output: OutputDesc,
    /// Marked `#[idempotent]` in the trait (as `MethodSchema::idempotent`):
    /// generated clients in other languages resend it after a drop, as the
    /// Rust client opened with the schema does, without the application
    /// listing it.
    pub idempotent: bool,
}

/// One event type of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDesc {
    /// Its id: the position in `events(...)`.
    pub id: u16,
    /// Its shape (a named type, usually).
    pub shape: Shape,
}

/// Everything a client generator needs to know about a service.
#[derive(Debug, Clone)]
pub struct ServiceDesc {
    /// The trait's name.
    pub name: String,
    /// The schema fingerprint a client sends in `HardLight-Schema`.
    pub fingerprint: u64,
    /// Methods in id order.
    pub methods: Vec<MethodDesc>,
    /// Event types in id order.
    pub events: Vec<EventDesc>,
}

/// Implemented by `#[hardlight::rpc]` for `<Trait>Method` when every
/// argument, output, error and event type implements [`Reflect`].
pub trait ReflectService {
    /// The service's description; its named types go into `reg`.
    fn describe(reg: &mut Registry) -> ServiceDesc;
}

/// Implemented by `#[derive(ConnectionState)]` when every field type
/// implements [`Reflect`]: the state's fields in index order.
pub trait ReflectState {
    /// The state struct's name.
    const NAME: &'static str;
    /// Field names and shapes, by field index.
    fn fields(reg: &mut Registry) -> Vec<(String, Shape)>;
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Node;
    impl Reflect for Node {
        fn shape(reg: &mut Registry) -> Shape {
            reg.named::<Self>("Node", |reg| {
                TypeKind::Struct(Fields::Named(vec![("children".into(), Vec::<Node>::shape(reg))]))
            })
        }
    }

    #[test]
    fn containers_nest_and_recursive_types_terminate() {
        let mut reg = Registry::new();
        assert_eq!(
            <(Option<[u64; 2]>, usize)>::shape(&mut reg),
            Shape::Tuple(vec![Shape::Option(Box::new(Shape::Array(Box::new(Shape::U64), 2))), Shape::U32])
        );
        assert_eq!(Node::shape(&mut reg), Shape::Named("Node".into()));
        let def = reg.get("Node").unwrap();
        assert_eq!(
            def.kind,
            TypeKind::Struct(Fields::Named(vec![(
                "children".into(),
                Shape::Vec(Box::new(Shape::Named("Node".into())))
            )]))
        );
        assert!(reg.collisions.is_empty());
    }

    #[test]
    fn two_types_with_one_name_are_reported() {
        struct Other;
        let mut reg = Registry::new();
        reg.named::<Node>("Node", |_| TypeKind::Struct(Fields::Unit));
        reg.named::<Other>("Node", |_| TypeKind::Struct(Fields::Unit));
        assert_eq!(reg.collisions, vec!["Node".to_string()]);
    }
}
