//! The service schema over real sockets: a client generated from another
//! version of the trait is refused in the upgrade with an HTTP error naming
//! the mismatch, a client without a fingerprint is accepted as before, and
//! only the service's declared event types are emitted and received.

use std::time::Duration;

use hardlight::client::{ClientConfig, ConnectError, Connection, EventError};
use hardlight::server::{ConnectContext, ConnectionEvents, Refusal, Server, ServerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An event the service declares.
#[hardlight::wire]
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub id: u64,
}

/// An event type the service does not declare, numbered by hand with the
/// id `Stored` has: the collision that used to decode one type's events as
/// the other's.
#[hardlight::wire]
#[derive(Debug, Clone, PartialEq)]
pub struct Stray {
    pub id: u64,
}

impl hardlight::Event for Stray {
    const TYPE: u16 = 0;
}

/// What the server is built from.
mod current {
    #[hardlight::rpc(events(super::Stored))]
    pub trait Store {
        async fn put(&self, value: u64) -> u64;
        async fn count(&self) -> u64;
        /// Tries to send the undeclared `Stray`; returns the error text.
        async fn stray(&self) -> String;
    }
}

/// An older client: same method count and names, `put` took a `u32`.
/// (Without `events(...)`, like `newer`, because one crate cannot declare
/// `Stored` as an event of two services: the `Event` impls would conflict.)
#[allow(dead_code)]
mod older {
    #[hardlight::rpc]
    pub trait Store {
        async fn put(&self, value: u32) -> u64;
        async fn count(&self) -> u64;
        async fn stray(&self) -> String;
    }
}

/// The server `older` connects to: identical but for `put`'s argument type.
mod newer {
    #[hardlight::rpc]
    pub trait Store {
        async fn put(&self, value: u64) -> u64;
        async fn count(&self) -> u64;
        async fn stray(&self) -> String;
    }

    pub struct Handler;

    impl Store for Handler {
        async fn put(&self, value: u64) -> u64 {
            value
        }
        async fn count(&self) -> u64 {
            0
        }
        async fn stray(&self) -> String {
            String::new()
        }
    }
}

use current::{Store, StoreClient, StoreMethod, StoreService};

struct Handler {
    events: ConnectionEvents,
}

impl Store for Handler {
    async fn put(&self, value: u64) -> u64 {
        self.events.send(&Stored { id: value }).expect("a declared event is sent");
        value
    }
    async fn count(&self) -> u64 {
        1
    }
    async fn stray(&self) -> String {
        let direct = self.events.send(&Stray { id: 1 }).unwrap_err().to_string();
        let all = self.events.emitter().to_all(&Stray { id: 1 }).unwrap_err().to_string();
        assert_eq!(direct, all);
        direct
    }
}

fn start() -> ServerHandle {
    Server::builder("127.0.0.1:0".parse().unwrap())
        .unpinned(1)
        .serve(|ctx: &ConnectContext<'_>| Ok::<_, Refusal>(StoreService::new(Handler { events: ctx.events() })))
        .expect("server starts")
}

fn start_newer() -> ServerHandle {
    Server::builder("127.0.0.1:0".parse().unwrap())
        .unpinned(1)
        .serve(|_: &ConnectContext<'_>| Ok::<_, Refusal>(newer::StoreService::new(newer::Handler)))
        .expect("server starts")
}

fn url(s: &ServerHandle) -> String {
    format!("ws://{}", s.local_addr())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_from_another_trait_version_is_refused_before_any_call() {
    let server = start_newer();
    use newer::StoreMethod;
    assert_ne!(older::StoreMethod::FINGERPRINT, StoreMethod::FINGERPRINT);
    let cfg = ClientConfig::default().schema(&older::StoreMethod::SCHEMA);
    match Connection::connect_with(&url(&server), cfg).await {
        Err(ConnectError::Refused { status, body }) => {
            assert_eq!(status, 400);
            assert!(body.contains("schema mismatch"), "{body}");
            let client = hardlight::protocol::schema::format_fingerprint(older::StoreMethod::FINGERPRINT);
            let ours = hardlight::protocol::schema::format_fingerprint(StoreMethod::FINGERPRINT);
            assert!(body.contains(&format!("client fingerprint {client}")), "{body}");
            assert!(body.contains(&format!("`Store` has {ours}")), "{body}");
            // The server's per-method hashes: `put` is the one that differs.
            let put = format!("put#{:08x}", StoreMethod::SCHEMA.methods[0].hash >> 32);
            let old_put = format!("put#{:08x}", older::StoreMethod::SCHEMA.methods[0].hash >> 32);
            assert!(body.contains(&put) && !body.contains(&old_put), "{body}");
            let count = format!("count#{:08x}", older::StoreMethod::SCHEMA.methods[1].hash >> 32);
            assert!(body.contains(&count), "unchanged methods hash the same: {body}");
        }
        other => panic!("expected a 400 refusal, got {other:?}"),
    }
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_fingerprint_or_with_the_right_one_are_accepted() {
    let server = start();
    // A port or a tool: no header, accepted as before.
    let raw = StoreClient::new(Connection::connect(&url(&server)).await.expect("no fingerprint is accepted"));
    assert_eq!(raw.put(5).await, Ok(5));
    // The generated client's own schema.
    let cfg = ClientConfig::default().schema(&StoreMethod::SCHEMA);
    let store = StoreClient::new(Connection::connect_with(&url(&server), cfg).await.expect("same schema"));
    let mut stored = store.caller().events::<Stored>();
    assert_eq!(store.put(7).await, Ok(7));
    let got = tokio::time::timeout(Duration::from_secs(5), stored.recv()).await.expect("event arrives");
    assert_eq!(got, Ok(Stored { id: 7 }));
    // The generated client clones with its connection.
    let copy = store.clone();
    assert_eq!(copy.count().await, Ok(1));
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeclared_event_types_are_refused_on_both_sides() {
    let server = start();
    let cfg = ClientConfig::default().schema(&StoreMethod::SCHEMA);
    let store = StoreClient::new(Connection::connect_with(&url(&server), cfg).await.unwrap());
    let why = store.stray().await.unwrap();
    assert!(why.contains("event type `schema::Stray` is not declared by service `Store`"), "{why}");
    assert!(why.contains("events(...)"), "{why}");
    // The client asks for an event type the service does not declare: a
    // typed error instead of another type's bytes.
    let mut stray = store.caller().events::<Stray>();
    match stray.recv().await {
        Err(EventError::Undeclared { event, service }) => {
            assert!(event.ends_with("Stray"), "{event}");
            assert_eq!(service, "Store");
        }
        other => panic!("expected Undeclared, got {other:?}"),
    }
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_fingerprint_header_is_a_400() {
    let server = start();
    let mut tcp = tokio::net::TcpStream::connect(server.local_addr()).await.unwrap();
    let req = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
               Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
               Sec-WebSocket-Protocol: hl/1\r\nHardLight-Schema: not-hex\r\n\r\n";
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    tcp.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{resp}");
    assert!(resp.contains("malformed hardlight-schema header \"not-hex\": expected 16 hexadecimal digits"), "{resp}");
    server.shutdown();
}
