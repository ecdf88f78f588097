//! The RPC driver on the ring: one task per connection, the same rounds as
//! the glommio driver (`crate::conn`), sharing its upgrade decision
//! (`conn::upgrade`), call dispatch (`conn::process_events`), reply
//! framing (`conn::finish`) and park rules (`crate::clock::before_park`:
//! the core's time rules and the shard's held-bytes budget).
//!
//! The task never performs I/O itself: it reads what the loop received
//! into the core, leaves its output in the core's outbound bytes, and the
//! loop submits the receive and send the connection then wants
//! (`super::io::Io::submit`). Completions wake the task.

use std::cell::RefCell;
use std::future::poll_fn;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures::FutureExt;
use hardlight_core::connection::Event;
use hardlight_core::Service;

use super::io::Io;
use super::timers::{self, Timer};
use crate::call::InCall;
use crate::clock::{before_park, must_rearm, HeldBytes, Parking};
use crate::conn::{
    drop_calls_after_grace, process_events, replay_if_resumed, start_round, upgrade, CallStart, Defer, Upgraded,
};
use crate::factory::ConnectionFactory;
use crate::metrics::{CallWrap, ConnMetrics, Plain, Spanned};
use crate::shard::Shard;
use crate::slots::CallSlots;

/// Serves one accepted connection to the end.
pub(crate) async fn serve<F: ConnectionFactory>(io: Rc<RefCell<Io>>, shard: Rc<Shard<F>>) {
    let mut deadline = Timer::after(shard.config.limits.handshake_timeout);
    let outcome = handshake(&io, &shard, &mut deadline).await;
    let Some(Some(made)) = outcome else {
        if outcome.is_some() {
            // Refused: the response goes out, within the handshake deadline.
            flushed(&io, &mut deadline).await;
        }
        return;
    };
    shard.stats.upgrades.inc();
    if crate::metrics::calls_traced() {
        run::<F, Spanned>(&io, &made, &shard).await;
    } else {
        run::<F, Plain>(&io, &made, &shard).await;
    }
}

