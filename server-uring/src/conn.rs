//! The driver of one connection: moves bytes between a glommio socket and
//! [`hardlight_core::connection::ServerConnection`], and runs calls.
//!
//! One task per connection does everything in a single `poll_fn`: finish
//! ready calls, read and parse, start new calls (polled once in place),
//! and write everything produced in that round with one send. Batching the
//! writes this way is what lets a busy connection answer many calls per
//! syscall.

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{select, Either, FutureExt};
use futures::io::{AsyncRead, AsyncWrite};
use glommio::timer::Timer;
use hardlight_core::connection::{Event, ServerConnection};
use hardlight_core::error::{CallErrorCode, CloseCode};
use hardlight_core::{Reply, Service};

use crate::factory::{ConnectContext, ConnectionFactory};
use crate::shard::Shard;
use crate::slots::CallSlots;

/// How long to wait for the peer's Close after sending ours.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves one accepted connection to the end.
pub(crate) async fn serve<F, S>(mut stream: S, peer: SocketAddr, shard: Rc<Shard<F>>)
where
    F: ConnectionFactory,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = ServerConnection::new(shard.config.limits.clone());
    let deadline = shard.config.limits.handshake_timeout;
    let outcome = {
        let handshake = std::pin::pin!(handshake(&mut stream, &mut conn, peer, &shard));
        match select(handshake, Timer::new(deadline)).await {
            Either::Left((r, _)) => Some(r),
            Either::Right(_) => None,
        }
    };
    let service = match outcome {
        Some(Ok(Some(service))) => service,
        Some(Ok(None)) => return,
        Some(Err(e)) => {
            tracing::debug!(%peer, error = %e, "connection failed during handshake");
            return;
        }
        None => {
            tracing::debug!(%peer, "handshake timed out");
            shard.stats.handshake_timeouts.inc();
            return;
        }
    };
    shard.stats.upgrades.inc();
    if let Err(e) = run(&mut stream, &mut conn, &service, &shard).await {
        tracing::debug!(%peer, error = %e, "connection ended with an I/O error");
    }
    let _ = futures::AsyncWriteExt::close(&mut stream).await;
}

/// Reads the upgrade request and asks the factory for a service.
async fn handshake<F, S>(
    stream: &mut S,
    conn: &mut ServerConnection,
    peer: SocketAddr,
    shard: &Shard<F>,
) -> io::Result<Option<F::Service>>
where
    F: ConnectionFactory,
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        while let Some(ev) = conn.poll_event() {
            match ev {
                Event::Upgrade(req) => {
                    let ctx = ConnectContext { peer, request: &req, shard: shard.index };
                    let made = std::panic::catch_unwind(AssertUnwindSafe(|| shard.factory.connect(&ctx)));
                    let result = match made {
                        Ok(Ok(service)) => {
                            conn.accept(&req);
                            Some(service)
                        }
                        Ok(Err(refusal)) => {
                            tracing::debug!(%peer, status = refusal.status, reason = %refusal.reason, "connection refused by factory");
                            conn.refuse(refusal.status, &refusal.reason);
                            None
                        }
                        Err(_) => {
                            tracing::error!(%peer, "connection factory panicked");
                            conn.refuse(500, "internal error");
                            None
                        }
                    };
                    flush(stream, conn).await?;
                    return Ok(result);
                }
                Event::HandshakeFailed(e) => {
                    tracing::debug!(%peer, error = %e, "upgrade refused");
                    shard.stats.handshake_failures.inc();
                    flush(stream, conn).await?;
                    return Ok(None);
                }
                Event::Closed(_) => {
                    flush(stream, conn).await?;
                    return Ok(None);
                }
                Event::Call { .. } => unreachable!("no calls before the upgrade"),
            }
        }
        let buf = conn.read_buf();
        let n = futures::AsyncReadExt::read(stream, buf).await?;
        conn.on_read(n);
        if n == 0 {
            return Ok(None);
        }
    }
}

