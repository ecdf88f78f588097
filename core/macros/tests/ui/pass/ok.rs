//! Correct use: a public and a private service compile with no warnings and
//! no missing docs, and the generated items have the documented shapes.
#![deny(warnings, missing_docs)]

use hardlight::rkyv::{Archive, Deserialize, Serialize};

/// An application error.
#[derive(Archive, Serialize, Deserialize, Debug)]
#[rkyv(crate = hardlight::rkyv)]
pub enum MathError {
    /// Division by zero.
    DivByZero,
}

/// A counter.
#[hardlight::rpc]
pub trait Counter {
    /// Adds `amount`, returns the new value.
    async fn increment(&self, amount: u32) -> u32;
    /// The current value.
    async fn get(&self) -> u32;
    /// `a / b`.
    async fn divide(&self, a: u32, b: u32) -> Result<u32, MathError>;
    /// Raw identifiers work as method and argument names.
    async fn r#type(&self, r#in: Vec<String>) -> std::result::Result<Option<u64>, String>;
}

/// A user type named `C` must not be shadowed by the client's type parameter.
#[derive(Archive, Serialize, Deserialize)]
#[rkyv(crate = hardlight::rkyv)]
pub struct C(pub u8);

#[hardlight::rpc]
trait Private {
    async fn echo(&self, c: C) -> C;
    async fn nothing(&self);
}

struct Impl;

impl Private for Impl {
    async fn echo(&self, c: C) -> C {
        c
    }

    async fn nothing(&self) {}
}

fn check<S: hardlight::Service>(_: &S) {}

fn main() {
    check(&PrivateService::new(Impl));
    let _: CounterMethod = CounterMethod::Type;
    assert_eq!(CounterMethod::NAMES, &["increment", "get", "divide", "type"]);
    let _ = CounterTypeInput { r#in: vec![] };
    let _: CounterTypeOutput = Ok(None);
    let _: PrivateMethod = PrivateMethod::Nothing;
}
