//! HardLight: typed RPC over a binary WebSocket subprotocol (`hl/1`), served
//! by a thread-per-core io_uring server, called from tokio or a web page.
//!
//! This crate is the one an application depends on. Its root holds what an
//! application names; [`server`] and [`client`] are the two drivers (behind
//! the features of the same names, both on by default); [`protocol`] holds
//! the wire-level building blocks for ports, tools and tests.
//!
//! # 1. Define a service
//!
//! A service is a trait marked `#[hardlight::rpc]`. Every type that crosses
//! the wire gets `#[hardlight::wire]` (rkyv's derives, nothing to import).
//! Methods return a value, or `Result<T, E>` with the application's own
//! error type, delivered to the client typed.
//!
//! ```
//! #[hardlight::wire]
//! #[derive(Debug, Clone, PartialEq, Eq)]
//! pub enum CounterError {
//!     Underflow { current: u64 },
//! }
//!
//! #[hardlight::rpc]
//! pub trait Counter {
//!     async fn increment(&self, amount: u64) -> u64;
//!     async fn decrement(&self, amount: u64) -> Result<u64, CounterError>;
//! }
//!
//! // The macro generated, among others:
//! let _method = CounterMethod::Increment;            // the method enum (ids in declaration order)
//! let _schema: &hardlight::Schema = &CounterMethod::SCHEMA; // the compile-time fingerprint
//! # fn server_side<H: Counter>(h: H) -> CounterService<H> { CounterService::new(h) }
//! # fn client_side(c: hardlight::client::Connection) -> CounterClient<hardlight::client::Connection> {
//! #     CounterClient::new(c)
//! # }
//! ```
//!
//! # 2. Serve it
//!
//! Implement the trait, and give the server a factory that returns one
//! service per connection. The factory sees the peer address, the upgrade's
//! headers and cookies ([`server::ConnectContext`]) and may refuse the
//! connection with an HTTP status ([`server::Refusal`]).
//!
//! ```no_run
//! # #[hardlight::wire] #[derive(Debug, Clone, PartialEq, Eq)]
//! # pub enum CounterError { Underflow { current: u64 } }
//! # #[hardlight::rpc]
//! # pub trait Counter {
//! #     async fn increment(&self, amount: u64) -> u64;
//! #     async fn decrement(&self, amount: u64) -> Result<u64, CounterError>;
//! # }
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//!
//! use hardlight::server::{ConnectContext, Refusal, Server};
//!
//! struct Handler {
//!     value: Arc<AtomicU64>,
//! }
//!
//! impl Counter for Handler {
//!     async fn increment(&self, amount: u64) -> u64 {
//!         self.value.fetch_add(amount, Ordering::Relaxed) + amount
//!     }
//!     async fn decrement(&self, amount: u64) -> Result<u64, CounterError> {
//!         self.value
//!             .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(amount))
//!             .map(|old| old - amount)
//!             .map_err(|current| CounterError::Underflow { current })
//!     }
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let value = Arc::new(AtomicU64::new(0));
//!     let server = Server::builder("127.0.0.1:9000".parse()?)
//!         .shards(2) // one pinned executor per shard; connections never leave their shard
//!         .serve(move |ctx: &ConnectContext<'_>| {
//!             if ctx.request.header("user-agent").is_none() {
//!                 return Err(Refusal::new(403, "say who you are"));
//!             }
//!             Ok(CounterService::new(Handler { value: value.clone() }))
//!         })?;
//!     // Runs until SIGTERM or SIGINT, then drains calls in flight and closes
//!     // every connection with 1001.
//!     server.run_until_signal()?;
//!     Ok(())
//! }
//! ```
//!
//! Handlers run on the connection's shard (HardLight's own io_uring loop, or
//! a glommio executor with [`server::Backend::Glommio`]), not a tokio
//! runtime: wait with [`server::rt::sleep`] and [`server::rt::spawn_blocking`],
//! which work on both.
//!
//! # 3. Call it
//!
//! The generated client wraps a [`client::Connection`]; it is `Clone`, and
//! clones share the connection (up to 256 calls in flight, more wait for a
//! free call id).
//!
//! ```no_run
//! # #[hardlight::wire] #[derive(Debug, Clone, PartialEq, Eq)]
//! # pub enum CounterError { Underflow { current: u64 } }
//! # #[hardlight::rpc]
//! # pub trait Counter {
//! #     async fn increment(&self, amount: u64) -> u64;
//! #     async fn decrement(&self, amount: u64) -> Result<u64, CounterError>;
//! # }
//! use hardlight::client::{ClientConfig, Connection};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // `schema` sends the trait's fingerprint: a server built from another
//! // version of `Counter` refuses the upgrade with HTTP 400 naming the mismatch.
//! let config = ClientConfig::default().schema(&CounterMethod::SCHEMA);
//! let counter = CounterClient::new(Connection::connect_with("ws://127.0.0.1:9000", config).await?);
//! let v: u64 = counter.increment(5).await?; // `?`: transport or protocol failure (hardlight::CallError)
//! match counter.decrement(10).await? {
//!     Ok(v) => println!("now {v}"),
//!     Err(CounterError::Underflow { current }) => println!("refused, still {current}"),
//! }
//! # let _ = v;
//! # Ok(())
//! # }
//! ```
//!
//! # 4. Connection state, feature sets, events
//!
//! - **State** ([`StateHandle`], [`ConnectionState`]): a struct the server
//!   owns per connection, created in the factory with
//!   [`server::ConnectContext::state`] and changed in handlers through a
//!   guard ([`StateHandle::lock`]); on release only the changed fields go to
//!   the client, before that call's response. The client reads a mirror
//!   ([`client::Connection::state`]).
//! - **Feature sets** ([`Features`], [`FeatureSet`]): which methods a
//!   connection may call, decided in the factory (from cookies or headers) and
//!   changed by handlers (an `authenticate` method enabling the rest). A
//!   disabled method is refused before its input is parsed.
//! - **Events** ([`Event`]): types declared with the service,
//!   `#[hardlight::rpc(events(ChatMessage))]`, pushed by the server to
//!   connections picked by topic or by their state, on every core and,
//!   through Redis, on every server ([`server::Emitter`]); the client reads a
//!   typed stream ([`client::Connection::events`]).
//!
//! A complete application (login through a cookie, state, features, topic
//! events, a Redis broker) is the chat example: `server-uring/examples/chat-server.rs`
//! and `client/examples/chat-client.rs`.
//!
//! # 5. One process, both sides
//!
//! This runs as it is: a server on a free port, a tokio client, one call.
//!
//! ```
//! #[hardlight::rpc]
//! pub trait Echo {
//!     async fn echo(&self, text: String) -> String;
//! }
//!
//! struct Handler;
//! impl Echo for Handler {
//!     async fn echo(&self, text: String) -> String {
//!         text
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use hardlight::server::{ConnectContext, Refusal, Server};
//!
//! let server = Server::builder("127.0.0.1:0".parse()?)
//!     .shards(1)
//!     .serve(|_: &ConnectContext<'_>| Ok::<_, Refusal>(EchoService::new(Handler)))?;
//! let url = format!("ws://{}", server.local_addr());
//!
//! let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! let reply = rt.block_on(async {
//!     let client = EchoClient::new(hardlight::client::Connection::connect(&url).await?);
//!     Ok::<_, Box<dyn std::error::Error>>(client.echo("hello".to_string()).await?)
//! })?;
//! assert_eq!(reply, "hello");
//! server.shutdown();
//! # Ok(())
//! # }
//! ```
//!
//! # Errors
//!
//! A call's `?` error is a [`CallError`]: the transport failed, the call
//! timed out, the server refused it (with a [`CallErrorCode`]), the
//! connection closed (with a [`CloseCode`]). The application's own errors
//! are the `E` of a method's `Result<T, E>`, never mixed into `CallError`.
//!
//! # The protocol
//!
//! The wire is specified byte by byte in `docs/PROTOCOL.md`; [`protocol`]
//! re-exports the sans-I/O core that implements both sides of it, for
//! writing a port, a tool, or another driver.

