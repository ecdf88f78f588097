//! The ring shard's loop: one thread, one ring, one `io_uring_enter` per
//! pass, and a tiny executor for its tasks (connections and the event
//! router).
//!
//! A pass: reap every completion (accepts, receives, sends, the eventfd),
//! take the tasks woken from other threads, fire due timers, run every task
//! woken so far (each one submits the receive and send it then wants),
//! then make the one enter: submit only if tasks are still ready, else
//! submit and wait for a completion, with a timeout only when a timer is
//! pending.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use hardlight_core::connection::{Mode, ServerConnection};

use super::io::Io;
use super::reactor::{Completion, Op, Reactor};
use super::timers;
use super::tls::{TlsFailure, TlsLayer};
use super::wake::{self, Remote, TaskWaker, Token};
use crate::shard::{LogLimiter, Shard, ShardParts, ACCEPT_ERROR_LOG_INTERVAL};

/// Back-off before re-arming accept after it failed (EMFILE and friends).
const ACCEPT_RETRY: Duration = Duration::from_millis(10);
/// How long a stopping shard waits for cancelled operations to complete
/// before it leaks their buffers instead of freeing them.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);

struct Task {
    fut: Option<Pin<Box<dyn Future<Output = ()>>>>,
    /// The connection's socket; `None` for tasks without one (the router).
    io: Option<Rc<RefCell<Io>>>,
    waker: Arc<TaskWaker>,
    std_waker: Waker,
}

/// The per-connection driver a ring shard runs: the RPC or the echo one.
pub(crate) type ServeConn<F, Fut> = fn(Rc<RefCell<Io>>, Rc<Shard<F>>) -> Fut;

/// A shard's loop state.
struct Loop<F: 'static, Fut> {
    shard: Rc<Shard<F>>,
    reactor: Reactor,
    remote: Arc<Remote>,
    tasks: Vec<Option<Task>>,
    free: Vec<Token>,
    batch: Vec<Token>,
    listener: Option<TcpListener>,
    accept_retry: Option<Instant>,
    /// Failed accepts are logged at most once per interval (at the fd
    /// limit every retry fails, ~100 times a second), as on glommio.
    accept_log: LogLimiter,
    /// Connections refused over `max_connections_per_shard`, likewise.
    capacity_log: LogLimiter,
    open: usize,
    stop_limit: Option<Instant>,
    mode: Mode,
    serve: ServeConn<F, Fut>,
}

/// Counts a TLS failure the connection's `Io` recorded (once).
fn count_tls_failure(stats: &crate::stats::ServerStats, io: &RefCell<Io>) {
    let Some(f) = io.borrow_mut().tls_failure.take() else { return };
    stats.tls_failures.inc();
    if f == TlsFailure::Handshake {
        stats.refused.record(crate::stats::RefusalReason::Tls);
    }
    tracing::debug!(failure = ?f, "TLS failed; closing the connection");
}

/// Binds this shard's SO_REUSEPORT listener on `addr`.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::STREAM.cloexec(), Some(socket2::Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// Runs one ring shard on the current thread until it is stopped through
/// `remote` and its connections have closed (or the shutdown limit).
pub(crate) fn run<F, Fut>(
    parts: ShardParts<F>,
    listener: TcpListener,
    remote: Arc<Remote>,
    reactor: Reactor,
    mode: Mode,
    serve: ServeConn<F, Fut>,
) where
    F: 'static,
    Fut: Future<Output = ()> + 'static,
{
    let ShardParts { index, addr, config, factory, stats, emitter, inbox, metrics } = parts;
    let shard = Shard::new(index, config, factory, stats, emitter, metrics);
    wake::enter(&remote);
    let mut lp = Loop {
        shard: shard.clone(),
        reactor,
        remote,
        tasks: Vec::new(),
        free: Vec::new(),
        batch: Vec::new(),
        listener: Some(listener),
        accept_retry: None,
        accept_log: LogLimiter::new(ACCEPT_ERROR_LOG_INTERVAL),
        capacity_log: LogLimiter::new(ACCEPT_ERROR_LOG_INTERVAL),
        open: 0,
        stop_limit: None,
        mode,
        serve,
    };
    let router_stopped = Rc::new(Cell::new(false));
    let wake_router = inbox.waker();
    let router = lp.spawn(Box::pin(crate::events::route(inbox, shard.registry.clone(), router_stopped.clone())), None);
    lp.reactor.arm_wake(lp.remote.eventfd());
    if let Some(l) = &lp.listener {
        lp.reactor.accept(l.as_raw_fd());
    }
    tracing::info!(shard = index, %addr, "ring shard listening");
    lp.serve_until_stopped();
    if lp.open > 0 {
        tracing::warn!(shard = index, open = lp.open, "connections still open after shutdown limit");
    }
    router_stopped.set(true);
    wake_router.wake();
    for _ in 0..8 {
        if !lp.is_live(router) {
            break;
        }
        lp.run_ready();
    }
    lp.teardown();
    tracing::info!(shard = index, enters = lp.reactor.enters, "ring shard stopped");
}

