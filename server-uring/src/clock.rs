//! What a connection task does before it parks: the core's time rules, the
//! one timer the core asks for, and the shard's budget for bytes held on
//! peers' account. Shared by the RPC and echo drivers of both backends
//! ([`before_park`], [`must_rearm`]); [`ConnTimer`] is glommio's timer.
//!
//! All of it runs only when the task is about to park, never per call: the
//! clock is read once per park, and the timer is re-armed only when the
//! core's next deadline moves earlier than the armed one or the armed one
//! has passed.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::{Duration, Instant};

use glommio::timer::Timer;
use hardlight_core::connection::{ServerConnection, TimerAction};
use hardlight_core::error::CloseCode;

use crate::stats::ServerStats;

/// What a connection task does when it is about to park.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parking {
    /// Run another round instead (write, poll events): a time rule acted
    /// (the action, for the driver's own bookkeeping), or the connection was
    /// closed for the shard's budget (`None`).
    Again(Option<TimerAction>),
    /// Park, with the timer armed for this instant (none: no time rule is
    /// pending).
    Sleep(Option<Instant>),
}

/// The rules every driver applies, on every backend, when a connection's
/// task is about to park: feed the core the clock (it stamps arrivals and
/// applies what is due: keepalive, idle close, message deadline, close
/// handshake, shutdown grace), count what it did, and charge the
/// connection's held bytes to the shard's budget (closing it with 4004 if it
/// grew past it). `driver_held`: bytes the driver itself holds for the
/// connection on the peer's account (the ring's received bytes waiting for
/// room in the core). Runs once per park, never per call.
pub(crate) fn before_park(
    conn: &mut ServerConnection,
    driver_held: usize,
    now: Instant,
    held: &mut HeldBytes<'_>,
    budget: usize,
    stats: &ServerStats,
) -> Parking {
    if let Some(action) = conn.handle_timeout(now) {
        match action {
            TimerAction::Closing(CloseCode::IdleTimeout) => stats.idle_closed.inc(),
            TimerAction::Closing(CloseCode::MessageTimeout) => stats.message_timeouts.inc(),
            _ => {}
        }
        tracing::debug!(?action, "connection timer");
        return Parking::Again(Some(action));
    }
    let mine = conn.held_bytes() + driver_held;
    if held.update(mine, budget) && conn.is_open() {
        tracing::debug!(held = mine, "shard over its held-bytes budget: closing the newest offender");
        stats.over_budget.inc();
        conn.close(CloseCode::OverBudget, "server over its memory budget");
        return Parking::Again(None);
    }
    Parking::Sleep(conn.poll_timeout())
}

/// Whether a timer armed for `armed` must be re-armed for `due`: only when
/// the deadline moved earlier or the armed one has passed. A later deadline
/// keeps the armed timer: it fires early, the core says nothing is due, and
/// the timer is armed again then (re-arming a glommio timer re-registers it
/// with the reactor, so doing it every round would cost every call).
pub(crate) fn must_rearm(armed: Option<Instant>, due: Instant, now: Instant) -> bool {
    armed.is_none_or(|armed| due < armed || armed <= now)
}

/// A glommio connection's single timer, armed at the instant the core asks for.
pub(crate) struct ConnTimer {
    timer: Timer,
    /// The deadline the timer is armed for; `None` before the first arming.
    armed: Option<Instant>,
}

impl ConnTimer {
    pub(crate) fn new() -> Self {
        // Not registered with the reactor until first polled.
        Self { timer: Timer::new(Duration::from_secs(3600)), armed: None }
    }

    /// Arms the timer for `due` (see [`must_rearm`]); it wakes the task.
    pub(crate) fn arm(&mut self, due: Option<Instant>, now: Instant, cx: &mut Context<'_>) {
        let Some(due) = due else { return };
        if must_rearm(self.armed, due, now) {
            self.timer.reset(due.saturating_duration_since(now).max(Duration::from_millis(1)));
            // Registers the task's waker; the timer wakes it at `due`.
            let _ = Pin::new(&mut self.timer).poll(cx);
            self.armed = Some(due);
        }
    }
}

/// One connection's share of its shard's held bytes (partial messages plus
/// unsent output), kept in the shard's `Cell` (a shard is one thread).
pub(crate) struct HeldBytes<'a> {
    total: &'a Cell<usize>,
    mine: usize,
}

impl<'a> HeldBytes<'a> {
    pub(crate) fn new(total: &'a Cell<usize>) -> Self {
        Self { total, mine: 0 }
    }

    /// The bytes this connection is counted for now.
    pub(crate) fn counted(&self) -> usize {
        self.mine
    }

    /// Records that this connection now holds `now` bytes. True when they
    /// grew and the shard is over `budget`: this connection is the newest
    /// offender and must be closed (4004). Connections that did not grow
    /// are never blamed.
    pub(crate) fn update(&mut self, now: usize, budget: usize) -> bool {
        let grew = now > self.mine;
        self.total.set(self.total.get() - self.mine + now);
        self.mine = now;
        grew && self.total.get() > budget
    }
}

impl Drop for HeldBytes<'_> {
    fn drop(&mut self) {
        self.total.set(self.total.get() - self.mine);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_growth_over_the_budget_is_blamed_and_shares_are_returned() {
        let total = Cell::new(0);
        let mut a = HeldBytes::new(&total);
        let mut b = HeldBytes::new(&total);
        assert!(!a.update(60, 100));
        assert!(!b.update(30, 100));
        assert!(b.update(50, 100), "b grew past the budget");
        assert!(!a.update(60, 100), "a did not grow");
        assert!(!b.update(0, 100));
        assert_eq!(total.get(), 60);
        drop(a);
        assert_eq!(total.get(), 0);
        drop(b);
    }
}
