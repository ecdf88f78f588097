//! The driver of one connection: moves bytes between a glommio socket and
//! [`hardlight_core::connection::ServerConnection`], and runs calls.
//!
//! One task per connection does everything in a single `poll_fn`: finish
//! ready calls, read and parse, start new calls (polled once in place),
//! and write everything produced in that round with one send. Batching the
//! writes this way is what lets a busy connection answer many calls per
//! syscall.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures::future::{select, Either, FutureExt};
use futures::io::{AsyncRead, AsyncWrite};
use glommio::timer::Timer;
use hardlight_core::connection::{Event, ServerConnection, TimerAction};
use hardlight_core::error::{CallErrorCode, CloseCode};
use hardlight_core::handshake::UpgradeRequest;
use hardlight_core::schema::SchemaMismatch;
use hardlight_core::{Features, Outbox, Rejection, Reply, Service};

use crate::call::{next_connection_id, ConnInfo, InCall};
use crate::clock::{before_park, ConnTimer, HeldBytes, Parking};
use crate::events::ConnectionEvents;
use crate::factory::{ConnectContext, ConnectionFactory};
use crate::metrics::{CallWrap, ConnMetrics, Plain, Spanned};
use crate::shard::Shard;
use crate::slots::CallSlots;
use crate::stats::RefusalReason;

/// Serves one accepted TCP connection: TLS first when configured, then
/// [`serve`]. The TLS handshake counts against the handshake timeout too.
pub(crate) async fn serve_tcp<F: ConnectionFactory>(
    stream: glommio::net::TcpStream,
    peer: SocketAddr,
    shard: Rc<Shard<F>>,
) {
    match shard.config.tls.clone() {
        None => serve(stream, peer, shard).await,
        // Boxed: a TLS stream's state (rustls' buffers) is kilobytes, and an
        // async fn's future is as large as its largest branch, so inline it
        // would make every plain connection's task that large too (6.7 KB
        // per connection before, measured).
        Some(tls) => Box::pin(serve_tls(stream, peer, shard, tls)).await,
    }
}

/// [`serve_tcp`] with TLS: the TLS handshake, then [`serve`].
async fn serve_tls<F: ConnectionFactory>(
    stream: glommio::net::TcpStream,
    peer: SocketAddr,
    shard: Rc<Shard<F>>,
    tls: crate::tls::TlsConfig,
) {
    let accept = std::pin::pin!(tls.acceptor.accept(stream));
    match select(accept, Timer::new(shard.config.limits.handshake_timeout)).await {
        Either::Left((Ok(tls_stream), _)) => serve(tls_stream, peer, shard).await,
        Either::Left((Err(e), _)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            shard.stats.tls_failures.inc();
            shard.stats.refused.record(RefusalReason::Tls);
        }
        Either::Right(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            shard.stats.handshake_timeouts.inc();
            shard.stats.refused.record(RefusalReason::HandshakeTimeout);
        }
    }
}

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
    let made = match outcome {
        Some(Ok(Some(made))) => made,
        Some(Ok(None)) => return,
        Some(Err(e)) => {
            tracing::debug!(%peer, error = %e, "connection failed during handshake");
            return;
        }
        None => {
            tracing::debug!(%peer, "handshake timed out");
            shard.stats.handshake_timeouts.inc();
            shard.stats.refused.record(RefusalReason::HandshakeTimeout);
            return;
        }
    };
    shard.stats.upgrades.inc();
    let ran = if crate::metrics::calls_traced() {
        run::<F, S, Spanned>(&mut stream, &mut conn, &made, &shard).await
    } else {
        run::<F, S, Plain>(&mut stream, &mut conn, &made, &shard).await
    };
    if let Err(e) = ran {
        tracing::debug!(%peer, error = %e, "connection ended with an I/O error");
        shard.stats.io_errors.inc();
    }
    let _ = futures::AsyncWriteExt::close(&mut stream).await;
}

