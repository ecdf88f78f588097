//! Correct use: a public and a private service compile with no warnings and
//! no missing docs, and the generated items have the documented shapes.
#![deny(warnings, missing_docs)]

/// An application error: `#[hardlight::wire]`, nothing imported.
#[hardlight::wire]
#[derive(Debug)]
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

/// A user type named `C` must not be shadowed by the client's type
/// parameter. rkyv's derives written out still work.
#[derive(hardlight::rkyv::Archive, hardlight::rkyv::Serialize, hardlight::rkyv::Deserialize)]
#[rkyv(crate = hardlight::rkyv)]
pub struct C(pub u8);

/// An event with data.
#[hardlight::wire]
pub enum Change {
    /// Something was added: its id. (A variant with named fields would
    /// trip `missing_docs` on rkyv's generated resolver.)
    Added(u64),
    /// Everything was cleared.
    Cleared,
}

/// A service with an event type.
#[hardlight::rpc(events(Change))]
pub trait Feed {
    /// Follows the feed.
    async fn follow(&self);
}

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
    assert_eq!(<Change as hardlight::Event>::TYPE, 0);
    assert_ne!(FeedMethod::FINGERPRINT, CounterMethod::FINGERPRINT);
}
