//! HardLight's thread-per-core server.
//!
//! Each shard is one thread pinned to one CPU, with its own SO_REUSEPORT
//! listener on the shared address; the kernel spreads connections across
//! shards, and a connection stays on its shard for life. Socket I/O goes
//! through io_uring: by default HardLight's own loop (one ring and one
//! `io_uring_enter` per pass, [`Backend::Ring`]), or glommio executors
//! ([`Backend::Glommio`]). The protocol itself lives in
//! `hardlight-core`; this crate only moves bytes and runs handlers
//! (see `docs/ARCHITECTURE.md`).
//!
//! ```no_run
//! # use hardlight_server::{Server, Refusal};
//! # fn make_service() -> impl hardlight_core::Service + 'static { unimplemented!() as DummyService }
//! # struct DummyService;
//! # impl hardlight_core::Service for DummyService {
//! #   type Reply = DummyReply;
//! #   const METHOD_NAMES: &'static [&'static str] = &[];
//! #   fn call<'s>(&'s self, m: u16, _: &[u8], _: usize) -> Result<std::future::Ready<DummyReply>, hardlight_core::Rejection> { Err(hardlight_core::Rejection::UnknownMethod(m)) }
//! # }
//! # struct DummyReply;
//! # impl hardlight_core::Reply for DummyReply { fn encode(&self, _: &mut hardlight_core::AlignedBuf) -> Result<bool, hardlight_core::EncodeError> { Ok(true) } }
//! let server = Server::builder("127.0.0.1:9000".parse().unwrap())
//!     .cores(vec![1])
//!     .serve(|_ctx: &hardlight_server::ConnectContext<'_>| Ok::<_, Refusal>(make_service()))
//!     .expect("server starts");
//! println!("listening on {}", server.local_addr());
//! server.shutdown();
//! ```

#![warn(missing_docs)]

#[cfg(feature = "broker")]
mod broker;
mod call;
#[cfg(test)]
mod census;
mod clock;
mod config;
mod conn;
pub mod echo;
mod error;
mod events;
mod factory;
mod metrics;
mod registry;
mod resume;
mod ring;
pub mod rt;
mod shard;
mod shutdown;
mod signal;
mod slots;
mod stats;
mod tls;

use std::future::Future;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::oneshot;
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement as GlommioPlacement};

pub use broker::{BrokerConfig, DEFAULT_BROKER_QUEUE, DEFAULT_CHANNEL_PREFIX, DEFAULT_FETCH_WAIT};
#[cfg(feature = "broker")]
pub use call::CallContext;
pub use config::{
    io_memory_rule, memlock_limit, online_cpus, Backend, Placement, ServerConfig, DEFAULT_MAX_CONNECTIONS_PER_SHARD,
    DEFAULT_SHARD_HELD_BYTES_BUDGET, MAX_IO_MEMORY, MIN_IO_MEMORY,
};
pub use error::ServerError;
pub use events::{ConnectionEvents, EmitError, EmitStats, Emitter, DEFAULT_MESH_CAPACITY};
pub use factory::{ConnectContext, ConnectionFactory, Refusal};
pub use hardlight_core::events::{EventLimits, SlowConsumerPolicy};
pub use hardlight_core::limits::Limits;
pub use hardlight_core::resume::HistoryLimits;
pub use metrics::http::{DEFAULT_METRICS_IO_TIMEOUT, DEFAULT_METRICS_REQUEST_LIMIT};
pub use metrics::LATENCY_BUCKETS_US;
pub use shard::ACCEPT_ERROR_LOG_INTERVAL;
use shutdown::Stopper;
pub use shutdown::{ShutdownTrigger, SHUTDOWN_SIGNALS};
pub use stats::{BrokerStats, Counter, Gauge, RefusalReason, Refusals, ServerStats};
pub use tls::{TlsConfig, TlsError};

/// Entry point: `Server::builder(addr)...serve(factory)`.
pub struct Server;

impl Server {
    /// Starts configuring a server listening on `listen`.
    pub fn builder(listen: SocketAddr) -> ServerBuilder {
        ServerBuilder {
            config: ServerConfig::new(listen),
            on_shard_start: None,
            metrics_listen: None,
            #[cfg(feature = "broker")]
            broker: None,
        }
    }
}

pub(crate) type ShardHook = Arc<dyn Fn(usize) + Send + Sync>;