/// What a connection's factory made of its upgrade: the service, the
/// connection's outbox, its entry in the shard's event registry (removed on
/// drop) and what its calls' contexts share.
pub(crate) struct Upgraded<F: ConnectionFactory> {
    pub(crate) service: F::Service,
    pub(crate) outbox: Rc<Outbox>,
    pub(crate) _registration: Registration,
    pub(crate) info: Rc<ConnInfo>,
}

/// Decides an upgrade request: the origin rule, then the application's
/// factory (a panic there refuses with 500). Queues the 101 (followed by
/// the initial state and feature set) or the refusal on `conn`; returns the
/// service if accepted. No I/O: shared by both backends.
pub(crate) fn upgrade<F: ConnectionFactory>(
    conn: &mut ServerConnection,
    req: &UpgradeRequest,
    peer: SocketAddr,
    shard: &Shard<F>,
) -> Option<Upgraded<F>> {
    if let Some(mismatch) = schema_mismatch::<F::Service>(req) {
        tracing::debug!(%peer, error = %mismatch, "client built from another service schema");
        shard.stats.handshake_failures.inc();
        shard.stats.refused.record(RefusalReason::SchemaMismatch);
        conn.refuse(400, &mismatch.to_string());
        return None;
    }
    if !hardlight_core::handshake::origin_allowed(req, &shard.config.allowed_origins) {
        tracing::debug!(%peer, origin = ?req.header("origin"), "origin not allowed");
        shard.stats.handshake_failures.inc();
        shard.stats.refused.record(RefusalReason::Origin);
        conn.refuse(403, "origin not allowed");
        return None;
    }
    let outbox = Rc::new(Outbox::new(<F::Service as Service>::METHOD_NAMES.len()));
    outbox.set_event_limits(shard.config.event_limits);
    let key = shard.registry.borrow_mut().register(outbox.clone());
    if req.wants_resume() {
        // Before the factory: its subscriptions are held for the replay.
        shard.registry.borrow_mut().enable_resume(key);
    }
    // Unregisters when the connection ends, or at once if refused.
    let registration = Registration { registry: shard.registry.clone(), key };
    let events = ConnectionEvents {
        registry: shard.registry.clone(),
        key,
        outbox: outbox.clone(),
        emitter: shard.emitter.clone(),
    };
    let ctx = ConnectContext {
        peer,
        request: req,
        shard: shard.index,
        outbox: &outbox,
        events: &events,
        state: RefCell::new(None),
    };
    let made = std::panic::catch_unwind(AssertUnwindSafe(|| shard.factory.connect(&ctx)));
    match made {
        Ok(Ok(service)) => {
            conn.accept(req);
            // Initial state (queued by the factory) and feature set go
            // out right behind the 101, before any response; from here on
            // the core orders the outbox against responses.
            outbox.open();
            conn.attach_outbox(outbox.clone(), <F::Service as Service>::METHOD_NAMES);
            conn.flush_outbox();
            let info = Rc::new(ConnInfo {
                id: next_connection_id(shard.index),
                peer,
                shard: shard.index,
                method_names: <F::Service as Service>::METHOD_NAMES,
                features: Features::new(outbox.clone()),
                events: events.clone(),
                state: ctx.state.into_inner(),
            });
            Some(Upgraded { service, outbox, _registration: registration, info })
        }
        Ok(Err(refusal)) => {
            tracing::debug!(%peer, status = refusal.status, reason = %refusal.reason, "connection refused by factory");
            shard.stats.refused.record_factory(refusal.status);
            conn.refuse(refusal.status, &refusal.reason);
            None
        }
        Err(_) => {
            tracing::error!(%peer, "connection factory panicked");
            shard.stats.refused.record(RefusalReason::FactoryPanic);
            conn.refuse(500, "internal error");
            None
        }
    }
}

