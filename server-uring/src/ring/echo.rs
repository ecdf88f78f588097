//! The plain WebSocket echo driver on the ring (see `crate::echo`): the
//! same core in `Mode::Echo`, the same message handling
//! (`crate::echo::answer`), on the ring's loop.

use std::cell::RefCell;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;

use hardlight_core::connection::Event;
use hardlight_core::error::CloseCode;

use super::io::Io;
use super::rpc::flushed;
use super::timers::{self, Timer};
use crate::conn::{Defer, CLOSE_TIMEOUT};
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
                    Event::Closed(_) | Event::Call { .. } | Event::Message { .. } => false,
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
    let mut close_timer: Option<Timer> = None;
    let mut closed = false;
    let mut echo = Vec::new();
    poll_fn(|cx| {
        let mut io = io.borrow_mut();
        let io = &mut *io;
        if io.failed {
            return Poll::Ready(());
        }
        if shard.shutdown.is_fired() {
            if io.core.is_open() {
                io.core.close(CloseCode::GoingAway, "server shutting down");
            }
        } else {
            shard.shutdown.register(signal_key, cx.waker());
        }
        if io.readable() {
            closed |= answer(&mut io.core, &mut echo);
        }
        let conn = &io.core;
        if !conn.is_open() && !closed && !conn.is_closed() {
            let t = close_timer.get_or_insert_with(|| Timer::after(CLOSE_TIMEOUT));
            if t.poll_at(timers::now(), cx).is_ready() {
                closed = true;
            }
        }
        if (closed || conn.is_closed() || io.eof) && io.flushed() {
            return Poll::Ready(());
        }
        Poll::Pending
    })
    .await
}
