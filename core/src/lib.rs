//! HardLight's protocol core, with no I/O.
//!
//! Everything HardLight puts on the wire is decided here and tested on byte
//! buffers: the upgrade handshake and its version rule ([`handshake`]),
//! WebSocket framing ([`frame`]), the message envelope ([`envelope`]),
//! call-id tracking ([`calls`]), archive encoding ([`wire`]), the
//! server-side connection state machine ([`connection`]), the client side
//! of a connection at message level ([`session`]) and at byte level
//! ([`client`]), every limit ([`limits`]), service schemas and their
//! fingerprint ([`schema`]), and the payload servers exchange through a broker
//! ([`broker`]). The glommio server and the tokio client are thin drivers
//! that move bytes between sockets and this crate.
//!
//! The wire format is specified byte by byte in `docs/PROTOCOL.md`.

#![warn(missing_docs)]

pub mod broker;
pub mod calls;
pub mod client;
pub mod connection;
pub mod envelope;
pub mod error;
pub mod events;
pub mod features;
pub mod frame;
pub mod handshake;
pub mod limits;
pub mod outbox;
pub mod reflect;
pub mod schema;
pub mod service;
pub mod session;
pub mod state;
pub mod wire;

pub use error::{CallError, CallErrorCode, CloseCode, DecodeError, EncodeError};
pub use events::{EncodedEvent, Event, EventLimits, SlowConsumerPolicy};
pub use features::{FeatureSet, Features};
pub use outbox::Outbox;
pub use schema::Schema;
pub use service::{Caller, RawReply, Rejection, Reply, Service};
pub use state::{ConnectionState, StateGuard, StateHandle};
pub use wire::{AlignedBuf, Wire};

/// rkyv, re-exported so that generated code and applications derive wire
/// types against the same version HardLight validates with.
pub use rkyv;
