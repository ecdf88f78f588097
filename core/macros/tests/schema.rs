//! `#[hardlight::wire]`, event types declared with the service, the
//! compile-time schema fingerprint, and the generated client's `Clone`.
//!
//! This file deliberately has no `use hardlight::rkyv`: `#[hardlight::wire]`
//! needs nothing else in scope.

use std::sync::Arc;

use hardlight::protocol::service::{Caller, RawReply};
use hardlight::protocol::wire::AlignedBuf;
use hardlight::{CallError, Event, Service, Wire};

/// A struct wire type that keeps its other derives.
#[hardlight::wire]
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Across.
    pub x: u32,
    /// Down.
    pub y: u32,
}

/// An enum with data; the attribute may also come after the derive.
#[derive(Debug, PartialEq)]
#[hardlight::wire]
pub enum Shape {
    /// A circle.
    Circle {
        /// Its centre.
        centre: Point,
        /// Its radius.
        radius: u64,
    },
    /// A named polygon.
    Polygon(String, Vec<Point>),
    /// Nothing.
    Empty,
}

/// A generic wire type.
#[hardlight::wire]
#[derive(Debug, PartialEq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Where the next page starts.
    pub next: Option<u64>,
}

/// A type with rkyv's derives written out still works everywhere.
#[derive(hardlight::rkyv::Archive, hardlight::rkyv::Serialize, hardlight::rkyv::Deserialize, Debug, PartialEq)]
#[rkyv(crate = hardlight::rkyv)]
pub struct Plain {
    /// A value.
    pub v: u8,
}

/// Someone joined.
#[hardlight::wire]
#[derive(Debug, PartialEq)]
pub struct Joined {
    /// Who.
    pub user: String,
}

/// Someone said something.
#[hardlight::wire]
#[derive(Debug, PartialEq)]
pub struct Said {
    /// What.
    pub text: String,
}

/// A service with two event types.
#[hardlight::rpc(events(Joined, Said))]
pub trait Draw {
    /// Draws a shape.
    async fn draw(&self, shape: Shape, at: Point) -> Result<Page<Point>, String>;
    /// Echoes.
    async fn plain(&self, p: Plain) -> Plain;
}

fn round_trip<T: Wire + PartialEq + std::fmt::Debug>(value: T) {
    let bytes = hardlight::protocol::wire::encode(&value).unwrap();
    assert_eq!(T::decode(&bytes).unwrap(), value);
}

#[test]
fn wire_types_round_trip_and_keep_their_derives() {
    let p = Point { x: 1, y: 2 };
    round_trip(p.clone());
    round_trip(Shape::Circle { centre: p.clone(), radius: 9 });
    round_trip(Shape::Polygon("tri".into(), vec![p.clone(), p.clone(), p]));
    round_trip(Shape::Empty);
    round_trip(Page { items: vec![Shape::Empty], next: Some(3) });
    round_trip(Plain { v: 7 });
}

#[test]
fn event_ids_are_positions_in_the_events_list() {
    assert_eq!(Joined::TYPE, 0);
    assert_eq!(Said::TYPE, 1);
    let schema = DrawMethod::SCHEMA;
    let events: Vec<(&str, u16)> = schema.events.iter().map(|e| (e.name, e.id)).collect();
    assert_eq!(events, [("Joined", 0), ("Said", 1)]);
    assert!(schema.declares_event::<Said>(1));
    assert!(!schema.declares_event::<Said>(0), "Said is not event 0");
    assert!(!schema.declares_event::<Point>(0), "Point is no event of Draw");
    assert_eq!(schema.event_named::<Joined>().map(|e| e.id), Some(0));
}

#[test]
fn the_service_carries_its_schema() {
    struct Handler;
    impl Draw for Handler {
        async fn draw(&self, _: Shape, at: Point) -> Result<Page<Point>, String> {
            Ok(Page { items: vec![at], next: None })
        }
        async fn plain(&self, p: Plain) -> Plain {
            p
        }
    }
    let schema = <DrawService<Handler> as Service>::SCHEMA.expect("generated services have a schema");
    assert_eq!(schema.fingerprint, DrawMethod::FINGERPRINT);
    assert_eq!(schema.service, "Draw");
    let names: Vec<&str> = schema.methods.iter().map(|m| m.name).collect();
    assert_eq!(names, DrawMethod::NAMES);
}