async fn flush<S: AsyncWrite + Unpin>(stream: &mut S, conn: &mut ServerConnection) -> io::Result<()> {
    while !conn.outbound().is_empty() {
        let n = futures::AsyncWriteExt::write(stream, conn.outbound()).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        conn.advance_outbound(n);
    }
    Ok(())
}

/// The message loop of an upgraded connection.
async fn run<F, S>(stream: &mut S, conn: &mut ServerConnection, service: &F::Service, shard: &Shard<F>) -> io::Result<()>
where
    F: ConnectionFactory,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let depth = conn.limits().max_validation_depth;
    let mut slots = CallSlots::new();
    let signal_key = shard.shutdown.subscribe();
    let _unsubscribe = Defer(|| shard.shutdown.unsubscribe(signal_key));
    let mut draining = false;
    let mut grace: Option<Timer> = None;
    let mut close_timer: Option<Timer> = None;
    let mut eof = false;

    let result = poll_fn(|cx: &mut Context<'_>| -> Poll<io::Result<()>> {
        loop {
            let mut progress = false;

            // Calls that were pending and are now done.
            slots.poll_all(cx, |id, out| finish(conn, id, out));

            // Shutdown: stop starting calls, let running ones finish within the grace period.
            if shard.shutdown.is_fired() && !draining {
                draining = true;
                conn.drain();
                grace = Some(Timer::new(shard.config.shutdown_grace));
            }
            if draining && conn.is_open() {
                let expired = grace.as_mut().is_some_and(|t| Pin::new(t).poll(cx).is_ready());
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

            // Read and parse.
            if !eof && conn.wants_read() {
                let buf = conn.read_buf();
                if !buf.is_empty() {
                    match Pin::new(&mut *stream).poll_read(cx, buf) {
                        Poll::Ready(Ok(n)) => {
                            conn.on_read(n);
                            eof = n == 0;
                            progress = true;
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => {}
                    }
                }
            }
            let mut closed = false;
            while let Some(ev) = conn.poll_event() {
                match ev {
                    Event::Call { id, method, input } => {
                        let started = std::panic::catch_unwind(AssertUnwindSafe(|| service.call(method, input, depth)));
                        match started {
                            Ok(Ok(fut)) => {
                                let fut = AssertUnwindSafe(fut).catch_unwind();
                                if let Some(out) = slots.start(id, fut, cx) {
                                    finish(conn, id, out);
                                }
                            }
                            Ok(Err(rejection)) => conn.fail(id, rejection.code(), &rejection.detail()),
                            Err(_) => {
                                tracing::error!(method, "service panicked while decoding a call");
                                conn.fail(id, CallErrorCode::HandlerPanicked, "handler panicked");
                            }
                        }
                    }
                    Event::Closed(reason) => {
                        tracing::trace!(?reason, "connection closed");
                        closed = true;
                    }
                    Event::Upgrade(_) | Event::HandshakeFailed(_) => {}
                }
            }

            // A close we started must be answered in bounded time.
            if !conn.is_open() && !closed && !conn.is_closed() {
                let t = close_timer.get_or_insert_with(|| Timer::new(CLOSE_TIMEOUT));
                if Pin::new(t).poll(cx).is_ready() {
                    closed = true;
                }
            }

            // Write everything this round produced in one go.
            while !conn.outbound().is_empty() {
                match Pin::new(&mut *stream).poll_write(cx, conn.outbound()) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => {
                        conn.advance_outbound(n);
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => break,
                }
            }

            if (closed || conn.is_closed() || eof) && conn.outbound().is_empty() {
                return Poll::Ready(Ok(()));
            }
            if !progress {
                return Poll::Pending;
            }
        }
    })
    .await;
    slots.clear();
    result
}

/// Sends a finished call's reply, or the panic as a call error.
fn finish<R: Reply>(conn: &mut ServerConnection, id: u8, out: Result<R, Box<dyn std::any::Any + Send>>) {
    match out {
        Ok(reply) => conn.complete(id, &reply),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(call = id, panic = %msg, "handler panicked");
            conn.fail(id, CallErrorCode::HandlerPanicked, "handler panicked");
        }
    }
}

struct Defer<F: FnMut()>(F);
impl<F: FnMut()> Drop for Defer<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}
