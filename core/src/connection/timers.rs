//! The time rules of a connection: keepalive ping, idle close (4002), the
//! message deadline (4003), the close-handshake timeout, the shutdown
//! grace period, and the deadlines clients send with their calls.
//!
//! Time is an input. The core never reads a clock: the driver passes `now`
//! to [`ServerConnection::handle_timeout`] and asks
//! [`ServerConnection::poll_timeout`] when it must call again. Reads do not
//! touch the clock either: [`ServerConnection::on_read`] only sets a flag,
//! and the next `handle_timeout` stamps it with its `now`. A driver that
//! calls `handle_timeout` each time it is about to park (after a round that
//! read, parsed and wrote) therefore timestamps activity to within one
//! round, and pays one clock read per park, never one per call.
//!
//! Deadlines derived from activity only ever move later while the peer is
//! active, so a driver that re-arms its timer only when the deadline moves
//! *earlier* (and otherwise lets the old timer fire early and ask again)
//! re-arms about once per keepalive interval on a busy connection.

use std::time::{Duration, Instant};

use super::{CloseReason, Phase, ServerConnection};
use crate::error::CloseCode;

/// What one [`ServerConnection::handle_timeout`] call did. The driver must
/// run another round when it gets one: write `outbound`, and poll events
/// (a [`TimerAction::GaveUp`] leaves [`super::Event::Closed`] to deliver).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerAction {
    /// The peer was quiet for `keepalive_interval`: a ping is queued.
    Pinged,
    /// A time rule started the closing handshake with this code: 4002
    /// (idle), 4003 (message deadline) or 1001 (shutdown grace over, with
    /// calls still in flight: their futures may be dropped).
    Closing(CloseCode),
    /// The peer did not answer our Close within `close_timeout`: the
    /// connection is closed ([`super::Event::Closed`] follows) and its
    /// unsent output dropped; the driver closes the socket.
    GaveUp,
    /// One or more calls' deadlines passed: each was answered
    /// `DeadlineExceeded`, and [`super::Event::Cancel`] follows for each so
    /// the driver drops its handler.
    DeadlinesPassed,
}

/// The state behind the time rules. Every instant here came from a driver's
/// `now`.
#[derive(Debug, Default)]
pub(super) struct Timers {
    /// Bytes arrived since the last `handle_timeout`.
    pub(super) heard: bool,
    /// When bytes last arrived, as of the last `handle_timeout`; `None`
    /// until the first call after the upgrade.
    last_heard: Option<Instant>,
    /// A keepalive ping went out during the current silence.
    pinged: bool,
    /// When an incomplete message (or frame) was first seen, and how many
    /// messages had completed then: a later count means a later message.
    message_since: Option<(Instant, u64)>,
    /// When the first `handle_timeout` saw our Close sent.
    closing_since: Option<Instant>,
    /// Grace asked for by [`ServerConnection::shutdown`].
    pub(super) grace: Option<Duration>,
    /// When the grace period ends.
    grace_until: Option<Instant>,
    /// Live calls that came with a deadline: `(id, timeout in ms, due)`.
    /// `due` is `None` until the next `handle_timeout` stamps it (the core
    /// has no clock when the call arrives). At most one entry per live id,
    /// so at most 256; empty (and unallocated) for clients that send none.
    deadlines: Vec<(u8, u32, Option<Instant>)>,
}

impl Timers {
    /// Call `id` must finish within `ms` milliseconds of now.
    pub(super) fn add_deadline(&mut self, id: u8, ms: u32) {
        self.deadlines.push((id, ms, None));
    }

    /// Call `id` was answered: its deadline no longer applies.
    pub(super) fn forget_deadline(&mut self, id: u8) {
        if let Some(i) = self.deadlines.iter().position(|d| d.0 == id) {
            self.deadlines.swap_remove(i);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.iter().filter_map(|d| d.2).min()
    }
}

fn min_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

impl ServerConnection {
    /// The instant at which the driver must next call
    /// [`Self::handle_timeout`], or `None` if no time rule is pending (before
    /// the upgrade, once closed, or before the first `handle_timeout` after
    /// the upgrade).
    ///
    /// The answer may change after any call that takes `&mut self`; ask
    /// again after each `handle_timeout`. A deadline that moved later may be
    /// ignored: calling `handle_timeout` early is harmless (it does what is
    /// due and nothing else), so a driver can keep a timer armed at an
    /// earlier instant and re-arm only when this moves earlier or its timer
    /// has fired. Never reads the clock.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = &self.time;
        let l = &self.limits;
        match self.phase {
            Phase::Open => {
                let base = t.last_heard?;
                let quiet = if !t.pinged && l.keepalive_interval < l.idle_timeout {
                    l.keepalive_interval
                } else {
                    l.idle_timeout
                };
                let mut due = base.checked_add(quiet);
                if let Some((since, _)) = t.message_since {
                    due = min_opt(due, since.checked_add(l.message_timeout));
                }
                min_opt(min_opt(due, t.grace_until), t.next_deadline())
            }
            Phase::Closing(_) => t.closing_since.and_then(|s| s.checked_add(l.close_timeout)),
            Phase::Handshake | Phase::AwaitingAccept | Phase::Closed => None,
        }
    }

