//! Nothing internal reaches a client: random inputs to every method of a
//! service with varied argument types, over a real socket to the real
//! server, never get an error text with an address in it.

mod common;

use hardlight::client::Connection;
use hardlight::protocol::error::{CallError, CallErrorCode};
use hardlight::rkyv;
use hardlight::server::{ConnectContext, Refusal};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
#[rkyv(crate = hardlight::rkyv)]
pub enum Shape {
    Dot,
    Circle { r: f64 },
    Named(String),
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
#[rkyv(crate = hardlight::rkyv)]
pub struct Nested {
    pub tags: Vec<String>,
    pub shape: Option<Box<Shape>>,
    pub flag: bool,
    pub letter: char,
}

#[hardlight::rpc]
pub trait Varied {
    async fn unit(&self) -> u8;
    async fn number(&self, n: u64) -> u64;
    async fn text(&self, s: String) -> u32;
    async fn list(&self, v: Vec<String>, o: Option<u64>) -> u32;
    async fn shape(&self, s: Shape) -> u8;
    async fn nested(&self, n: Nested, more: Vec<Nested>) -> u32;
}

struct H;

impl Varied for H {
    async fn unit(&self) -> u8 {
        0
    }
    async fn number(&self, n: u64) -> u64 {
        n
    }
    async fn text(&self, s: String) -> u32 {
        s.len() as u32
    }
    async fn list(&self, v: Vec<String>, _o: Option<u64>) -> u32 {
        v.len() as u32
    }
    async fn shape(&self, _s: Shape) -> u8 {
        1
    }
    async fn nested(&self, _n: Nested, more: Vec<Nested>) -> u32 {
        more.len() as u32
    }
}

/// `0x` followed by six or more hex digits: what a leaked address looks like.
fn has_hex_address(text: &str) -> bool {
    let b = text.as_bytes();
    (0..b.len().saturating_sub(1)).any(|i| {
        b[i] == b'0' && b[i + 1] == b'x' && b[i + 2..].iter().take_while(|c| c.is_ascii_hexdigit()).count() >= 6
    })
}

#[test]
fn random_inputs_to_every_method_never_get_an_address_or_a_type_name_back() {
    let server = common::builder()
        .serve(|_: &ConnectContext<'_>| Ok::<_, Refusal>(VariedService::new(H)))
        .expect("server starts");
    let url = format!("ws://{}", server.local_addr());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let conn = rt.block_on(Connection::connect(&url)).expect("connects");
    let methods = <VariedService<H> as hardlight::Service>::METHOD_NAMES.len() as u16;
    let mut runner = TestRunner::new(Config { cases: 512, failure_persistence: None, ..Config::default() });
    let rejected = std::cell::Cell::new(0u32);
    runner
        .run(&(0..methods, proptest::collection::vec(any::<u8>(), 0..300)), |(method, input)| {
            match rt.block_on(conn.call(method, &input)) {
                Ok(_) => {}
                Err(CallError::Rejected { code, detail }) => {
                    prop_assert_eq!(code, CallErrorCode::InvalidInput);
                    prop_assert!(!has_hex_address(&detail), "address in {:?}", detail);
                    for internal in ["ptr", "Archived", "Nested", "Shape", "struct", "src/", ".rs"] {
                        prop_assert!(!detail.contains(internal), "{:?} in {:?}", internal, detail);
                    }
                    rejected.set(rejected.get() + 1);
                }
                Err(e) => prop_assert!(false, "unexpected error {}", e),
            }
            Ok(())
        })
        .unwrap();
    let rejected = rejected.get();
    assert!(rejected > 100, "random inputs should mostly be rejected, got {rejected}");
    assert!(!conn.is_closed(), "the connection survives every rejected call");
}

#[test]
fn address_detector_finds_what_rkyv_used_to_print() {
    assert!(has_hex_address("subtree pointer overran range: ptr 0x00007f9280000ce0 size 48"));
    assert!(!has_hex_address("0x12 and 0xabcde are short"));
}