/// Reads the upgrade request and asks the factory for a service. `None`:
/// the connection ended or timed out; `Some(None)`: refused (the response
/// is queued).
async fn handshake<F: ConnectionFactory>(
    io: &RefCell<Io>,
    shard: &Shard<F>,
    deadline: &mut Timer,
) -> Option<Option<Upgraded<F>>> {
    poll_fn(|cx| {
        let mut io = io.borrow_mut();
        let io = &mut *io;
        if io.failed {
            return Poll::Ready(None);
        }
        if io.readable() {
            if let Some(ev) = io.core.poll_event() {
                return Poll::Ready(match ev {
                    Event::Upgrade(req) => Some(upgrade(&mut io.core, &req, io.peer, shard)),
                    Event::HandshakeFailed(e) => {
                        tracing::debug!(peer = %io.peer, error = %e, "upgrade refused");
                        shard.stats.handshake_failures.inc();
                        shard.stats.refused.record(crate::stats::RefusalReason::of(&e));
                        Some(None)
                    }
                    Event::Closed(_) => Some(None),
                    Event::Call { .. } | Event::Cancel { .. } | Event::Message { .. } => None,
                });
            }
            if io.eof {
                return Poll::Ready(None);
            }
        }
        if deadline.poll_at(timers::now(), cx).is_ready() {
            tracing::debug!(peer = %io.peer, "handshake timed out");
            shard.stats.handshake_timeouts.inc();
            shard.stats.refused.record(crate::stats::RefusalReason::HandshakeTimeout);
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// Waits until everything queued was sent, the socket failed, or `deadline`.
pub(crate) async fn flushed(io: &RefCell<Io>, deadline: &mut Timer) {
    poll_fn(|cx| {
        let io = io.borrow();
        if io.flushed() || io.failed || deadline.poll_at(timers::now(), cx).is_ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

/// The message loop of an upgraded connection: one round per wake-up.
async fn run<F: ConnectionFactory, W: CallWrap>(io: &RefCell<Io>, made: &Upgraded<F>, shard: &Shard<F>) {
    let (service, outbox, info) = (&made.service, &*made.outbox, &made.info);
    let depth = shard.config.limits.max_validation_depth;
    let mut slots = CallSlots::new();
    let mut start = |call: CallStart<'_>| {
        service.call(call.method, call.input, depth).map(|f| {
            let traced = W::wrap(f, info.method_names, call.method, call.id, info.id);
            let fut = AssertUnwindSafe(traced).catch_unwind();
            InCall::new(info, call.id, call.method, call.timeout, fut)
        })
    };
    let metrics = ConnMetrics::attach(shard.metrics.as_ref(), &mut io.borrow_mut().core);
    let signal_key = shard.shutdown.subscribe();
    let _unsubscribe = Defer(|| shard.shutdown.unsubscribe(signal_key));
    let mut shutting_down = false;
    let mut closed = false;
    // Every time rule is the core's (crate::clock::before_park); this task
    // feeds it the loop's clock before parking and arms the one timer it
    // asks for.
    let mut timer = RingConnTimer::new();
    let mut held = HeldBytes::new(&shard.held_bytes);
    let budget = shard.config.shard_held_bytes_budget;

    poll_fn(|cx| {
        let mut io = io.borrow_mut();
        let io = &mut *io;
        loop {
            if io.failed {
                return Poll::Ready(());
            }
            start_round(
                &mut io.core,
                outbox,
                &mut slots,
                shard,
                (signal_key, made._registration.key),
                &mut shutting_down,
                cx,
            );

            // Parse what the loop received (never while a receive is in flight).
            if io.readable() {
                closed |= process_events(&mut io.core, &mut slots, &mut start);
                // A RESUME just parsed: its replay goes out in this round.
                // Nothing else would wake this task for it (glommio's loop
                // runs another round after every read; this one parks).
                if replay_if_resumed(&mut io.core, shard, made._registration.key) {
                    io.core.flush_outbox();
                }
            }
            // Calls whose deadline passed are dropped now, not at the next
            // receive (poll_event, which would deliver them, cannot run while
            // the read buffer is lent to the kernel).
            while let Some(id) = io.core.poll_cancel() {
                slots.cancel(id);
            }
            if let Some(m) = &metrics {
                m.end_round(&io.core);
            }
            if (closed || io.core.is_closed() || io.eof) && io.flushed() {
                return Poll::Ready(());
            }
            // What is queued goes to the send buffer now, so that the
            // held-bytes check counts only what could not be queued.
            io.stage_send();
            let now = timers::now();
            let spilled = io.spilled();
            match before_park(&mut io.core, spilled, now, &mut held, budget, &shard.stats) {
                Parking::Again(action) => {
                    drop_calls_after_grace(action, &mut slots);
                    continue;
                }
                Parking::Sleep(due) => timer.arm(due, now, cx),
            }
            // Run again after the next send only to queue what waits in
            // the outbox or release the held bytes it counted.
            io.wake_on_send = held.counted() > 0 || !outbox.is_empty();
            return Poll::Pending;
        }
    })
    .await;
    slots.clear();
    if let Some(m) = &metrics {
        m.end_round(&io.borrow().core);
    }
}

/// A ring connection's single timer, armed at the instant the core asks for
/// (the same re-arming rule as glommio's, `crate::clock::must_rearm`).
pub(crate) struct RingConnTimer {
    timer: Timer,
    armed: Option<std::time::Instant>,
}

impl RingConnTimer {
    pub(crate) fn new() -> Self {
        Self { timer: Timer::at(timers::now()), armed: None }
    }

    /// Arms the timer for `due`; it wakes the task.
    pub(crate) fn arm(&mut self, due: Option<std::time::Instant>, now: std::time::Instant, cx: &mut Context<'_>) {
        let Some(due) = due else { return };
        if must_rearm(self.armed, due, now) {
            self.timer.reset_at(due);
            let _ = self.timer.poll_at(now, cx);
            self.armed = Some(due);
        }
    }
}
