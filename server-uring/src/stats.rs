//! Server-wide counters, readable from any thread while the server runs.

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    #[cfg_attr(not(feature = "broker"), allow(dead_code))]
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A gauge that goes up and down (open connections).
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    #[cfg_attr(not(feature = "broker"), allow(dead_code))]
    pub(crate) fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters for the whole server (all shards).
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections refused, by reason (the `reason` label of
    /// `hardlight_connections_refused_total`).
    pub refused: Refusals,
    /// TCP connections accepted.
    pub accepted: Counter,
    /// Connections currently open (TCP accepted and not yet closed).
    pub open: Gauge,
    /// Upgrades completed.
    pub upgrades: Counter,
    /// Upgrade requests refused for protocol reasons (bad version, malformed).
    pub handshake_failures: Counter,
    /// Connections dropped because the upgrade did not arrive in time.
    pub handshake_timeouts: Counter,
    /// Connections refused because a shard was at its connection limit.
    pub over_capacity: Counter,
    /// Failed accepts (EMFILE at the fd limit, ENFILE, ENOBUFS...); logged
    /// at most once per `ACCEPT_ERROR_LOG_INTERVAL`, counted here always.
    pub accept_errors: Counter,
    /// TLS handshakes that failed (bad client hello, untrusted cert on the client side, plain text on a TLS port).
    pub tls_failures: Counter,
    /// Connections closed for idleness (no bytes within the idle timeout).
    pub idle_closed: Counter,
    /// Connections closed with 4003: a message begun was not complete
    /// within the message timeout.
    pub message_timeouts: Counter,
    /// Connections closed with 4004: their growth took their shard over
    /// its budget of held bytes.
    pub over_budget: Counter,
    /// Connections closed because a socket operation failed (reset by the
    /// peer, broken pipe, any error the kernel reported).
    pub io_errors: Counter,
}

/// Counters of the broker bridge (`ServerBuilder::broker`): what crossed to
/// and from other servers, and what was lost. Every topic event this server
/// did not get to the broker is counted in exactly one of
/// `publish_failures`, `dropped_while_down` or `queue_full` (the last one
/// also returned `EmitError::BrokerBacklog` to the emitter).
#[derive(Debug, Default)]
pub struct BrokerStats {
    /// Topic events the broker accepted (positioned, kept and published).
    pub published: Counter,
    /// Events from other servers received from the broker.
    pub received: Counter,
    /// This server's own events received back from the broker: with a
    /// broker, that is how they reach this server's clients, positioned.
    pub own_received: Counter,
    /// Events whose publication failed while in flight (the connection
    /// broke or timed out; whether Redis ran them is unknown, so they are
    /// not sent again).
    pub publish_failures: Counter,
    /// Events still queued for the broker when the server shut down
    /// without a broker connection (while it runs, events wait for one).
    pub dropped_while_down: Counter,
    /// Topic emits refused with `EmitError::BrokerBacklog` because the
    /// bridge's queue was full (the emitter never waits for the bridge).
    pub queue_full: Counter,
    /// Messages on a subscribed channel that were not HardLight events.
    pub malformed: Counter,
    /// Times the connection was re-established after being lost.
    pub reconnects: Counter,
    /// Broker channels the bridge is subscribed to on its live connection.
    pub subscribed: Gauge,
    /// 1 while the bridge has a live broker connection, else 0.
    pub connected: Gauge,
}

impl BrokerStats {
    /// Whether the bridge has a live broker connection now.
    pub fn is_connected(&self) -> bool {
        self.connected.get() == 1
    }
}

/// Why a connection was refused before it was upgraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusalReason {
    /// The shard held its maximum of connections.
    OverCapacity,
    /// The upgrade (or the TLS handshake) did not finish in time.
    HandshakeTimeout,
    /// The TLS handshake failed.
    Tls,
    /// The upgrade request was too large (431).
    TooLarge,
    /// The upgrade request had too many headers (431).
    TooManyHeaders,
    /// The upgrade request was not HTTP/1.1 (400).
    Malformed,
    /// The upgrade request was not a GET (405).
    NotGet,
    /// No `Upgrade: websocket` (426).
    NotUpgrade,
    /// Missing or unsupported `Sec-WebSocket-Version` (426).
    WebSocketVersion,
    /// Missing or invalid `Sec-WebSocket-Key` (400).
    BadKey,
    /// The client did not offer `hl/1` (400).
    UnsupportedProtocol,
    /// The client was built from another service schema (400).
    SchemaMismatch,
    /// The browser's origin is not allowed (403).
    Origin,
    /// The application's connection factory refused (its status is counted
    /// apart: [`Refusals::factory_status`]).
    Factory,
    /// The application's connection factory panicked (500).
    FactoryPanic,
}