impl<F: 'static, Fut: Future<Output = ()> + 'static> Loop<F, Fut> {
    fn spawn(&mut self, fut: Pin<Box<dyn Future<Output = ()>>>, io: Option<Rc<RefCell<Io>>>) -> Token {
        let token = self.free.pop().unwrap_or_else(|| {
            self.tasks.push(None);
            (self.tasks.len() - 1) as Token
        });
        let waker = TaskWaker::new(token, self.remote.clone());
        let std_waker = Waker::from(waker.clone());
        std_waker.wake_by_ref();
        self.tasks[token as usize] = Some(Task { fut: Some(fut), io, waker, std_waker });
        token
    }

    fn is_live(&self, token: Token) -> bool {
        matches!(self.tasks.get(token as usize), Some(Some(t)) if t.fut.is_some())
    }

    fn serve_until_stopped(&mut self) {
        loop {
            self.reactor.reap();
            let completions = std::mem::take(&mut self.reactor.completions);
            for c in &completions {
                self.complete(c);
            }
            self.reactor.completions = completions;
            if self.remote.take(&mut self.batch) && self.stop_limit.is_none() {
                self.begin_stop();
            }
            let now = Instant::now();
            timers::set_now(now);
            timers::fire(now);
            if self.accept_retry.is_some_and(|t| now >= t) {
                self.accept_retry = None;
                if let Some(l) = &self.listener {
                    self.reactor.accept(l.as_raw_fd());
                }
            }
            self.run_ready();
            if let Some(limit) = self.stop_limit {
                if self.open == 0 || now >= limit {
                    return;
                }
            }
            self.wait();
        }
    }

    /// The pass's one enter.
    fn wait(&mut self) {
        if wake::has_local() || !self.remote.prepare_sleep() {
            self.reactor.enter(false, None);
            return;
        }
        let now = Instant::now();
        let until = [timers::next_deadline(), self.stop_limit, self.accept_retry].into_iter().flatten().min();
        self.reactor.enter(true, until.map(|t| t.saturating_duration_since(now)));
        self.remote.woke();
    }

    /// Runs every task woken so far (those woken while running wait for
    /// the next pass, so a task that keeps waking itself cannot starve I/O).
    fn run_ready(&mut self) {
        let mut batch = std::mem::take(&mut self.batch);
        wake::take_local(&mut batch);
        for &token in &batch {
            self.poll(token);
        }
        batch.clear();
        self.batch = batch;
    }

