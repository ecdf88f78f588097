//! The RPC driver on the ring: one task per connection, the same rounds as
//! the glommio driver (`crate::conn`), sharing its upgrade decision
//! (`conn::upgrade`), call dispatch (`conn::process_events`), reply
//! framing (`conn::finish`) and keepalive rules (`crate::keepalive`).
//!
//! The task never performs I/O itself: it reads what the loop received
//! into the core, leaves its output in the core's outbound bytes, and the
//! loop submits the receive and send the connection then wants
//! (`super::io::Io::submit`). Completions wake the task.

use std::cell::RefCell;
use std::future::poll_fn;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::task::Poll;

use futures::FutureExt;
use hardlight_core::connection::Event;
use hardlight_core::error::CloseCode;
use hardlight_core::Service;

use super::io::Io;
use super::timers::{self, Timer};
use crate::conn::{finish, process_events, upgrade, Defer, Upgraded, CLOSE_TIMEOUT};
use crate::factory::ConnectionFactory;
use crate::keepalive::Keepalive;
use crate::shard::Shard;
use crate::slots::CallSlots;

/// Serves one accepted connection to the end.
pub(crate) async fn serve<F: ConnectionFactory>(io: Rc<RefCell<Io>>, shard: Rc<Shard<F>>) {
    let mut deadline = Timer::after(shard.config.limits.handshake_timeout);
    let outcome = handshake(&io, &shard, &mut deadline).await;
    let Some(Some((service, outbox, _registration))) = outcome else {
        if outcome.is_some() {
            // Refused: the response goes out, within the handshake deadline.
            flushed(&io, &mut deadline).await;
        }
        return;
    };
    shard.stats.upgrades.inc();
    run(&io, &service, &outbox, &shard).await;
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
                        Some(None)
                    }
                    Event::Closed(_) => Some(None),
                    Event::Call { .. } | Event::Message { .. } => None,
                });
            }
            if io.eof {
                return Poll::Ready(None);
            }
        }
        if deadline.poll_at(timers::now(), cx).is_ready() {
            tracing::debug!(peer = %io.peer, "handshake timed out");
            shard.stats.handshake_timeouts.inc();
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
async fn run<F: ConnectionFactory>(
    io: &RefCell<Io>,
    service: &F::Service,
    outbox: &hardlight_core::Outbox,
    shard: &Shard<F>,
) {
    let limits = shard.config.limits.clone();
    let depth = limits.max_validation_depth;
    let names = <F::Service as Service>::METHOD_NAMES;
    let mut slots = CallSlots::new();
    let mut start =
        |method: u16, input: &[u8]| service.call(method, input, depth).map(|f| AssertUnwindSafe(f).catch_unwind());
    let signal_key = shard.shutdown.subscribe();
    let _unsubscribe = Defer(|| shard.shutdown.unsubscribe(signal_key));
    let mut draining = false;
    let mut grace: Option<Timer> = None;
    let mut close_timer: Option<Timer> = None;
    let mut closed = false;
    let mut keepalive = Keepalive::new(&limits, timers::now());
    let mut idle_timer = Timer::at(keepalive.due());
    let mut timer_armed = false;

    poll_fn(|cx| {
        let mut io = io.borrow_mut();
        let io = &mut *io;
        loop {
            if io.failed {
                return Poll::Ready(());
            }
            if std::mem::take(&mut io.heard) {
                keepalive.heard();
            }
            let conn = &mut io.core;
            // Messages queued from outside a call, then woken calls, each
            // behind the state changes it made.
            outbox.register(cx.waker());
            if outbox.overflowed() && conn.is_open() {
                tracing::debug!("event queue over its bound: closing slow consumer");
                conn.close(CloseCode::SlowConsumer, "too slow reading events");
            }
            outbox.drain_within_limit(conn);
            slots.register(cx.waker());
            slots.poll_ready(|id, out| finish(conn, outbox, id, out));

            // Shutdown: stop starting calls, let running ones finish within the grace period.
            if shard.shutdown.is_fired() && !draining {
                draining = true;
                conn.drain();
                grace = Some(Timer::after(shard.config.shutdown_grace));
            }
            if draining && conn.is_open() {
                let expired = grace.as_mut().is_some_and(|t| t.poll_at(timers::now(), cx).is_ready());
                if slots.len() == 0 || expired {
                    if expired {
                        tracing::warn!(calls = slots.len(), "shutdown grace expired; dropping calls in flight");
                        slots.clear();
                    }
                    conn.close(CloseCode::GoingAway, "server shutting down");
                }
            } else {
                shard.shutdown.register(signal_key, cx.waker());
            }

            // Parse what the loop received (never while a receive is in flight).
            if io.readable() {
                closed |= process_events(&mut io.core, outbox, names, &mut slots, &mut start);
            }
            let conn = &mut io.core;

            // A close we started must be answered in bounded time.
            if !conn.is_open() && !closed && !conn.is_closed() {
                let t = close_timer.get_or_insert_with(|| Timer::after(CLOSE_TIMEOUT));
                if t.poll_at(timers::now(), cx).is_ready() {
                    closed = true;
                }
            }
            if (closed || conn.is_closed() || io.eof) && io.flushed() {
                return Poll::Ready(());
            }
            let conn = &mut io.core;
            if conn.is_open() {
                let now = timers::now();
                if keepalive.check(conn, now, &shard.stats) {
                    idle_timer.reset_at(keepalive.due());
                    timer_armed = false;
                    continue;
                }
                if !timer_armed {
                    let _ = idle_timer.poll_at(now, cx);
                    timer_armed = true;
                }
            }
            return Poll::Pending;
        }
    })
    .await;
    slots.clear();
}
