//! One shard: a glommio executor pinned to a core, its listener, and the
//! connections it owns.
//!
//! Every shard binds the same address with SO_REUSEPORT (glommio's default),
//! and the kernel spreads incoming connections across them. This avoids a
//! cross-core hand-off per connection; the alternative (one acceptor
//! handing `AcceptedTcpStream`s to other shards) adds a channel hop and
//! concentrates accept work on one core.

use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::{select, Either};
use glommio::net::{TcpListener, TcpStream};
use glommio::timer::Timer;

use crate::config::ServerConfig;
use crate::events::{Emitter, InboxReceiver, Registry};
use crate::signal::LocalSignal;
use crate::stats::ServerStats;

/// State shared by the tasks of one shard.
pub(crate) struct Shard<F> {
    pub(crate) index: usize,
    pub(crate) config: Arc<ServerConfig>,
    /// The application's connection factory (a unit type for the echo server).
    pub(crate) factory: Arc<F>,
    pub(crate) stats: Arc<ServerStats>,
    pub(crate) shutdown: LocalSignal,
    pub(crate) registry: Rc<std::cell::RefCell<Registry>>,
    pub(crate) emitter: Emitter,
    /// Bytes this shard's connections hold in partial messages and unsent
    /// output (`crate::clock::HeldBytes`), against
    /// `ServerConfig::shard_held_bytes_budget`.
    pub(crate) held_bytes: Cell<usize>,
    /// This shard's Prometheus counters, when metrics are on
    /// (`ServerBuilder::metrics_listen`).
    pub(crate) metrics: Option<Arc<crate::metrics::ShardMetrics>>,
    open: Cell<usize>,
    /// Most connections open since the last heap trim (see [`Shard::closed_one`]).
    peak: Cell<usize>,
    all_closed: LocalSignal,
}

impl<F> Shard<F> {
    /// A shard's shared state, with an empty event registry.
    pub(crate) fn new(
        index: usize,
        config: Arc<ServerConfig>,
        factory: Arc<F>,
        stats: Arc<ServerStats>,
        emitter: Emitter,
        metrics: Option<Arc<crate::metrics::ShardMetrics>>,
    ) -> Rc<Self> {
        let registry = Rc::new(std::cell::RefCell::new(
            Registry::new(emitter.bridge(), emitter.history()).counting_in(emitter.stats_arc()),
        ));
        Rc::new(Shard {
            index,
            config,
            factory,
            stats,
            shutdown: LocalSignal::default(),
            registry,
            emitter,
            held_bytes: Cell::new(0),
            metrics,
            open: Cell::new(0),
            peak: Cell::new(0),
            all_closed: LocalSignal::default(),
        })
    }
}

impl<F> Shard<F> {
    /// Counts a connection in: the trim rule below needs the shard's peak.
    /// Both backends call it for every connection they start serving.
    pub(crate) fn opened_one(&self) {
        self.open.set(self.open.get() + 1);
        self.peak.set(self.peak.get().max(self.open.get()));
    }

    /// Counts a connection out, and applies the trim rule: after a spike
    /// of connections has mostly gone (open down to a quarter
    /// of a peak of at least [`TRIM_AFTER_PEAK`]), hands the freed heap back
    /// to the OS. glibc keeps freed memory in its per-thread arenas, so
    /// without this a shard's resident memory stayed at its peak (290-370 MB
    /// after 10,000 connections closed). Rare by construction: a few
    /// milliseconds once per spike.
    pub(crate) fn closed_one(&self) {
        self.open.set(self.open.get().saturating_sub(1));
        let (open, peak) = (self.open.get(), self.peak.get());
        if peak >= TRIM_AFTER_PEAK && open <= peak / 4 {
            self.peak.set(open);
            trim_heap();
        }
    }
}

/// Connections a shard must have held at once before [`Shard::closed_one`]
/// trims the heap when they go.
pub(crate) const TRIM_AFTER_PEAK: usize = 1024;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap() {
    // SAFETY: malloc_trim only releases free memory at the top of glibc's
    // arenas and in whole free pages; it takes the arenas' locks itself and
    // touches no memory the program holds.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() {}

/// What a shard is built from.
pub(crate) struct ShardParts<F> {
    pub(crate) index: usize,
    pub(crate) addr: SocketAddr,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) factory: Arc<F>,
    pub(crate) stats: Arc<ServerStats>,
    pub(crate) emitter: Emitter,
    pub(crate) inbox: InboxReceiver,
    pub(crate) metrics: Option<Arc<crate::metrics::ShardMetrics>>,
}

