//! Server-wide counters, readable from any thread while the server runs.

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
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
    /// TLS handshakes that failed (bad client hello, untrusted cert on the client side, plain text on a TLS port).
    pub tls_failures: Counter,
    /// Connections closed for idleness (no bytes within the idle timeout).
    pub idle_closed: Counter,
}
