//! Every bound the protocol enforces, in one place, each with a named default.
//!
//! A server that accepts traffic from the network must bound every buffer and
//! queue a peer can grow; these are the knobs. The drivers (`hardlight-server`,
//! `hardlight-client`) read them from here rather than inventing their own.

use std::time::Duration;

/// Calls in flight on one connection. Fixed by the wire format: call ids are a `u8`.
pub const MAX_CALLS_IN_FLIGHT: usize = 256;

/// Default largest WebSocket message (after reassembly of fragments) a peer may send.
///
/// RPC inputs are small; 1 MiB leaves room for bulk arguments while keeping a
/// hostile peer from pinning much memory per connection.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 20;

/// Default largest HTTP upgrade request (request line plus headers), in bytes.
pub const DEFAULT_MAX_HANDSHAKE_SIZE: usize = 8 * 1024;

/// Default largest number of headers in the upgrade request.
pub const DEFAULT_MAX_HEADERS: usize = 64;

/// Default cap on bytes queued for one connection's socket before the server
/// stops reading that connection's calls (back-pressure on slow readers).
pub const DEFAULT_MAX_OUTBOUND_BYTES: usize = 4 << 20;

/// Default time a peer has to complete the HTTP upgrade after TCP accept.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default silence after which the server pings a connection (keepalive).
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);

/// Default silence after which the server closes a connection (4002): no
/// bytes at all, not even a pong to its keepalive pings.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Default time a message has to arrive in full once its first frame header
/// has (close code 4003 otherwise).
///
/// Without it a peer could announce a message just under the size limit and
/// trickle a byte now and then: never idle, never complete, holding up to
/// `max_message_size` of server memory for as long as it likes. 30 s lets a
/// full 1 MiB message through a link of about 35 KB/s.
pub const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Default time the server waits for the peer's Close after sending its own,
/// before it closes TCP anyway (a peer that vanished must not hold a
/// connection open).
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Default time in-flight calls get to finish during graceful shutdown.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Default depth limit for validating untrusted archives; rkyv has none by default,
/// so a crafted deeply nested archive could otherwise recurse without bound.
pub const DEFAULT_MAX_VALIDATION_DEPTH: usize = 64;

/// Default read buffer size per connection. Grows up to `max_message_size` plus
/// frame overhead only when a peer sends a message larger than this.
pub const DEFAULT_READ_BUFFER_SIZE: usize = 16 * 1024;

/// Read buffer of a connection that is handshaking or idle: a connection's
/// buffers start this small (or empty) and grow with traffic, and shrink
/// back after a keepalive interval of quiet, so that memory per idle
/// connection stays in kilobytes.
pub const IDLE_READ_BUFFER: usize = 1024;

/// Protocol bounds applied to one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest reassembled message; larger ones close the connection with 1009.
    pub max_message_size: usize,
    /// Largest upgrade request; larger ones get HTTP 431.
    pub max_handshake_size: usize,
    /// Most headers in the upgrade request; more get HTTP 431.
    pub max_headers: usize,
    /// Outbound bytes queued before the connection stops reading new calls.
    pub max_outbound_bytes: usize,
    /// Time allowed for the upgrade request to arrive.
    pub handshake_timeout: Duration,
    /// Validation depth for archives received from the network.
    pub max_validation_depth: usize,
    /// Initial read buffer size.
    pub read_buffer_size: usize,
    /// Silence before a keepalive ping.
    pub keepalive_interval: Duration,
    /// Silence before the connection is closed with 4002.
    pub idle_timeout: Duration,
    /// Time a begun message (or frame) has to arrive in full; 4003 otherwise.
    pub message_timeout: Duration,
    /// Wait for the peer's Close after ours before closing TCP regardless.
    pub close_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_handshake_size: DEFAULT_MAX_HANDSHAKE_SIZE,
            max_headers: DEFAULT_MAX_HEADERS,
            max_outbound_bytes: DEFAULT_MAX_OUTBOUND_BYTES,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_validation_depth: DEFAULT_MAX_VALIDATION_DEPTH,
            read_buffer_size: DEFAULT_READ_BUFFER_SIZE,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            message_timeout: DEFAULT_MESSAGE_TIMEOUT,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
        }
    }
}