    /// Applies every time rule that is due at `now`.
    ///
    /// The driver's duties: call this when the instant [`Self::poll_timeout`]
    /// gave has passed, and each time it is about to park after a round
    /// that read bytes or queued output (that is how arrivals are stamped;
    /// a driver that calls it only on expiry sees activity late by up to
    /// its timer's period). Call it after [`Self::poll_event`] has returned
    /// `None`, so that a message still in the buffer is not taken for one
    /// still arriving. `now` must not go backwards. Spurious calls do
    /// nothing. When it returns `Some`, run another round: flush
    /// `outbound`, poll events, then park again.
    ///
    /// The rules, while open (all durations from [`crate::limits::Limits`]):
    /// a ping after `keepalive_interval` with nothing received; close 4002
    /// after `idle_timeout` with nothing received (a pong counts); close
    /// 4003 when a message or frame begun has not arrived in full within
    /// `message_timeout`; close 1001 when the grace period of
    /// [`Self::shutdown`] ends with calls in flight. While closing: give up
    /// on the peer's Close after `close_timeout`.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<TimerAction> {
        match self.phase {
            Phase::Open => {
                let passed = self.expire_deadlines(now);
                self.open_timeouts(now).or(passed.then_some(TimerAction::DeadlinesPassed))
            }
            Phase::Closing(code) => {
                let since = *self.time.closing_since.get_or_insert(now);
                if now.saturating_duration_since(since) < self.limits.close_timeout {
                    return None;
                }
                self.phase = Phase::Closed;
                self.in_start = self.in_end;
                self.data = None;
                // A peer that neither answers nor reads must not keep the
                // connection (and its unsent bytes) alive: nothing more
                // will be written.
                self.out.clear();
                self.out_start = 0;
                self.pending_close = Some(CloseReason::ByUs(code));
                Some(TimerAction::GaveUp)
            }
            Phase::Handshake | Phase::AwaitingAccept | Phase::Closed => None,
        }
    }

    /// Stamps deadlines that arrived since the last call, then ends the
    /// calls whose deadline is `now` or earlier. True if any ended.
    fn expire_deadlines(&mut self, now: Instant) -> bool {
        if self.time.deadlines.is_empty() {
            return false;
        }
        // A deadline too far ahead to represent as an Instant never passes.
        self.time.deadlines.retain_mut(|(_, ms, due)| {
            if due.is_none() {
                *due = now.checked_add(Duration::from_millis(u64::from(*ms)));
            }
            due.is_some()
        });
        let mut passed = false;
        while let Some(i) = self.time.deadlines.iter().position(|d| d.2.is_some_and(|due| due <= now)) {
            let (id, _, _) = self.time.deadlines.swap_remove(i);
            self.cancel(id, crate::error::CallErrorCode::DeadlineExceeded, "the call's deadline passed");
            passed = true;
        }
        passed
    }

    fn open_timeouts(&mut self, now: Instant) -> Option<TimerAction> {
        let limits = &self.limits;
        let t = &mut self.time;
        if t.heard || t.last_heard.is_none() {
            t.heard = false;
            t.pinged = false;
            t.last_heard = Some(now);
        }
        let quiet = now.saturating_duration_since(t.last_heard.unwrap_or(now));
        let done = self.stats.messages_received;
        let incomplete = self.data.is_some() || self.msg_opcode.is_some() || self.in_start < self.in_end;
        t.message_since = match t.message_since {
            Some((since, n)) if incomplete && n == done => Some((since, n)),
            _ if incomplete => Some((now, done)),
            _ => None,
        };
        if let Some(grace) = t.grace {
            if t.grace_until.is_none() {
                t.grace_until = now.checked_add(grace);
            }
        }
        let (code, reason) = if t.grace_until.is_some_and(|g| now >= g) {
            (CloseCode::GoingAway, "server shutting down")
        } else if t.message_since.is_some_and(|(s, _)| now.saturating_duration_since(s) >= limits.message_timeout) {
            (CloseCode::MessageTimeout, "message not completed within the message timeout")
        } else if quiet >= limits.idle_timeout {
            (CloseCode::IdleTimeout, "idle timeout")
        } else {
            if !t.pinged && limits.keepalive_interval < limits.idle_timeout && quiet >= limits.keepalive_interval {
                t.pinged = true;
                self.ping(b"hl");
                // Quiet for a keepalive interval: idle buffers go back at
                // the driver's next read_buf.
                self.release_buffers = true;
                return Some(TimerAction::Pinged);
            }
            return None;
        };
        self.close(code, reason);
        self.time.closing_since = Some(now);
        Some(TimerAction::Closing(code))
    }
}