/// The same trait text over different definitions of its types, and
/// variations of the trait itself: each must change the fingerprint.
#[allow(dead_code)]
mod v1 {
    #[hardlight::wire]
    pub struct Item {
        pub id: u32,
    }
    #[hardlight::rpc]
    pub trait Store {
        async fn put(&self, item: Item) -> u64;
        async fn count(&self) -> u64;
    }
}

/// Identical to `v1`: same fingerprint.
#[allow(dead_code)]
mod v1_again {
    #[hardlight::wire]
    pub struct Item {
        pub id: u32,
    }
    #[hardlight::rpc]
    pub trait Store {
        async fn put(&self, item: Item) -> u64;
        async fn count(&self) -> u64;
    }
}

/// `Item::id` widened: the trait reads the same.
#[allow(dead_code)]
mod field_type {
    #[hardlight::wire]
    pub struct Item {
        pub id: u64,
    }
    #[hardlight::rpc]
    pub trait Store {
        async fn put(&self, item: Item) -> u64;
        async fn count(&self) -> u64;
    }
}

/// `Item::id` renamed: same size, same layout, other name.
#[allow(dead_code)]
mod field_name {
    #[hardlight::wire]
    pub struct Item {
        pub key: u32,
    }
    #[hardlight::rpc]
    pub trait Store {
        async fn put(&self, item: Item) -> u64;
        async fn count(&self) -> u64;
    }
}

/// An argument's type changed, same method count.
#[allow(dead_code)]
mod argument {
    #[hardlight::wire]
    pub struct Item {
        pub id: u32,
    }
    #[hardlight::rpc]
    pub trait Store {
        async fn put(&self, item: u32) -> u64;
        async fn count(&self) -> u64;
    }
}

/// Methods swapped.
#[allow(dead_code)]
mod order {
    #[hardlight::wire]
    pub struct Item {
        pub id: u32,
    }
    #[hardlight::rpc]
    pub trait Store {
        async fn count(&self) -> u64;
        async fn put(&self, item: Item) -> u64;
    }
}

/// An event type added.
#[allow(dead_code)]
mod with_event {
    #[hardlight::wire]
    pub struct Item {
        pub id: u32,
    }
    #[hardlight::rpc(events(Item))]
    pub trait Store {
        async fn put(&self, item: Item) -> u64;
        async fn count(&self) -> u64;
    }
}

#[test]
fn fingerprint_is_stable_and_changes_with_the_schema() {
    let base = v1::StoreMethod::FINGERPRINT;
    assert_eq!(v1_again::StoreMethod::FINGERPRINT, base, "same definitions, same fingerprint");
    for (what, other) in [
        ("field type", field_type::StoreMethod::FINGERPRINT),
        ("field name", field_name::StoreMethod::FINGERPRINT),
        ("argument type", argument::StoreMethod::FINGERPRINT),
        ("method order", order::StoreMethod::FINGERPRINT),
        ("event added", with_event::StoreMethod::FINGERPRINT),
    ] {
        assert_ne!(other, base, "{what} must change the fingerprint");
    }
    // Only the changed method's hash differs: what a refusal lists.
    let (a, b) = (v1::StoreMethod::SCHEMA, argument::StoreMethod::SCHEMA);
    assert_ne!(a.methods[0].hash, b.methods[0].hash);
    assert_eq!(a.methods[1].hash, b.methods[1].hash);
}

/// A caller that is `Clone`, as a client connection is.
#[derive(Clone)]
struct Shared(Arc<()>);

impl Caller for Shared {
    async fn call_raw(&self, _: u16, _: AlignedBuf) -> Result<RawReply, CallError> {
        Err(CallError::Disconnected("test caller".into()))
    }
}

/// A caller that is not.
struct Unique;

impl Caller for Unique {
    async fn call_raw(&self, _: u16, _: AlignedBuf) -> Result<RawReply, CallError> {
        Err(CallError::Disconnected("test caller".into()))
    }
}

#[test]
fn the_client_is_clone_when_its_caller_is() {
    let client = DrawClient::new(Shared(Arc::new(())));
    let copy = client.clone();
    assert!(Arc::ptr_eq(&client.caller().0, &copy.caller().0), "clones share the caller's state");
    assert_eq!(Arc::strong_count(&client.caller().0), 2);
    // A non-Clone caller still makes a usable client.
    let unique = DrawClient::new(Unique);
    let err = futures::executor::block_on(unique.plain(Plain { v: 1 })).unwrap_err();
    assert!(matches!(err, CallError::Disconnected(_)));
}
