//! The one timer a connection task arms for its core, and the shard's budget
//! for bytes held on peers' account. Shared by the RPC and echo drivers.
//!
//! Both run only when the task is about to park, never per call: the clock
//! is read once per park, and the timer is re-armed only when the core's
//! next deadline moves earlier than the armed one or the armed one has
//! passed (a glommio timer re-registers with the reactor each time it is
//! reset and polled, so re-arming on every round would cost every call).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::{Duration, Instant};

use glommio::timer::Timer;
use hardlight_core::connection::{ServerConnection, TimerAction};

/// A connection's single timer, armed at the instant the core asks for.
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

    /// Feeds the clock to the core before the task parks, and arms the
    /// timer for the core's next deadline. Returns what the core did; on
    /// `Some` the caller runs another round (write, poll events) instead
    /// of parking.
    pub(crate) fn before_park(&mut self, conn: &mut ServerConnection, cx: &mut Context<'_>) -> Option<TimerAction> {
        let now = Instant::now();
        if let Some(action) = conn.handle_timeout(now) {
            return Some(action);
        }
        let due = conn.poll_timeout()?;
        // A later deadline keeps the armed timer: it fires early, the core
        // says nothing is due, and the timer is armed again then.
        if self.armed.is_none_or(|armed| due < armed || armed <= now) {
            self.timer.reset(due.saturating_duration_since(now).max(Duration::from_millis(1)));
            // Registers the task's waker; the timer wakes it at `due`.
            let _ = Pin::new(&mut self.timer).poll(cx);
            self.armed = Some(due);
        }
        None
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