/// Configures and starts a server.
pub struct ServerBuilder {
    config: ServerConfig,
    on_shard_start: Option<ShardHook>,
    metrics_listen: Option<SocketAddr>,
    #[cfg(feature = "broker")]
    broker: Option<BrokerConfig>,
}

impl ServerBuilder {
    /// Serves Prometheus metrics at `http://addr/metrics` (plain HTTP, from
    /// a thread of its own; bind it to a private interface). Off by
    /// default: without it the per-call path only checks that metrics are
    /// off. See the README's operator section for the metric names.
    pub fn metrics_listen(mut self, addr: SocketAddr) -> Self {
        self.metrics_listen = Some(addr);
        self
    }

    /// One shard per listed CPU, pinned.
    pub fn cores(mut self, cpus: Vec<usize>) -> Self {
        self.config.placement = Placement::Pinned(cpus);
        self
    }

    /// `n` shards pinned to the first `n` CPUs.
    pub fn shards(mut self, n: usize) -> Self {
        self.config.placement = Placement::Pinned((0..n).collect());
        self
    }

    /// `n` shards that the OS schedules freely.
    pub fn unpinned(mut self, n: usize) -> Self {
        self.config.placement = Placement::Unpinned(n);
        self
    }

    /// Protocol limits per connection.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.config.limits = limits;
        self
    }

    /// io_uring registered memory per executor (see [`io_memory_rule`]).
    pub fn io_memory(mut self, bytes: usize) -> Self {
        self.config.io_memory = Some(bytes);
        self
    }

    /// Time in-flight calls get to finish on shutdown.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.config.shutdown_grace = grace;
        self
    }

    /// Bytes one shard's connections may hold in partial messages and
    /// unsent output together; past it, the connection that grew is closed
    /// with 4004 (default [`DEFAULT_SHARD_HELD_BYTES_BUDGET`]).
    pub fn shard_held_bytes_budget(mut self, bytes: usize) -> Self {
        self.config.shard_held_bytes_budget = bytes;
        self
    }

    /// Connections one shard holds at most.
    pub fn max_connections_per_shard(mut self, n: usize) -> Self {
        self.config.max_connections_per_shard = n;
        self
    }

    /// The event loop the shards run on (default: [`Backend::Ring`]).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.config.backend = backend;
        self
    }

    /// Busy-poll before parking an idle executor (glommio only; the ring
    /// backend parks at once).
    pub fn spin_before_park(mut self, spin: Duration) -> Self {
        self.config.spin_before_park = Some(spin);
        self
    }

    /// Capacity of each shard's inbound event channel (the mesh).
    pub fn mesh_capacity(mut self, n: usize) -> Self {
        self.config.mesh_capacity = n.max(1);
        self
    }

    /// Default bounds and slow-consumer policy for each connection's events.
    pub fn event_limits(mut self, limits: EventLimits) -> Self {
        self.config.event_limits = limits;
        self
    }

    /// Bounds on the per-topic history kept so that reconnecting clients
    /// resume topic events without loss (defaults:
    /// `hardlight_core::resume::DEFAULT_HISTORY_*`). A client away longer
    /// than the history reaches gets a gap notice instead.
    pub fn history_limits(mut self, limits: hardlight_core::resume::HistoryLimits) -> Self {
        self.config.history_limits = limits;
        self
    }

    /// Serves wss:// with `tls` (see [`TlsConfig`]).
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.config.tls = Some(tls);
        self
    }

    /// Only browsers from these origins may connect (checked against the
    /// `Origin` header; refused with 403). Requests without `Origin` (not
    /// from a browser) are unaffected.
    pub fn allowed_origins(mut self, origins: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.config.allowed_origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// Runs `hook(shard_index)` on each shard's thread before it serves,
    /// for thread-local setup (metrics, allocator probes).
    pub fn on_shard_start(mut self, hook: impl Fn(usize) + Send + Sync + 'static) -> Self {
        self.on_shard_start = Some(Arc::new(hook));
        self
    }

    /// Bridges topic events with other servers through the Redis at `url`
    /// (`redis://host:port`), with [`BrokerConfig::new`]'s defaults: Redis
    /// numbers and keeps every topic event emitted with `Emitter::to_topic`
    /// on any server, and every server delivers the events of topics its
    /// connections subscribe to in that one order, so a resuming client can
    /// move between servers without loss (within the history limits). Topic
    /// events are then delivered, here too, only after Redis has them.
    /// Without it (the default) the server runs alone. See README, "Several
    /// servers".
    #[cfg(feature = "broker")]
    pub fn broker(self, url: impl Into<String>) -> Self {
        self.broker_config(BrokerConfig::new(url))
    }

    /// [`Self::broker`] with every setting chosen.
    #[cfg(feature = "broker")]
    pub fn broker_config(mut self, config: BrokerConfig) -> Self {
        self.broker = Some(config);
        self
    }

    /// The configuration so far.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Binds every shard and starts serving. Returns once all shards listen.
    pub fn serve<F: ConnectionFactory>(self, factory: F) -> Result<ServerHandle, ServerError> {
        self.start(
            factory,
            <F::Service as hardlight_core::Service>::SCHEMA,
            <F::Service as hardlight_core::Service>::METHOD_NAMES,
            conn::serve_tcp::<F>,
            (hardlight_core::connection::Mode::Rpc, ring::rpc::serve::<F>),
        )
    }

    /// Binds every shard and starts serving each accepted connection with
    /// `serve_conn` (the RPC driver, or the echo driver), on its shard.
    /// `ring_conn` is the same driver for the ring backend, with the mode
    /// of the core it drives. `schema` is the service's, if it has one: only
    /// its declared event types may be emitted. `method_names` label the
    /// per-method metrics.
    pub(crate) fn start<A, C, Fut, RFut>(
        self,
        app: A,
        schema: Option<&'static hardlight_core::Schema>,
        method_names: &'static [&'static str],
        serve_conn: C,
        ring_conn: (hardlight_core::connection::Mode, ring::ServeConn<A, RFut>),
    ) -> Result<ServerHandle, ServerError>
    where
        A: Send + Sync + 'static,
        C: Fn(glommio::net::TcpStream, SocketAddr, Rc<shard::Shard<A>>) -> Fut + Copy + Send + 'static,
        Fut: Future<Output = ()> + 'static,
        RFut: Future<Output = ()> + 'static,
    {
        let factory = app;
        let config = Arc::new(self.config);
        let shards = config.placement.shards();
        if shards == 0 {
            return Err(ServerError::Config("at least one shard is required".into()));
        }
        // glommio binds with SO_REUSEPORT, so a stale server on the same port
        // would silently share it. A plain bind (no SO_REUSEPORT) fails if any
        // socket holds the port, which is exactly the check we need. It also
        // resolves port 0 to a concrete port that every shard then shares.
        let addr = match StdListener::bind(config.listen) {
            Ok(probe) => {
                let a = probe.local_addr().map_err(|e| ServerError::Bind { addr: config.listen, source: e })?;
                drop(probe);
                a
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && !port_has_listener(config.listen) => {
                // Only the previous process's connections linger on the port
                // (TIME_WAIT): a restarted server may take it (glommio binds
                // with SO_REUSEPORT, which those sockets share).
                config.listen
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return Err(ServerError::AddressInUse(config.listen))
            }
            Err(e) => return Err(ServerError::Bind { addr: config.listen, source: e }),
        };
        let io_memory = config.io_memory.unwrap_or_else(|| io_memory_rule(shards));
        let metrics_listener = match self.metrics_listen {
            Some(a) => match StdListener::bind(a) {
                Ok(l) => Some(l),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return Err(ServerError::AddressInUse(a)),
                Err(e) => return Err(ServerError::Bind { addr: a, source: e }),
            },
            None => None,
        };
        let shard_metrics: Vec<_> = (0..shards)
            .map(|_| metrics_listener.as_ref().map(|_| Arc::new(metrics::ShardMetrics::new(method_names.len()))))
            .collect();
        let factory = Arc::new(factory);
        let stats = Arc::new(ServerStats::default());
        let (inboxes, receivers) = events::mesh(shards, config.mesh_capacity);
        #[cfg(feature = "broker")]
        let (bridge_link, pending_bridge) = match self.broker {
            Some(b) => {
                let (link, pending) = broker::prepare(b, config.history_limits)?;
                (Some(link), Some(pending))
            }
            None => (None, None),
        };
        #[cfg(not(feature = "broker"))]
        let bridge_link = None;
        // With a broker, the broker numbers topic events and this server's
        // history is a cache of its logs (`crate::broker`).
        let history = match bridge_link {
            Some(_) => resume::new_cache(config.history_limits),
            None => resume::new_history(config.history_limits),
        };
        let emitter = Emitter::new(inboxes, bridge_link, schema, history);
        let mut receivers = receivers.into_iter();
        let mut controls: Vec<ShardControl> = Vec::with_capacity(shards);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), ServerError>>();
        for index in 0..shards {
            if config.backend == Backend::Ring {
                let cpu = match &config.placement {
                    Placement::Pinned(cpus) => Some(cpus[index]),
                    Placement::Unpinned(_) => None,
                };
                let parts = shard::ShardParts {
                    index,
                    addr,
                    config: config.clone(),
                    factory: factory.clone(),
                    stats: stats.clone(),
                    emitter: emitter.clone(),
                    inbox: receivers.next().expect("one inbox per shard"),
                    metrics: shard_metrics[index].clone(),
                };
                let (mode, serve) = ring_conn;
                match ring::spawn(parts, cpu, self.on_shard_start.clone(), ready_tx.clone(), mode, serve) {
                    Ok(r) => {
                        controls.push(ShardControl { stop: Stopper::Ring(r.remote), join: ShardJoin::Ring(r.thread) })
                    }
                    Err(e) => {
                        let mut handle =
                            ServerHandle::new(addr, controls, stats, emitter.clone(), config.shutdown_grace);
                        handle.stop_and_join();
                        return Err(e);
                    }
                }
                continue;
            }
            let placement = match &config.placement {
                Placement::Pinned(cpus) => GlommioPlacement::Fixed(cpus[index]),
                Placement::Unpinned(_) => GlommioPlacement::Unbound,
            };
            let mut builder =
                LocalExecutorBuilder::new(placement).name(&format!("hardlight-shard-{index}")).io_memory(io_memory);
            if let Some(spin) = config.spin_before_park {
                builder = builder.spin_before_park(spin);
            }
            let (stop_tx, stop_rx) = oneshot::channel();
            let (config2, factory2, stats2, ready) = (config.clone(), factory.clone(), stats.clone(), ready_tx.clone());
            let hook = self.on_shard_start.clone();
            let inbox = receivers.next().expect("one inbox per shard");
            let emitter2 = emitter.clone();
            let metrics2 = shard_metrics[index].clone();
            let spawned = builder.spawn(move || async move {
                let listener = match glommio::net::TcpListener::bind(addr) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ =
                            ready.send(Err(ServerError::Bind { addr, source: std::io::Error::other(e.to_string()) }));
                        return;
                    }
                };
                if let Some(hook) = hook {
                    hook(index);
                }
                let _ = ready.send(Ok(()));
                drop(ready);
                shard::run(
                    shard::ShardParts {
                        index,
                        addr,
                        config: config2,
                        factory: factory2,
                        stats: stats2,
                        emitter: emitter2,
                        inbox,
                        metrics: metrics2,
                    },
                    listener,
                    stop_rx,
                    serve_conn,
                )
                .await;
            });
            match spawned {
                Ok(j) => controls.push(ShardControl { stop: Stopper::Glommio(stop_tx), join: ShardJoin::Glommio(j) }),
                Err(e) => {
                    let mut handle = ServerHandle::new(addr, controls, stats, emitter.clone(), config.shutdown_grace);
                    handle.stop_and_join();
                    return Err(ServerError::ShardStart { shard: index, reason: e.to_string() });
                }
            }
        }
        drop(ready_tx);
        let mut handle = ServerHandle::new(addr, controls, stats, emitter.clone(), config.shutdown_grace);
        for index in 0..shards {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    handle.stop_and_join();
                    return Err(e);
                }
                Err(_) => {
                    handle.stop_and_join();
                    return Err(ServerError::ShardStart {
                        shard: index,
                        reason: "executor exited before listening (see logs)".into(),
                    });
                }
            }
        }
        if let Some(listener) = metrics_listener {
            let registry = metrics::Registry {
                method_names,
                shards: shard_metrics.into_iter().flatten().collect(),
                stats: handle.stats.clone(),
                emitter: emitter.clone(),
            };
            match metrics::http::MetricsServer::start(listener, registry) {
                Ok(m) => handle.metrics = Some(m),
                Err(e) => {
                    handle.stop_and_join();
                    return Err(ServerError::Config(format!("cannot start the metrics thread: {e}")));
                }
            }
        }
        #[cfg(feature = "broker")]
        if let Some(pending) = pending_bridge {
            match pending.start(emitter) {
                Ok(thread) => handle.bridge = Some(thread),
                Err(e) => {
                    handle.stop_and_join();
                    return Err(ServerError::Config(format!("cannot start the broker bridge thread: {e}")));
                }
            }
        }
        Ok(handle)
    }
}

