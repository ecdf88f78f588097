//! The keepalive and idle rules of an open connection, shared by both
//! backends: a ping after a quiet `keepalive_interval`, Close 4002 if the
//! quiet lasts `idle_timeout`.
//!
//! Reads only set a flag ([`Keepalive::heard`]); the clock is looked at when
//! a connection is about to park, so the per-call path pays nothing for it.
//! This is the one place the rules live in the server; it is meant to be
//! replaced by the core's own timeouts once they exist.

use std::time::{Duration, Instant};

use hardlight_core::connection::ServerConnection;
use hardlight_core::error::CloseCode;
use hardlight_core::limits::Limits;

use crate::stats::ServerStats;

/// One connection's keepalive clock.
pub(crate) struct Keepalive {
    interval: Duration,
    idle: Duration,
    heard: bool,
    pinged: bool,
    quiet_since: Instant,
    due: Instant,
}

impl Keepalive {
    pub(crate) fn new(limits: &Limits, now: Instant) -> Self {
        let (interval, idle) = (limits.keepalive_interval, limits.idle_timeout);
        Self { interval, idle, heard: false, pinged: false, quiet_since: now, due: now + interval.min(idle) }
    }

    /// Bytes arrived from the peer.
    pub(crate) fn heard(&mut self) {
        self.heard = true;
    }

    /// When [`Self::check`] next has something to do.
    pub(crate) fn due(&self) -> Instant {
        self.due
    }

    /// Applies the rules at `now`: restarts the quiet period if the peer
    /// was heard, else pings once, else closes with 4002. Returns whether
    /// it was due (the caller then runs its round again: a ping or a close
    /// may have been queued, and [`Self::due`] moved).
    pub(crate) fn check(&mut self, conn: &mut ServerConnection, now: Instant, stats: &ServerStats) -> bool {
        if now < self.due {
            return false;
        }
        if self.heard {
            self.heard = false;
            self.pinged = false;
            self.quiet_since = now;
            self.due = now + self.interval.min(self.idle);
        } else if !self.pinged && self.interval < self.idle {
            conn.ping(b"hl");
            self.pinged = true;
            self.due = self.quiet_since + self.idle;
        } else {
            tracing::debug!(quiet = ?now - self.quiet_since, "closing idle connection");
            stats.idle_closed.inc();
            conn.close(CloseCode::IdleTimeout, "idle timeout");
            // Nothing more to do; the close handshake has its own timer.
            self.due = now + self.idle;
        }
        true
    }
}
