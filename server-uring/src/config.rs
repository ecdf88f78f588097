//! Server configuration and the glommio memlock rule.

use std::net::SocketAddr;
use std::time::Duration;

use hardlight_core::events::EventLimits;
use hardlight_core::limits::{Limits, DEFAULT_SHUTDOWN_GRACE};

/// Default cap on connections one shard holds; more are closed at accept.
pub const DEFAULT_MAX_CONNECTIONS_PER_SHARD: usize = 16 * 1024;

/// Default budget, per shard, for bytes held on peers' account: messages
/// still arriving plus output not yet written, summed over the shard's
/// connections. Past it, the connection whose growth crossed it is closed
/// with 4004.
///
/// Without it each connection may hold up to the message size limit plus
/// the outbound limit (5 MiB by default), 80 GiB over 16,384 connections.
/// 256 MiB is 256 peers each mid-way through a maximal message; a
/// well-behaved client holds nothing between rounds.
pub const DEFAULT_SHARD_HELD_BYTES_BUDGET: usize = 256 << 20;

/// Most io memory per executor the server asks for by default. Registered
/// buffers only matter for glommio's DMA file I/O, which a network server
/// does not use, so 1 MiB is plenty.
pub const MAX_IO_MEMORY: usize = 1 << 20;

/// glommio's floor for io memory per executor.
pub const MIN_IO_MEMORY: usize = 64 * 1024;

/// Which event loop runs the shards (see docs/ARCHITECTURE.md, "Backends").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// glommio 0.9 executors, one per shard. Handlers may call glommio's
    /// own APIs here (and only here).
    Glommio,
    /// HardLight's own minimal io_uring loop (`ring`), one per shard: one
    /// `io_uring_enter` per pass, COOP_TASKRUN and SINGLE_ISSUER rings, a
    /// multishot receive per connection, user-space timers. Serves ws://
    /// and wss:// (rustls' sans-I/O session between the socket and the
    /// core). The default since it used less CPU per call than glommio at
    /// every load measured, with equal or lower tails (docs/ARCHITECTURE.md,
    /// "Backends").
    #[default]
    Ring,
}

/// Which CPUs run shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// One shard per listed CPU, each pinned to it.
    Pinned(Vec<usize>),
    /// This many shards, not pinned (for machines where pinning is unwanted).
    Unpinned(usize),
}

impl Placement {
    /// Number of shards.
    pub fn shards(&self) -> usize {
        match self {
            Self::Pinned(cpus) => cpus.len(),
            Self::Unpinned(n) => *n,
        }
    }
}

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Shards and their CPUs.
    pub placement: Placement,
    /// Protocol limits per connection.
    pub limits: Limits,
    /// io_uring registered memory per executor; `None` applies [`io_memory_rule`].
    pub io_memory: Option<usize>,
    /// Time in-flight calls get to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Connections one shard holds at most.
    pub max_connections_per_shard: usize,
    /// Bytes one shard's connections may hold in partial messages and
    /// unsent output, together; see [`DEFAULT_SHARD_HELD_BYTES_BUDGET`].
    pub shard_held_bytes_budget: usize,
    /// Busy-poll this long before parking an idle executor; trades CPU for
    /// wake-up latency. `None` parks at once.
    pub spin_before_park: Option<Duration>,
    /// Capacity of each shard's inbound event channel.
    pub mesh_capacity: usize,
    /// Default bounds and slow-consumer policy for each connection's queued events.
    pub event_limits: EventLimits,
    /// Bounds on the per-topic event history kept for resume (count, age,
    /// topics; `hardlight_core::resume::HistoryLimits`).
    pub history_limits: hardlight_core::resume::HistoryLimits,
    /// Serve wss:// with this certificate; `None` serves plain ws://.
    pub tls: Option<crate::tls::TlsConfig>,
    /// Browser origins allowed to connect (`Origin` header). Empty: any.
    /// A request without `Origin` (not from a browser) is always allowed.
    pub allowed_origins: Vec<String>,
    /// The event loop the shards run on.
    pub backend: Backend,
}

impl ServerConfig {
    /// Defaults: one shard pinned to each online CPU, on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        let cpus = online_cpus();
        Self {
            listen,
            placement: Placement::Pinned(cpus),
            limits: Limits::default(),
            io_memory: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            max_connections_per_shard: DEFAULT_MAX_CONNECTIONS_PER_SHARD,
            shard_held_bytes_budget: DEFAULT_SHARD_HELD_BYTES_BUDGET,
            spin_before_park: None,
            mesh_capacity: crate::events::DEFAULT_MESH_CAPACITY,
            event_limits: EventLimits::default(),
            history_limits: Default::default(),
            tls: None,
            allowed_origins: Vec::new(),
            backend: Backend::default(),
        }
    }
}

/// CPUs this process may run on, in order.
pub fn online_cpus() -> Vec<usize> {
    let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    (0..n).collect()
}

/// The io memory each executor registers, given the number of shards.
///
/// Without CAP_IPC_LOCK every executor registers its io memory with each of
/// its three rings, and every registration counts against RLIMIT_MEMLOCK:
/// `shards * 3 * io_memory` must fit under the soft limit, or glommio logs
/// a warning and runs without registered buffers. This takes the largest
/// size that fits, between glommio's 64 KiB floor and 1 MiB. On a machine
/// with an 8 MiB limit that is 1 MiB up to 2 shards and 170 KiB at 16.
pub fn io_memory_rule(shards: usize) -> usize {
    let limit = memlock_limit().unwrap_or(u64::MAX);
    let per = limit / (3 * shards.max(1) as u64);
    let per = (per / 4096) * 4096;
    (per.min(MAX_IO_MEMORY as u64) as usize).max(MIN_IO_MEMORY)
}

/// The soft RLIMIT_MEMLOCK, or `None` when unlimited.
pub fn memlock_limit() -> Option<u64> {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl) };
    if rc != 0 || rl.rlim_cur == libc::RLIM_INFINITY {
        None
    } else {
        Some(rl.rlim_cur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_memory_fits_the_memlock_limit() {
        for shards in [1, 2, 16, 64] {
            let per = io_memory_rule(shards);
            assert!((MIN_IO_MEMORY..=MAX_IO_MEMORY).contains(&per));
            if let Some(limit) = memlock_limit() {
                if (3 * shards * MIN_IO_MEMORY) as u64 <= limit {
                    assert!((3 * shards * per) as u64 <= limit, "{shards} shards x 3 x {per} > {limit}");
                }
            }
        }
    }
}