impl RefusalReason {
    /// Every reason, in label order.
    pub const ALL: [Self; 15] = [
        Self::OverCapacity,
        Self::HandshakeTimeout,
        Self::Tls,
        Self::TooLarge,
        Self::TooManyHeaders,
        Self::Malformed,
        Self::NotGet,
        Self::NotUpgrade,
        Self::WebSocketVersion,
        Self::BadKey,
        Self::UnsupportedProtocol,
        Self::SchemaMismatch,
        Self::Origin,
        Self::Factory,
        Self::FactoryPanic,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Self::OverCapacity => "over_capacity",
            Self::HandshakeTimeout => "handshake_timeout",
            Self::Tls => "tls",
            Self::TooLarge => "too_large",
            Self::TooManyHeaders => "too_many_headers",
            Self::Malformed => "malformed",
            Self::NotGet => "not_get",
            Self::NotUpgrade => "not_upgrade",
            Self::WebSocketVersion => "websocket_version",
            Self::BadKey => "bad_key",
            Self::UnsupportedProtocol => "unsupported_protocol",
            Self::SchemaMismatch => "schema_mismatch",
            Self::Origin => "origin",
            Self::Factory => "factory",
            Self::FactoryPanic => "factory_panic",
        }
    }

    /// The reason for a refused upgrade request.
    pub(crate) fn of(e: &hardlight_core::handshake::HandshakeError) -> Self {
        use hardlight_core::handshake::HandshakeError as E;
        match e {
            E::TooLarge(_) => Self::TooLarge,
            E::TooManyHeaders(_) => Self::TooManyHeaders,
            E::Malformed(_) => Self::Malformed,
            E::NotGet(_) => Self::NotGet,
            E::NotUpgrade => Self::NotUpgrade,
            E::WebSocketVersion(_) => Self::WebSocketVersion,
            E::BadKey => Self::BadKey,
            E::UnsupportedProtocol(_) => Self::UnsupportedProtocol,
            E::Refused(..) => Self::Factory,
        }
    }
}

/// Lowest and highest HTTP status a factory refusal is counted under
/// ([`Refusals::factory_status`]); others count under 500.
const STATUS_RANGE: std::ops::RangeInclusive<u16> = 100..=599;

/// Refused connections by [`RefusalReason`], and factory refusals by status.
#[derive(Debug)]
pub struct Refusals {
    by_reason: [Counter; RefusalReason::ALL.len()],
    by_status: Box<[Counter]>,
}

impl Default for Refusals {
    fn default() -> Self {
        Self { by_reason: Default::default(), by_status: STATUS_RANGE.map(|_| Counter::default()).collect() }
    }
}

impl Refusals {
    /// Connections refused for `reason`.
    pub fn get(&self, reason: RefusalReason) -> u64 {
        self.by_reason[reason as usize].get()
    }

    /// Connections the factory refused with HTTP `status`.
    pub fn factory_status(&self, status: u16) -> u64 {
        self.by_status.get(status.wrapping_sub(*STATUS_RANGE.start()) as usize).map_or(0, Counter::get)
    }

    /// The statuses factories refused with so far, with their counts.
    pub fn factory_statuses(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        STATUS_RANGE.zip(self.by_status.iter()).map(|(s, c)| (s, c.get())).filter(|&(_, n)| n > 0)
    }

    pub(crate) fn record(&self, reason: RefusalReason) {
        self.by_reason[reason as usize].inc();
    }

    pub(crate) fn record_factory(&self, status: u16) {
        self.record(RefusalReason::Factory);
        let status = if STATUS_RANGE.contains(&status) { status } else { 500 };
        self.by_status[(status - STATUS_RANGE.start()) as usize].inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_index_their_own_counter() {
        let r = Refusals::default();
        for (i, reason) in RefusalReason::ALL.into_iter().enumerate() {
            assert_eq!(reason as usize, i, "{reason:?} is out of label order");
            r.record(reason);
            assert_eq!(r.get(reason), 1);
        }
    }

    #[test]
    fn factory_statuses_outside_http_count_as_500() {
        let r = Refusals::default();
        r.record_factory(401);
        r.record_factory(42);
        r.record_factory(599);
        assert_eq!(r.factory_statuses().collect::<Vec<_>>(), vec![(401, 1), (500, 1), (599, 1)]);
        assert_eq!(r.get(RefusalReason::Factory), 3);
        assert_eq!(r.factory_status(1000), 0);
    }
}
