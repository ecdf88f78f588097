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
/// and from other servers, and what was lost. Redis pub/sub delivers at most
/// once; every event this server did not get across is counted in exactly
/// one of `publish_failures`, `dropped_while_down` or `queue_full`.
#[derive(Debug, Default)]
pub struct BrokerStats {
    /// Topic events the broker accepted (its PUBLISH was answered).
    pub published: Counter,
    /// Events from other servers handed to this server's shards.
    pub received: Counter,
    /// This server's own publications that came back from the broker and
    /// were skipped (they were already delivered locally).
    pub skipped_own: Counter,
    /// Events whose PUBLISH failed (the connection broke or timed out
    /// while it was in flight).
    pub publish_failures: Counter,
    /// Events not published because the bridge had no broker connection.
    pub dropped_while_down: Counter,
    /// Events not handed to the bridge because its queue was full (the
    /// emitter never waits for the bridge).
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
