//! The ring shard's timers: a binary heap in user space, looked at once per
//! loop pass. The loop's one `io_uring_enter` waits with a timeout only when
//! a timer is pending, so no timer SQE is ever submitted, cancelled or
//! re-armed (glommio re-arms two timers on every pass).
//!
//! A timer is an entry (deadline, sequence number) in the heap plus the
//! waker it wakes, kept in a map under its sequence number; cancelling
//! removes it from the map only, and the heap entry is skipped when it
//! comes up. A timer keeps one clone of one waker at a time.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    wakers: HashMap<u64, Waker>,
    next: u64,
}

thread_local! {
    static TIMERS: RefCell<Timers> = RefCell::new(Timers::default());
    /// The loop's clock, read once per pass.
    static NOW: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Records the time of this loop pass.
pub(crate) fn set_now(now: Instant) {
    NOW.with(|n| n.set(Some(now)));
}

/// The time of the current loop pass (one clock read per pass, shared by
/// every connection's timers), or the clock off a ring shard.
pub(crate) fn now() -> Instant {
    NOW.with(|n| n.get()).unwrap_or_else(Instant::now)
}

/// The earliest pending deadline on this thread, dropping cancelled entries.
pub(crate) fn next_deadline() -> Option<Instant> {
    TIMERS.with(|t| {
        let mut t = t.borrow_mut();
        while let Some(Reverse((at, seq))) = t.heap.peek().copied() {
            if t.wakers.contains_key(&seq) {
                return Some(at);
            }
            t.heap.pop();
        }
        None
    })
}

/// Wakes every timer due at `now`.
pub(crate) fn fire(now: Instant) {
    loop {
        let due = TIMERS.with(|t| {
            let mut t = t.borrow_mut();
            match t.heap.peek().copied() {
                Some(Reverse((at, seq))) if at <= now => {
                    t.heap.pop();
                    Some(t.wakers.remove(&seq))
                }
                _ => None,
            }
        });
        match due {
            // Woken outside the borrow: a waker may touch timers.
            Some(Some(w)) => w.wake(),
            Some(None) => {}
            None => return,
        }
    }
}

/// A point in time on the ring shard's clock: a future that completes at
/// its deadline. Re-polling replaces its waker only when it changed.
pub(crate) struct Timer {
    deadline: Instant,
    seq: Option<u64>,
}

impl Timer {
    pub(crate) fn at(deadline: Instant) -> Self {
        Self { deadline, seq: None }
    }

    pub(crate) fn after(d: Duration) -> Self {
        Self::at(Instant::now() + d)
    }

    /// Moves the deadline (the old registration is dropped).
    pub(crate) fn reset_at(&mut self, deadline: Instant) {
        self.cancel();
        self.deadline = deadline;
    }

    fn cancel(&mut self) {
        if let Some(seq) = self.seq.take() {
            let _ = TIMERS.try_with(|t| t.borrow_mut().wakers.remove(&seq));
        }
    }

    /// Ready once `now` has reached the deadline; else registers `cx`'s
    /// waker to be woken then.
    pub(crate) fn poll_at(&mut self, now: Instant, cx: &mut Context<'_>) -> Poll<()> {
        if now >= self.deadline {
            self.cancel();
            return Poll::Ready(());
        }
        TIMERS.with(|t| {
            let mut t = t.borrow_mut();
            match self.seq.and_then(|s| t.wakers.get_mut(&s)) {
                Some(w) => {
                    if !w.will_wake(cx.waker()) {
                        *w = cx.waker().clone();
                    }
                }
                None => {
                    let seq = t.next;
                    t.next += 1;
                    t.heap.push(Reverse((self.deadline, seq)));
                    t.wakers.insert(seq, cx.waker().clone());
                    self.seq = Some(seq);
                }
            }
        });
        Poll::Pending
    }
}

impl Future for Timer {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.poll_at(Instant::now(), cx)
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.cancel();
    }
}
