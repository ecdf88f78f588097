//! The plain WebSocket echo driver on the ring (see `crate::echo`): the
//! same core in `Mode::Echo`, the same message handling
//! (`crate::echo::answer`), on the ring's loop.

use std::cell::RefCell;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;

use hardlight_core::connection::Event;

use super::io::Io;
use super::rpc::flushed;
use super::rpc::RingConnTimer;
use super::timers::{self, Timer};
use crate::clock::{before_park, HeldBytes, Parking};
use crate::conn::Defer;
use crate::echo::{answer, Echo};
use crate::shard::Shard;

/// Serves one accepted echo connection to the end.
pub(crate) async fn serve(io: Rc<RefCell<Io>>, shard: Rc<Shard<Echo>>) {
    let mut deadline = Timer::after(shard.config.limits.handshake_timeout);
    let upgraded = poll_fn(|cx| {
        let mut io = io.borrow_mut();
        let io = &mut *io;
        if io.failed {
            return Poll::Ready(false);
        }
        if io.readable() {
            if let Some(ev) = io.core.poll_event() {
                return Poll::Ready(match ev {
                    Event::Upgrade(req) => {
                        io.core.accept(&req);
                        true
                    }
                    Event::HandshakeFailed(e) => {
                        tracing::debug!(error = %e, "echo upgrade refused");
                        shard.stats.handshake_failures.inc();
                        false
                    }
                    Event::Closed(_) | Event::Call { .. } | Event::Cancel { .. } | Event::Message { .. } => false,
                });
            }
            if io.eof {
                return Poll::Ready(false);
            }
        }
        if deadline.poll_at(timers::now(), cx).is_ready() {
            shard.stats.handshake_timeouts.inc();
            return Poll::Ready(false);
        }
        Poll::Pending
    })
    .await;
    if !upgraded {
        flushed(&io, &mut deadline).await;
        return;
    }
    shard.stats.upgrades.inc();
    let signal_key = shard.shutdown.subscribe();
    let _unsubscribe = Defer(|| shard.shutdown.unsubscribe(signal_key));
    let mut closed = false;
    let mut echo = Vec::new();
    // The same park rules as every driver (crate::clock::before_park).
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
            if shard.shutdown.is_fired() {
                // No calls to wait for: the core closes 1001 at once.
                io.core.shutdown(shard.config.shutdown_grace);
            } else {
                shard.shutdown.register(signal_key, cx.waker());
            }
            if io.readable() {
                closed |= answer(&mut io.core, &mut echo);
            }
            if (closed || io.core.is_closed() || io.eof) && io.flushed() {
                return Poll::Ready(());
            }
            let now = timers::now();
            let spilled = io.spilled();
            match before_park(&mut io.core, spilled, now, &mut held, budget, &shard.stats) {
                Parking::Again(_) => continue,
                Parking::Sleep(due) => timer.arm(due, now, cx),
            }
            return Poll::Pending;
        }
    })
    .await
}