/// The schema rule (`hardlight_core::schema::check_request`): a client that
/// names a fingerprint must name the service's. Refused with HTTP 400 before
/// the factory runs, like a wrong `hl/` version.
fn schema_mismatch<S: Service>(req: &hardlight_core::handshake::UpgradeRequest) -> Option<SchemaMismatch> {
    S::SCHEMA.and_then(|schema| hardlight_core::schema::check_request(req, schema).err())
}

/// Reads the upgrade request and asks the factory for a service.
async fn handshake<F, S>(
    stream: &mut S,
    conn: &mut ServerConnection,
    peer: SocketAddr,
    shard: &Shard<F>,
) -> io::Result<Option<Upgraded<F>>>
where
    F: ConnectionFactory,
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        if let Some(ev) = conn.poll_event() {
            match ev {
                Event::Upgrade(req) => {
                    let result = upgrade(conn, &req, peer, shard);
                    flush(stream, conn).await?;
                    return Ok(result);
                }
                Event::HandshakeFailed(e) => {
                    tracing::debug!(%peer, error = %e, "upgrade refused");
                    shard.stats.handshake_failures.inc();
                    shard.stats.refused.record(RefusalReason::of(&e));
                    flush(stream, conn).await?;
                    return Ok(None);
                }
                Event::Closed(_) => {
                    flush(stream, conn).await?;
                    return Ok(None);
                }
                Event::Call { .. } | Event::Cancel { .. } | Event::Message { .. } => {
                    unreachable!("no messages before the upgrade")
                }
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

pub(crate) async fn flush<S: AsyncWrite + Unpin>(stream: &mut S, conn: &mut ServerConnection) -> io::Result<()> {
    while !conn.outbound().is_empty() {
        let n = futures::AsyncWriteExt::write(stream, conn.outbound()).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        conn.advance_outbound(n);
    }
    // A no-op on plain TCP; pushes buffered records out under TLS.
    futures::AsyncWriteExt::flush(stream).await
}

/// The message loop of an upgraded connection.
async fn run<F, S, W>(
    stream: &mut S,
    conn: &mut ServerConnection,
    made: &Upgraded<F>,
    shard: &Shard<F>,
) -> io::Result<()>
where
    F: ConnectionFactory,
    S: AsyncRead + AsyncWrite + Unpin,
    W: CallWrap,
{
    let (service, outbox, info) = (&made.service, &*made.outbox, &made.info);
    let depth = conn.limits().max_validation_depth;
    let mut slots = CallSlots::new();
    let mut start = |call: CallStart<'_>| {
        service.call(call.method, call.input, depth).map(|f| {
            let traced = W::wrap(f, info.method_names, call.method, call.id, info.id);
            let fut = AssertUnwindSafe(traced).catch_unwind();
            InCall::new(info, call.id, call.method, call.timeout, fut)
        })
    };
    let metrics = ConnMetrics::attach(shard.metrics.as_ref(), conn);
    let signal_key = shard.shutdown.subscribe();
    let _unsubscribe = Defer(|| shard.shutdown.unsubscribe(signal_key));
    let mut shutting_down = false;
    let mut eof = false;
    // Every time rule (keepalive, idle, message deadline, close handshake,
    // shutdown grace) is the core's; this task only feeds it the clock
    // before parking and arms the one timer it asks for.
    let mut timer = ConnTimer::new();
    let mut held = HeldBytes::new(&shard.held_bytes);
    let budget = shard.config.shard_held_bytes_budget;

    let result = poll_fn(|cx: &mut Context<'_>| -> Poll<io::Result<()>> {
        loop {
            let mut progress = false;

            start_round(conn, outbox, &mut slots, shard, (signal_key, made._registration.key), &mut shutting_down, cx);

            // Read and parse.
            if !eof {
                match poll_read_in(&mut *stream, conn, cx) {
                    Ok(Some(n)) => {
                        eof = n == 0;
                        progress = true;
                    }
                    Ok(None) => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            let closed = process_events(conn, &mut slots, &mut start);
            if let Some(m) = &metrics {
                m.end_round(conn);
            }

            // Write everything this round produced in one go.
            match poll_write_out(&mut *stream, conn, cx) {
                Ok(wrote) => progress |= wrote,
                Err(e) => return Poll::Ready(Err(e)),
            }

            if (closed || conn.is_closed() || eof) && conn.outbound().is_empty() {
                return Poll::Ready(Ok(()));
            }
            if !progress {
                // About to park: the clock, the timer and the budget are
                // looked at here only, never per call.
                let now = std::time::Instant::now();
                match before_park(conn, 0, now, &mut held, budget, &shard.stats) {
                    Parking::Again(action) => {
                        drop_calls_after_grace(action, &mut slots);
                        continue;
                    }
                    Parking::Sleep(due) => timer.arm(due, now, cx),
                }
                return Poll::Pending;
            }
        }
    })
    .await;
    slots.clear();
    if let Some(m) = &metrics {
        m.end_round(conn);
    }
    result
}

/// The start of every round of an RPC connection, on both backends: the
/// messages queued from outside a call (other tasks, the event router),
/// then the calls woken since the last round (each call slot has a waker of
/// its own; see slots.rs for why the task's waker is never handed to a
/// call), each behind the state changes it made; then shutdown, where the
/// core stops starting calls and closes 1001 when the running ones are done
/// or its grace period ends.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start_round<A, F, R>(
    conn: &mut ServerConnection,
    outbox: &Outbox,
    slots: &mut CallSlots<F>,
    shard: &Shard<A>,
    (signal_key, key): (usize, usize),
    shutting_down: &mut bool,
    cx: &mut Context<'_>,
) where
    F: Future<Output = std::thread::Result<R>>,
    R: Reply,
{
    outbox.register(cx.waker());
    replay_if_resumed(conn, shard, key);
    conn.flush_outbox();
    slots.register(cx.waker());
    slots.poll_ready(|id, out| finish(conn, id, out));
    if shard.shutdown.is_fired() {
        if !*shutting_down {
            *shutting_down = true;
            conn.shutdown(shard.config.shutdown_grace);
        }
    } else {
        shard.shutdown.register(signal_key, cx.waker());
    }
}

/// If the connection's first message (RESUME) has arrived: replay what the
/// client missed into its outbox, before anything else is flushed. Run at
/// the start of every round, and by a driver right after it parsed input
/// when it would otherwise park before the next round (the ring), so that
/// the replay does not wait for an unrelated wake-up.
/// Returns whether it replayed (once per connection at most).
pub(crate) fn replay_if_resumed<A>(conn: &mut ServerConnection, shard: &Shard<A>, key: usize) -> bool {
    let Some(positions) = conn.take_resume() else { return false };
    shard.registry.borrow_mut().resume(key, positions);
    true
}

/// After a time rule acted: if the shutdown grace ended with calls still
/// running, their futures are dropped (the core has closed 1001).
pub(crate) fn drop_calls_after_grace<F: Future>(action: Option<TimerAction>, slots: &mut CallSlots<F>) {
    if action == Some(TimerAction::Closing(CloseCode::GoingAway)) && slots.len() > 0 {
        tracing::warn!(calls = slots.len(), "shutdown grace expired; dropping calls in flight");
        slots.clear();
    }
}

/// A call the core delivered, for the driver's start function.
pub(crate) struct CallStart<'a> {
    pub(crate) id: u8,
    pub(crate) method: u16,
    pub(crate) input: &'a [u8],
    pub(crate) timeout: Option<std::time::Duration>,
}