/// Runs a shard until `stop` fires (or its sender is dropped) and its
/// connections have closed. Each accepted connection runs `serve_conn` in a
/// task of its own.
pub(crate) async fn run<F, C, Fut>(
    parts: ShardParts<F>,
    listener: TcpListener,
    stop: oneshot::Receiver<()>,
    serve_conn: C,
) where
    F: 'static,
    C: Fn(TcpStream, SocketAddr, Rc<Shard<F>>) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let ShardParts { index, addr, config, factory, stats, emitter, inbox, metrics } = parts;
    let shard = Shard::new(index, config, factory, stats, emitter, metrics);
    let registry = shard.registry.clone();
    let router_stopped = Rc::new(Cell::new(false));
    let wake_router = inbox.waker();
    let router = glommio::spawn_local(crate::events::route(inbox, registry, router_stopped.clone()));
    tracing::info!(shard = index, %addr, "shard listening");
    let mut stop = stop;
    let mut accept_log = LogLimiter::new(ACCEPT_ERROR_LOG_INTERVAL);
    let mut capacity_log = LogLimiter::new(ACCEPT_ERROR_LOG_INTERVAL);
    loop {
        let accept = std::pin::pin!(listener.accept());
        match select(accept, &mut stop).await {
            Either::Left((Ok(stream), _)) => {
                shard.stats.accepted.inc();
                if shard.open.get() >= shard.config.max_connections_per_shard {
                    shard.stats.over_capacity.inc();
                    shard.stats.refused.record(crate::stats::RefusalReason::OverCapacity);
                    if let Some(refused) = capacity_log.record(std::time::Instant::now()) {
                        tracing::warn!(shard = index, refused, "connection limit reached; closing new connections");
                    }
                    drop(stream);
                    continue;
                }
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "could not set TCP_NODELAY");
                }
                let peer = stream.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                let shard2 = shard.clone();
                shard.opened_one();
                shard.stats.open.inc();
                let serving = serve_conn(stream, peer, shard2.clone());
                // Unit tests count the connection task's live waker clones.
                #[cfg(test)]
                let serving = crate::census::Census::new(serving);
                glommio::spawn_local(async move {
                    serving.await;
                    shard2.closed_one();
                    shard2.stats.open.dec();
                    if shard2.open.get() == 0 {
                        shard2.all_closed.fire();
                    }
                })
                .detach();
            }
            Either::Left((Err(e), _)) => {
                // EMFILE and friends: back off instead of spinning, and log
                // at most once per interval (at the fd limit this fires on
                // every retry, ~100 times a second).
                shard.stats.accept_errors.inc();
                if let Some(failed) = accept_log.record(std::time::Instant::now()) {
                    tracing::warn!(shard = index, error = %e, failed, "accept failed ({failed} times since the last report)");
                }
                Timer::new(Duration::from_millis(10)).await;
            }
            Either::Right(_) => break,
        }
    }
    drop(listener);
    tracing::info!(shard = index, open = shard.open.get(), "shard draining");
    shard.shutdown.fire();
    // Connections close themselves within the grace period plus the close
    // handshake; wait a little longer than that, then give up on them.
    let limit = shard.config.shutdown_grace + Duration::from_secs(3);
    let key = shard.all_closed.subscribe();
    let wait_closed = std::future::poll_fn(|cx| {
        if shard.open.get() == 0 {
            std::task::Poll::Ready(())
        } else {
            shard.all_closed.register(key, cx.waker());
            std::task::Poll::Pending
        }
    });
    let wait_closed = std::pin::pin!(wait_closed);
    if let Either::Right(_) = select(wait_closed, Timer::new(limit)).await {
        tracing::warn!(shard = index, open = shard.open.get(), "connections still open after shutdown limit");
    }
    router_stopped.set(true);
    wake_router.wake();
    router.await;
    tracing::info!(shard = index, "shard stopped");
}

/// Accept failures are logged at most once per this interval, with the count
/// since the last report: at the fd limit every retry fails, and one
/// warning per retry would flood the log.
pub const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Counts repeated events and says when one should be logged: the first at
/// once, then at most one per interval, carrying how many happened.
pub(crate) struct LogLimiter {
    interval: Duration,
    last: Option<std::time::Instant>,
    count: u64,
}

impl LogLimiter {
    pub(crate) fn new(interval: Duration) -> Self {
        Self { interval, last: None, count: 0 }
    }

    /// Records one event at `now`; returns the number of events to report
    /// (this one included) when it is time to log, `None` otherwise.
    pub(crate) fn record(&mut self, now: std::time::Instant) -> Option<u64> {
        self.count += 1;
        match self.last {
            Some(last) if now.duration_since(last) < self.interval => None,
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.count))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_failures_is_logged_once_per_interval_with_its_count() {
        let mut l = LogLimiter::new(Duration::from_secs(1));
        let t0 = std::time::Instant::now();
        assert_eq!(l.record(t0), Some(1), "the first failure is reported at once");
        let mut reported = Vec::new();
        // 150 failures a second for 3 seconds.
        for i in 1..450u64 {
            if let Some(n) = l.record(t0 + Duration::from_millis(i * 1000 / 150)) {
                reported.push(n);
            }
        }
        assert_eq!(reported, vec![150, 150], "one report per second, each with its count");
    }
}