/// How the handle stops and joins one shard.
struct ShardControl {
    stop: Stopper,
    join: ShardJoin,
}

/// What the handle waits on for one shard.
enum ShardJoin {
    Glommio(ExecutorJoinHandle<()>),
    Ring(std::thread::JoinHandle<()>),
}

/// Whether something accepts TCP connections on `addr` (a stale server),
/// as opposed to the port being held only by closed connections lingering
/// in TIME_WAIT, which a plain bind also reports as in use.
fn port_has_listener(addr: SocketAddr) -> bool {
    let mut probe = addr;
    if probe.ip().is_unspecified() {
        probe.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    std::net::TcpStream::connect_timeout(&probe, Duration::from_millis(200)).is_ok()
}

/// A running server. Dropping it shuts the server down gracefully.
///
/// To stop from another thread (a signal, an admin call) while this handle
/// waits in [`Self::join`], use a [`ShutdownTrigger`] from
/// [`Self::shutdown_trigger`]; [`Self::run_until_signal`] does that for
/// SIGTERM and SIGINT.
pub struct ServerHandle {
    addr: SocketAddr,
    trigger: ShutdownTrigger,
    grace: Duration,
    shards: Vec<ShardJoin>,
    stats: Arc<ServerStats>,
    emitter: Emitter,
    metrics: Option<metrics::http::MetricsServer>,
    #[cfg(feature = "broker")]
    bridge: Option<broker::BridgeThread>,
}

impl ServerHandle {
    fn new(
        addr: SocketAddr,
        controls: Vec<ShardControl>,
        stats: Arc<ServerStats>,
        emitter: Emitter,
        grace: Duration,
    ) -> Self {
        let (stops, shards) = controls.into_iter().map(|c| (c.stop, c.join)).unzip();
        Self {
            addr,
            trigger: ShutdownTrigger::new(stops),
            grace,
            shards,
            stats,
            emitter,
            metrics: None,
            #[cfg(feature = "broker")]
            bridge: None,
        }
    }

    /// The address every shard listens on (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Live counters.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// Where the metrics endpoint listens (`GET /metrics`); `None` unless
    /// [`ServerBuilder::metrics_listen`] was set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|m| m.local_addr())
    }

    /// The broker bridge's counters; `None` without a broker.
    pub fn broker_stats(&self) -> Option<&BrokerStats> {
        self.emitter.broker_stats()
    }

    /// A `Send` handle for emitting events from outside the server's
    /// executors (other threads, tokio tasks, background jobs).
    pub fn emitter(&self) -> Emitter {
        self.emitter.clone()
    }

    /// A cloneable, `Send` trigger that starts this server's graceful
    /// shutdown from any thread without waiting for it; [`Self::join`]
    /// then returns once the server has drained.
    pub fn shutdown_trigger(&self) -> ShutdownTrigger {
        self.trigger.clone()
    }

    /// Graceful shutdown: stop accepting, let in-flight calls finish within
    /// the grace period, send Close 1001 to every client, then return.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    /// Blocks until the server stops: after a [`ShutdownTrigger`] fired (the
    /// drain included), or a shard failed.
    pub fn join(mut self) {
        self.join_shards();
    }

    fn join_shards(&mut self) {
        for shard in self.shards.drain(..) {
            match shard {
                ShardJoin::Glommio(j) => {
                    if let Err(e) = j.join() {
                        tracing::error!(error = %e, "shard exited with an error");
                    }
                }
                ShardJoin::Ring(t) => {
                    if t.join().is_err() {
                        tracing::error!("ring shard thread panicked");
                    }
                }
            }
        }
        // After the shards: events emitted while connections drained are
        // still published.
        #[cfg(feature = "broker")]
        if let Some(mut bridge) = self.bridge.take() {
            bridge.stop();
        }
    }

    fn stop_and_join(&mut self) {
        self.trigger.shutdown();
        self.join_shards();
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