/// Handles every event buffered in `conn`: starts calls (each polled once in
/// place; most finish here and their replies are framed into `outbound` at
/// once) and notes a close. Returns whether the connection closed. No socket
/// I/O happens here, which is what lets the allocation test drive it alone.
pub(crate) fn process_events<F, R>(
    conn: &mut ServerConnection,
    slots: &mut CallSlots<F>,
    start: &mut impl FnMut(CallStart<'_>) -> Result<F, Rejection>,
) -> bool
where
    F: Future<Output = std::thread::Result<R>>,
    R: Reply,
{
    let mut closed = false;
    while let Some(ev) = conn.poll_event() {
        match ev {
            Event::Call { id, method, input, timeout } => {
                // Disabled methods never get here: the core refused them.
                let call = CallStart { id, method, input, timeout };
                let started = std::panic::catch_unwind(AssertUnwindSafe(|| start(call)));
                match started {
                    Ok(Ok(fut)) => {
                        if let Some(out) = slots.start(id, fut) {
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
            Event::Cancel { id } => {
                // The core answered it (Cancelled or DeadlineExceeded):
                // the handler is dropped where it stands.
                slots.cancel(id);
            }
            Event::Closed(reason) => {
                tracing::trace!(?reason, "connection closed");
                closed = true;
            }
            // `Message` comes only from echo-mode connections (`crate::echo`).
            Event::Upgrade(_) | Event::HandshakeFailed(_) | Event::Message { .. } => {}
        }
    }
    closed
}

/// Reads once into the connection's buffer if it wants input (it does not
/// while its outbound bytes are over their bound: back-pressure). Returns
/// the bytes read (0 at end of stream), or `None` if nothing was read now.
/// Shared by the RPC and echo drivers.
pub(crate) fn poll_read_in<S: AsyncRead + Unpin>(
    stream: &mut S,
    conn: &mut ServerConnection,
    cx: &mut Context<'_>,
) -> io::Result<Option<usize>> {
    if !conn.wants_read() {
        return Ok(None);
    }
    let buf = conn.read_buf();
    if buf.is_empty() {
        // Never hand the socket an empty buffer: a 0 would read as EOF.
        return Ok(None);
    }
    match Pin::new(&mut *stream).poll_read(cx, buf) {
        Poll::Ready(Ok(n)) => {
            conn.on_read(n);
            Ok(Some(n))
        }
        Poll::Ready(Err(e)) => Err(e),
        Poll::Pending => Ok(None),
    }
}

/// Writes as much of the connection's outbound bytes as the socket takes
/// now, then flushes (a no-op on plain TCP; under TLS it sends the records
/// rustls buffered, and wakes us when the socket can take more). Returns
/// whether anything was written. Shared by the RPC and echo drivers.
pub(crate) fn poll_write_out<S: AsyncWrite + Unpin>(
    stream: &mut S,
    conn: &mut ServerConnection,
    cx: &mut Context<'_>,
) -> io::Result<bool> {
    let mut wrote = false;
    while !conn.outbound().is_empty() {
        match Pin::new(&mut *stream).poll_write(cx, conn.outbound()) {
            Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => {
                conn.advance_outbound(n);
                wrote = true;
            }
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => break,
        }
    }
    if conn.outbound().is_empty() {
        if let Poll::Ready(Err(e)) = Pin::new(&mut *stream).poll_flush(cx) {
            return Err(e);
        }
    }
    Ok(wrote)
}

/// Sends a finished call's reply, or the panic as a call error.
pub(crate) fn finish<R: Reply>(conn: &mut ServerConnection, id: u8, out: Result<R, Box<dyn std::any::Any + Send>>) {
    // The core puts the state changes the call made before its response.
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

/// A connection's entry in its shard's event registry, removed on drop.
pub(crate) struct Registration {
    registry: Rc<std::cell::RefCell<crate::events::Registry>>,
    pub(crate) key: usize,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.borrow_mut().unregister(self.key);
    }
}

pub(crate) struct Defer<F: FnMut()>(pub(crate) F);
impl<F: FnMut()> Drop for Defer<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

/// A connection upgraded with no I/O (the upgrade fed in, the 101 and its
/// announcements taken out), for tests that drive the per-call path alone.
#[cfg(test)]
pub(crate) fn upgraded_for_tests() -> ServerConnection {
    let mut conn = ServerConnection::new(hardlight_core::limits::Limits::default());
    let up = b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: hl/1\r\n\r\n";
    conn.read_buf()[..up.len()].copy_from_slice(up);
    conn.on_read(up.len());
    let Some(Event::Upgrade(req)) = conn.poll_event() else { panic!("upgrade") };
    conn.accept(&req);
    let n = conn.outbound().len();
    conn.advance_outbound(n);
    conn
}

#[cfg(test)]
mod alloc_tests {
    //! The whole per-call server path without sockets (frame parse, unmask
    //! into the aligned buffer, envelope, call table, validation, decode,
    //! handler, reply encode, framing), under a counting allocator.
    use super::*;
    use hardlight_core::envelope;
    use hardlight_core::frame::{self, Opcode};
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    struct Counting;
    thread_local! {
        static COUNT: Cell<Option<u64>> = const { Cell::new(None) };
    }
    // SAFETY: forwards to the system allocator unchanged; the thread-local is
    // const-initialized, so reading it does not allocate.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            let _ = COUNT.try_with(|c| c.set(c.get().map(|n| n + 1)));
            // SAFETY: caller upholds `alloc`'s contract.
            unsafe { System.alloc(l) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            // SAFETY: caller upholds `dealloc`'s contract.
            unsafe { System.dealloc(p, l) }
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
            let _ = COUNT.try_with(|c| c.set(c.get().map(|n| n + 1)));
            // SAFETY: caller upholds `realloc`'s contract.
            unsafe { System.realloc(p, l, n) }
        }
    }
    #[global_allocator]
    static A: Counting = Counting;

    #[hardlight::rpc]
    trait Fixed {
        async fn echo(&self, payload: [u8; 64]) -> [u8; 64];
        async fn add(&self, a: u64, b: u64) -> u64;
    }
    struct H;
    impl Fixed for H {
        async fn echo(&self, payload: [u8; 64]) -> [u8; 64] {
            payload
        }
        async fn add(&self, a: u64, b: u64) -> u64 {
            a + b
        }
    }

    #[test]
    fn the_per_call_path_allocates_nothing() {
        let service = FixedService::new(H);
        let mut conn = super::upgraded_for_tests();

        // 16 pipelined calls per read, alternating methods, as a busy client sends.
        let echo = hardlight_core::wire::encode(&FixedEchoInput { payload: [7; 64] }).unwrap();
        let add = hardlight_core::wire::encode(&FixedAddInput { a: 2, b: 3 }).unwrap();
        let mut batch = Vec::new();
        for id in 0..16u8 {
            let (m, input) = if id % 2 == 0 { (FixedMethod::Echo, &echo) } else { (FixedMethod::Add, &add) };
            let mut msg = Vec::new();
            envelope::encode_call(&mut msg, id, m.id(), input);
            frame::write_masked_frame(&mut batch, true, Opcode::Binary, &msg, [id, 1, 2, 3]);
        }
        let mut slots = CallSlots::new();
        let mut start =
            |call: CallStart<'_>| service.call(call.method, call.input, 64).map(|f| AssertUnwindSafe(f).catch_unwind());
        let outbox = Outbox::new(2);
        outbox.open();
        let mut round = |conn: &mut ServerConnection, slots: &mut _| {
            let buf = conn.read_buf();
            buf[..batch.len()].copy_from_slice(&batch);
            conn.on_read(batch.len());
            assert!(!process_events(conn, slots, &mut start));
            let out = conn.outbound().len();
            assert!(out > 16 * 4, "16 replies framed");
            conn.advance_outbound(out);
        };
        for _ in 0..100 {
            round(&mut conn, &mut slots); // warm-up: buffers and slot pages reach their size
        }
        COUNT.with(|c| c.set(Some(0)));
        for _ in 0..1000 {
            round(&mut conn, &mut slots);
        }
        let allocs = COUNT.with(|c| c.replace(None)).unwrap();
        assert_eq!(allocs, 0, "16,000 calls allocated {allocs} times");
        assert_eq!(conn.stats().calls_completed, 1100 * 16);
    }
}
