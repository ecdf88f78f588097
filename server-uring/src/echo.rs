//! A plain WebSocket echo server on HardLight's own transport.
//!
//! Every complete message (text or binary) a client sends comes straight
//! back. It exists to test the WebSocket layer on its own, with the Autobahn
//! suite (`.ci/autobahn.sh`, `server-uring/examples/autobahn_echo.rs`): the
//! same glommio shards, accept loop and connection state machine as the RPC
//! server, with the core in [`Mode::Echo`], which needs no subprotocol,
//! accepts text (validated as UTF-8) and delivers whole messages instead of
//! call envelopes.
//!
//! ```no_run
//! use hardlight_server::echo::EchoServer;
//! let server = EchoServer::builder("127.0.0.1:9001".parse().unwrap())
//!     .unpinned(1)
//!     .serve_echo()
//!     .expect("server starts");
//! println!("echo on ws://{}", server.local_addr());
//! server.join();
//! ```

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures::future::{select, Either};
use futures::io::{AsyncRead, AsyncWrite};
use glommio::timer::Timer;
use hardlight_core::connection::{Event, Mode, ServerConnection};
use hardlight_core::limits::Limits;

use crate::clock::{before_park, ConnTimer, HeldBytes, Parking};
use crate::conn::{flush, Defer};
use crate::shard::Shard;
use crate::{Server, ServerBuilder, ServerError, ServerHandle};

/// Largest message the echo server accepts by default. The Autobahn suite's
/// section 9 sends messages of up to 16 MiB.
pub const ECHO_MAX_MESSAGE_SIZE: usize = 64 << 20;

/// Entry point: `EchoServer::builder(addr)...serve_echo()`.
pub struct EchoServer;

impl EchoServer {
    /// A server builder whose limits allow messages up to
    /// [`ECHO_MAX_MESSAGE_SIZE`]; finish it with [`ServerBuilder::serve_echo`].
    pub fn builder(listen: SocketAddr) -> ServerBuilder {
        Server::builder(listen).limits(Limits { max_message_size: ECHO_MAX_MESSAGE_SIZE, ..Limits::default() })
    }
}

impl ServerBuilder {
    /// Binds every shard and serves a plain WebSocket echo (see [`crate::echo`])
    /// instead of HardLight RPC. The builder's limits, placement and shutdown
    /// settings apply; the message size limit is `limits.max_message_size`.
    pub fn serve_echo(self) -> Result<ServerHandle, ServerError> {
        self.start(Echo, None, &[], serve::<glommio::net::TcpStream>, (Mode::Echo, crate::ring::echo::serve))
    }
}

/// The echo server's "application": nothing to configure per connection.
pub(crate) struct Echo;

/// Serves one accepted echo connection to the end.
async fn serve<S>(mut stream: S, peer: SocketAddr, shard: Rc<Shard<Echo>>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = ServerConnection::with_mode(shard.config.limits.clone(), Mode::Echo);
    let deadline = shard.config.limits.handshake_timeout;
    let upgraded = {
        let handshake = std::pin::pin!(handshake(&mut stream, &mut conn, &shard));
        match select(handshake, Timer::new(deadline)).await {
            Either::Left((r, _)) => r,
            Either::Right(_) => {
                shard.stats.handshake_timeouts.inc();
                Ok(false)
            }
        }
    };
    match upgraded {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "echo connection failed during handshake");
            return;
        }
    }
    shard.stats.upgrades.inc();
    if let Err(e) = run(&mut stream, &mut conn, &shard).await {
        tracing::debug!(%peer, error = %e, "echo connection ended with an I/O error");
    }
    let _ = futures::AsyncWriteExt::close(&mut stream).await;
}

/// Reads the upgrade request and accepts it (the core has checked it).
async fn handshake<S>(stream: &mut S, conn: &mut ServerConnection, shard: &Shard<Echo>) -> io::Result<bool>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        if let Some(ev) = conn.poll_event() {
            let upgraded = match ev {
                Event::Upgrade(req) => {
                    conn.accept(&req);
                    true
                }
                Event::HandshakeFailed(e) => {
                    tracing::debug!(error = %e, "echo upgrade refused");
                    shard.stats.handshake_failures.inc();
                    false
                }
                Event::Closed(_) | Event::Call { .. } | Event::Cancel { .. } | Event::Message { .. } => false,
            };
            flush(stream, conn).await?;
            return Ok(upgraded);
        }
        let buf = conn.read_buf();
        let n = futures::AsyncReadExt::read(stream, buf).await?;
        conn.on_read(n);
        if n == 0 {
            return Ok(false);
        }
    }
}

/// Echoes every complete message buffered in `conn`; returns whether the
/// connection closed. `echo` is a reused copy buffer: the payload is
/// borrowed from the connection's message buffer while the echo is framed.
/// No I/O: shared by both backends.
pub(crate) fn answer(conn: &mut ServerConnection, echo: &mut Vec<u8>) -> bool {
    let mut closed = false;
    while let Some(ev) = conn.poll_event() {
        match ev {
            Event::Message { text, payload } => {
                echo.clear();
                echo.extend_from_slice(payload);
                conn.send_message(text, echo);
            }
            Event::Closed(reason) => {
                tracing::trace!(?reason, "echo connection closed");
                closed = true;
            }
            Event::Upgrade(_) | Event::HandshakeFailed(_) | Event::Call { .. } | Event::Cancel { .. } => {}
        }
    }
    closed
}

/// The message loop: read, echo every complete message, write, in rounds,
/// like the RPC driver's (`crate::conn`).
async fn run<S>(stream: &mut S, conn: &mut ServerConnection, shard: &Shard<Echo>) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let signal_key = shard.shutdown.subscribe();
    let _unsubscribe = Defer(|| shard.shutdown.unsubscribe(signal_key));
    let mut eof = false;
    // The same time rules and budget as the RPC driver (`crate::clock`).
    let mut timer = ConnTimer::new();
    let mut held = HeldBytes::new(&shard.held_bytes);
    let budget = shard.config.shard_held_bytes_budget;
    // The echoed payload is copied out of the connection's message buffer
    // (borrowed by the event) before it is framed back; reused across messages.
    let mut echo = Vec::new();

    poll_fn(|cx: &mut Context<'_>| -> Poll<io::Result<()>> {
        loop {
            let mut progress = false;

            if shard.shutdown.is_fired() {
                // No calls to wait for: the core closes 1001 at once.
                conn.shutdown(shard.config.shutdown_grace);
            } else {
                shard.shutdown.register(signal_key, cx.waker());
            }

            if !eof {
                match crate::conn::poll_read_in(&mut *stream, conn, cx) {
                    Ok(Some(n)) => {
                        eof = n == 0;
                        progress = true;
                    }
                    Ok(None) => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }

            let closed = answer(conn, &mut echo);

            match crate::conn::poll_write_out(&mut *stream, conn, cx) {
                Ok(wrote) => progress |= wrote,
                Err(e) => return Poll::Ready(Err(e)),
            }

            if (closed || conn.is_closed() || eof) && conn.outbound().is_empty() {
                return Poll::Ready(Ok(()));
            }
            if !progress {
                let now = std::time::Instant::now();
                match before_park(conn, 0, now, &mut held, budget, &shard.stats) {
                    Parking::Again(_) => continue,
                    Parking::Sleep(due) => timer.arm(due, now, cx),
                }
                return Poll::Pending;
            }
        }
    })
    .await
}
