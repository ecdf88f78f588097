//! The types the conformance tests exchange with the TypeScript runtime,
//! each able to print itself as a JavaScript literal (`ToJs`, the form the
//! TS decoder must produce) and to make random values (`Rand`).

#![allow(dead_code)]

pub mod values;

pub use values::{Rand, Rng, ToJs};

/// A nested struct with a string that is sometimes inline, sometimes not.
#[hardlight::wire]
#[derive(Debug, Clone, PartialEq)]
pub struct Inner {
    pub a: u8,
    pub b: u64,
    pub s: String,
}

/// An enum with data: unit, positional, named and 16-byte-aligned variants.
#[hardlight::wire]
#[derive(Debug, Clone, PartialEq)]
pub enum Ev {
    Unit,
    Tuple(u8, String),
    Named { x: u64, y: Vec<u8> },
    Wide(u128),
}

/// A tuple struct.
#[hardlight::wire]
#[derive(Debug, Clone, PartialEq)]
pub struct Pair(pub u16, pub String);

/// Every kind of field the generator supports.
#[hardlight::wire]
#[derive(Debug, Clone, PartialEq)]
pub struct All {
    pub b: bool,
    pub u8_: u8,
    pub u16_: u16,
    pub u32_: u32,
    pub u64_: u64,
    pub u128_: u128,
    pub i8_: i8,
    pub i16_: i16,
    pub i32_: i32,
    pub i64_: i64,
    pub i128_: i128,
    pub f32_: f32,
    pub f64_: f64,
    pub c: char,
    pub us: usize,
    pub s: String,
    pub v: Vec<u16>,
    pub vs: Vec<String>,
    pub o: Option<u32>,
    pub os: Option<String>,
    pub arr: [u16; 3],
    pub t: (u8, String, u64),
    pub inner: Inner,
    pub inners: Vec<Inner>,
    pub e: Ev,
    pub es: Vec<Ev>,
    pub pair: Pair,
    pub nested: Option<Vec<Option<Inner>>>,
    pub deep: Vec<Vec<Vec<u8>>>,
}

/// A service using them, so that inputs, outputs, errors and events are
/// described by the macros as for a real service.
#[hardlight::rpc(events(Ev, Inner))]
pub trait Kitchen {
    async fn echo(&self, all: All, n: u64) -> Result<All, Ev>;
    async fn ping(&self);
}

impl ToJs for Inner {
    fn js(&self) -> String {
        format!("{{a:{},b:{},s:{}}}", self.a.js(), self.b.js(), self.s.js())
    }
}

impl ToJs for Ev {
    fn js(&self) -> String {
        match self {
            Ev::Unit => "{tag:\"Unit\"}".into(),
            Ev::Tuple(a, b) => format!("{{tag:\"Tuple\",0:{},1:{}}}", a.js(), b.js()),
            Ev::Named { x, y } => format!("{{tag:\"Named\",x:{},y:{}}}", x.js(), y.js()),
            Ev::Wide(w) => format!("{{tag:\"Wide\",0:{}}}", w.js()),
        }
    }
}

impl ToJs for Pair {
    fn js(&self) -> String {
        format!("[{},{}]", self.0.js(), self.1.js())
    }
}

impl ToJs for All {
    fn js(&self) -> String {
        let f: Vec<(&str, String)> = vec![
            ("b", self.b.js()),
            ("u8_", self.u8_.js()),
            ("u16_", self.u16_.js()),
            ("u32_", self.u32_.js()),
            ("u64_", self.u64_.js()),
            ("u128_", self.u128_.js()),
            ("i8_", self.i8_.js()),
            ("i16_", self.i16_.js()),
            ("i32_", self.i32_.js()),
            ("i64_", self.i64_.js()),
            ("i128_", self.i128_.js()),
            ("f32_", self.f32_.js()),
            ("f64_", self.f64_.js()),
            ("c", self.c.js()),
            ("us", self.us.js()),
            ("s", self.s.js()),
            ("v", self.v.js()),
            ("vs", self.vs.js()),
            ("o", self.o.js()),
            ("os", self.os.js()),
            ("arr", self.arr.js()),
            ("t", self.t.js()),
            ("inner", self.inner.js()),
            ("inners", self.inners.js()),
            ("e", self.e.js()),
            ("es", self.es.js()),
            ("pair", self.pair.js()),
            ("nested", self.nested.js()),
            ("deep", self.deep.js()),
        ];
        format!("{{{}}}", f.into_iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(","))
    }
}

impl Rand for Inner {
    fn rand(r: &mut Rng) -> Self {
        Self { a: Rand::rand(r), b: Rand::rand(r), s: Rand::rand(r) }
    }
}

impl Rand for Ev {
    fn rand(r: &mut Rng) -> Self {
        match r.below(4) {
            0 => Ev::Unit,
            1 => Ev::Tuple(Rand::rand(r), Rand::rand(r)),
            2 => Ev::Named { x: Rand::rand(r), y: Rand::rand(r) },
            _ => Ev::Wide(Rand::rand(r)),
        }
    }
}

impl Rand for Pair {
    fn rand(r: &mut Rng) -> Self {
        Pair(Rand::rand(r), Rand::rand(r))
    }
}

impl Rand for All {
    fn rand(r: &mut Rng) -> Self {
        Self {
            b: Rand::rand(r),
            u8_: Rand::rand(r),
            u16_: Rand::rand(r),
            u32_: Rand::rand(r),
            u64_: Rand::rand(r),
            u128_: Rand::rand(r),
            i8_: Rand::rand(r),
            i16_: Rand::rand(r),
            i32_: Rand::rand(r),
            i64_: Rand::rand(r),
            i128_: Rand::rand(r),
            f32_: Rand::rand(r),
            f64_: Rand::rand(r),
            c: Rand::rand(r),
            us: r.next() as u32 as usize,
            s: Rand::rand(r),
            v: Rand::rand(r),
            vs: Rand::rand(r),
            o: Rand::rand(r),
            os: Rand::rand(r),
            arr: Rand::rand(r),
            t: Rand::rand(r),
            inner: Rand::rand(r),
            inners: Rand::rand(r),
            e: Rand::rand(r),
            es: Rand::rand(r),
            pair: Rand::rand(r),
            nested: Rand::rand(r),
            deep: Rand::rand(r),
        }
    }
}