    fn poll(&mut self, token: Token) {
        let Some(Some(task)) = self.tasks.get_mut(token as usize) else { return };
        let Some(fut) = task.fut.as_mut() else { return };
        task.waker.clear();
        let mut cx = Context::from_waker(&task.std_waker);
        let done = match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx))) {
            Ok(Poll::Ready(())) => true,
            Ok(Poll::Pending) => false,
            Err(_) => {
                tracing::error!(task = token, "a connection task panicked; closing it");
                true
            }
        };
        if done {
            // Dropped here, on the shard, with its handlers' futures.
            task.fut = None;
            if let Some(io) = &task.io {
                io.borrow_mut().finish(&mut self.reactor, token);
            }
            self.try_free(token);
        } else if let Some(io) = &task.io {
            if io.borrow_mut().submit(&mut self.reactor, token) {
                task.std_waker.wake_by_ref();
            }
            count_tls_failure(&self.shard.stats, io);
        }
    }

    /// Frees a finished task's slot once the kernel holds none of its buffers.
    fn try_free(&mut self, token: Token) {
        let Some(Some(task)) = self.tasks.get(token as usize) else { return };
        if task.fut.is_some() || task.io.as_ref().is_some_and(|io| !io.borrow().idle()) {
            return;
        }
        if task.io.is_some() {
            self.open -= 1;
            // The shard's own count too: it trims the heap after a spike.
            self.shard.closed_one();
            self.shard.stats.open.dec();
        }
        self.tasks[token as usize] = None;
        self.free.push(token);
    }

    fn complete(&mut self, c: &Completion) {
        self.dispatch(c);
        // After the bytes were copied out, whoever the completion was for.
        self.reactor.give_back(c);
    }

    fn dispatch(&mut self, c: &Completion) {
        match c.op {
            Op::Accept => self.on_accept(c),
            Op::Wake => self.reactor.arm_wake(self.remote.eventfd()),
            Op::Cancel => {}
            Op::Recv | Op::RecvMulti | Op::Send => {
                let Some(Some(task)) = self.tasks.get(c.token as usize) else { return };
                let Some(io) = &task.io else { return };
                let (failed, wake) = {
                    let mut io = io.borrow_mut();
                    if c.op == Op::Recv {
                        (io.on_recv(c.result), true)
                    } else if c.op == Op::RecvMulti {
                        (io.on_recv_multi(c.result, c.more, self.reactor.received(c)), true)
                    } else {
                        let failed = io.on_send(c.result);
                        // The next send starts here, without the task. A
                        // receive is armed only after the task ran (it may
                        // not have parsed what the last one brought).
                        io.submit_send(&mut self.reactor, c.token);
                        (failed, io.after_send())
                    }
                };
                if let Some(errno) = failed {
                    self.shard.stats.io_errors.inc();
                    tracing::debug!(errno, op = ?c.op, "socket operation failed; closing the connection");
                }
                count_tls_failure(&self.shard.stats, io);
                if task.fut.is_none() {
                    self.try_free(c.token);
                } else if wake {
                    task.std_waker.wake_by_ref();
                }
            }
        }
    }

    fn on_accept(&mut self, c: &Completion) {
        if c.result < 0 {
            if c.result != -libc::ECANCELED {
                self.shard.stats.accept_errors.inc();
                if let Some(failed) = self.accept_log.record(Instant::now()) {
                    let error = std::io::Error::from_raw_os_error(-c.result);
                    tracing::warn!(shard = self.shard.index, %error, failed, "accept failed ({failed} times since the last report)");
                }
            }
        } else {
            // SAFETY: a successful accept returns a new descriptor owned by nobody else.
            let fd = unsafe { OwnedFd::from_raw_fd(c.result) };
            self.accepted(fd);
        }
        if !c.more && self.stop_limit.is_none() {
            if c.result < 0 {
                self.accept_retry = Some(Instant::now() + ACCEPT_RETRY);
            } else if let Some(l) = &self.listener {
                self.reactor.accept(l.as_raw_fd());
            }
        }
    }

    fn accepted(&mut self, fd: OwnedFd) {
        let shard = self.shard.clone();
        shard.stats.accepted.inc();
        if self.stop_limit.is_some() {
            return;
        }
        if self.open >= shard.config.max_connections_per_shard {
            shard.stats.over_capacity.inc();
            shard.stats.refused.record(crate::stats::RefusalReason::OverCapacity);
            if let Some(refused) = self.capacity_log.record(Instant::now()) {
                tracing::warn!(shard = shard.index, refused, "connection limit reached; closing new connections");
            }
            return;
        }
        let sock = socket2::SockRef::from(&fd);
        if let Err(e) = sock.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let peer =
            sock.peer_addr().ok().and_then(|a| a.as_socket()).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let tls = match &shard.config.tls {
            None => None,
            Some(t) => match TlsLayer::new(t.server_config.clone()) {
                Ok(layer) => Some(Box::new(layer)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start a TLS session; closing the connection");
                    shard.stats.tls_failures.inc();
                    return;
                }
            },
        };
        let core = ServerConnection::with_mode(shard.config.limits.clone(), self.mode);
        let io = Rc::new(RefCell::new(Io::new(fd, peer, core, tls, self.reactor.has_buffers())));
        self.open += 1;
        shard.opened_one();
        shard.stats.open.inc();
        let fut = (self.serve)(io.clone(), shard);
        // Unit tests count the connection task's live waker clones.
        #[cfg(test)]
        let fut = crate::census::Census::new(fut);
        self.spawn(Box::pin(fut), Some(io));
    }

    fn begin_stop(&mut self) {
        let grace = self.shard.config.shutdown_grace;
        self.stop_limit = Some(Instant::now() + grace + Duration::from_secs(3));
        self.accept_retry = None;
        self.reactor.cancel(Op::Accept, 0);
        // The cancelled accept holds its own reference to the socket.
        self.listener = None;
        tracing::info!(shard = self.shard.index, open = self.open, "ring shard draining");
        self.shard.shutdown.fire();
    }

    /// Drops every task still running, cancels their operations, waits
    /// (bounded) for the completions, and leaks what the kernel may still
    /// touch.
    fn teardown(&mut self) {
        for token in 0..self.tasks.len() as Token {
            if let Some(Some(task)) = self.tasks.get_mut(token as usize) {
                task.fut = None;
                if let Some(io) = &task.io {
                    io.borrow_mut().finish(&mut self.reactor, token);
                }
                self.try_free(token);
            }
        }
        let limit = Instant::now() + DRAIN_LIMIT;
        while self.tasks.iter().any(Option::is_some) && Instant::now() < limit {
            self.reactor.enter(true, Some(Duration::from_millis(10)));
            self.reactor.reap();
            let completions = std::mem::take(&mut self.reactor.completions);
            for c in &completions {
                // Late accepts are closed (`accepted` refuses while stopping).
                if c.op != Op::Wake {
                    self.complete(c);
                }
            }
            self.reactor.completions = completions;
        }
        for task in self.tasks.drain(..).flatten() {
            tracing::warn!("a socket operation outlived shutdown; leaking its buffers");
            std::mem::forget(task.io);
        }
    }
}