#![warn(missing_docs)]

pub use hardlight_core::{
    CallError, CallErrorCode, CloseCode, ConnectionState, DecodeError, EncodeError, Event, EventLimits, FeatureSet,
    Features, Schema, Service, SlowConsumerPolicy, StateGuard, StateHandle, Wire,
};
pub use hardlight_macros::{rpc, wire, ConnectionState};

/// rkyv, the archive format of every message, at the version HardLight
/// validates with (for applications that read archives themselves).
pub use hardlight_core::rkyv;

/// The thread-per-core server (Linux, io_uring): [`server::Server`], the
/// connection factory, events, TLS, shutdown, and [`server::rt`] for
/// handlers that wait.
#[cfg(feature = "server")]
#[doc(inline)]
pub use hardlight_server as server;

/// The tokio client: [`client::Connection`], its configuration, the state
/// mirror and event streams. The typed client generated by
/// `#[hardlight::rpc]` wraps a connection.
#[cfg(feature = "client")]
#[doc(inline)]
pub use hardlight_client as client;

/// The sans-I/O protocol core, both sides: handshake, framing, envelopes,
/// call ids, the server connection and client session state machines,
/// archives, limits, schemas and the broker payload. Applications do not
/// need it; ports, tools and other drivers do. Specified in
/// `docs/PROTOCOL.md`.
pub mod protocol {
    #[doc(inline)]
    pub use hardlight_core::{
        backoff, broker, calls, client, connection, envelope, error, events, feature_set, features, frame, handshake,
        limits, outbox, reflect, resume, schema, service, session, state, state_diff, wire,
    };
}

#[doc(hidden)]
pub use hardlight_core::__private;

// Every Rust snippet in the README and docs/ compiles: rustdoc collects them
// as doc-tests of this crate (`cargo test -p hardlight --doc`).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeSnippets;
