//! Servers under test: the embedded glommio server, and peer baseline
//! servers started as child processes.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use hardlight::server::{Backend, ConnectContext, Refusal, Server, ServerHandle};
use hardlight_bench::fan::{FanHandler, FanService};
use hardlight_bench::stateful::{LastCall, StatefulHandler, StatefulService};
use hardlight_bench::{BenchHandler, BenchService};

use crate::cpu::{ServerCpuSource, SHARD_THREAD_PREFIX};
use crate::scenario::Scenario;

/// Installs a stderr logger (warnings and up unless `RUST_LOG` says
/// otherwise), so that glommio's warnings (memlock, io memory) are visible.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Whether the embedded server runs on the ring backend (the default)
/// instead of glommio (`--backend glommio`); set once from the command line.
static RING: AtomicBool = AtomicBool::new(true);

/// Picks the embedded server's backend from a `--backend` value.
pub fn set_backend(name: &str) -> Result<(), String> {
    match name {
        "glommio" => RING.store(false, Ordering::Relaxed),
        "ring" => RING.store(true, Ordering::Relaxed),
        o => return Err(format!("unknown --backend `{o}` (glommio, ring)")),
    }
    Ok(())
}

/// The embedded server's backend.
pub fn backend() -> Backend {
    if RING.load(Ordering::Relaxed) {
        Backend::Ring
    } else {
        Backend::Glommio
    }
}

/// Whether the embedded server serves Prometheus metrics (`--metrics`).
static METRICS: AtomicBool = AtomicBool::new(false);

/// Turns the embedded server's metrics endpoint on or off.
pub fn set_metrics(on: bool) {
    METRICS.store(on, Ordering::Relaxed);
}

/// How often the embedded server's metrics are scraped while it runs
/// with `--metrics` (more often than a Prometheus server would).
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);

/// Scrapes `addr` every [`SCRAPE_INTERVAL`] until the endpoint goes away.
fn scrape_forever(addr: SocketAddr) {
    use std::io::{Read, Write};
    std::thread::Builder::new()
        .name("loadgen-scraper".into())
        .spawn(move || loop {
            std::thread::sleep(SCRAPE_INTERVAL);
            let Ok(mut s) = std::net::TcpStream::connect(addr) else { return };
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: loadgen\r\n\r\n");
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        })
        .map(drop)
        .unwrap_or_else(|e| eprintln!("no metrics scraper: {e}"));
}

/// Where the embedded server's shard runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardPlacement {
    /// Pinned to this CPU.
    Cpu(usize),
    /// One unpinned shard (tests).
    Unpinned,
}

/// Starts the HardLight server serving the `Bench` service on `listen`.
pub fn start_embedded(listen: SocketAddr, placement: ShardPlacement) -> Result<ServerHandle, String> {
    start_embedded_with(listen, placement, None)
}

/// [`start_embedded`], with the shard busy-polling for `spin` before it parks.
pub fn start_embedded_with(
    listen: SocketAddr,
    placement: ShardPlacement,
    spin: Option<Duration>,
) -> Result<ServerHandle, String> {
    start_embedded_for(listen, placement, spin, EmbeddedService::Bench)
}

/// The service the embedded server runs: the one a scenario calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddedService {
    /// `Bench` (echo64, echo, add; raw-echo is refused for lack of `hl/1`).
    Bench,
    /// `Stateful` (`state`).
    State,
    /// `Fan` (`fanout`).
    Fan,
}

impl EmbeddedService {
    /// The service `scenario` calls.
    pub fn for_scenario(scenario: &Scenario) -> Self {
        match scenario {
            Scenario::State => Self::State,
            Scenario::Fanout => Self::Fan,
            _ => Self::Bench,
        }
    }
}

/// [`start_embedded_with`], serving `service`.
pub fn start_embedded_for(
    listen: SocketAddr,
    placement: ShardPlacement,
    spin: Option<Duration>,
    service: EmbeddedService,
) -> Result<ServerHandle, String> {
    init_logging();
    let mut b = Server::builder(listen).backend(backend());
    if METRICS.load(Ordering::Relaxed) {
        b = b.metrics_listen(SocketAddr::from(([127, 0, 0, 1], 0)));
    }
    if let Some(d) = spin {
        b = b.spin_before_park(d);
    }
    let b = match placement {
        ShardPlacement::Cpu(c) => b.cores(vec![c]),
        ShardPlacement::Unpinned => b.unpinned(1),
    };
    let served = match service {
        EmbeddedService::Bench => {
            b.serve(|_ctx: &ConnectContext<'_>| Ok::<_, Refusal>(BenchService::new(BenchHandler)))
        }
        EmbeddedService::State => b.serve(|ctx: &ConnectContext<'_>| {
            Ok::<_, Refusal>(StatefulService::new(StatefulHandler { state: ctx.state(LastCall::default()) }))
        }),
        EmbeddedService::Fan => {
            b.serve(|ctx: &ConnectContext<'_>| Ok::<_, Refusal>(FanService::new(FanHandler { events: ctx.events() })))
        }
    };
    let served = served.map_err(|e| format!("embedded server on {listen}: {e}"))?;
    if let Some(addr) = served.metrics_addr() {
        scrape_forever(addr);
    }
    Ok(served)
}

/// HardLight's plain WebSocket echo (`EchoServer`, no RPC layer) on the
/// embedded server's backend and CPU: the same transport as the peers'
/// echo servers, so that `bench --peers` can tell the transport's cost
/// from the RPC layer's. Its shard threads share the embedded server's
/// name prefix; an idle shard sleeps in the kernel, so its CPU time adds
/// nothing measurable to the other's runs.
pub fn start_embedded_echo(listen: SocketAddr, placement: ShardPlacement) -> Result<ServerHandle, String> {
    init_logging();
    let b = hardlight::server::echo::EchoServer::builder(listen).backend(backend());
    let b = match placement {
        ShardPlacement::Cpu(c) => b.cores(vec![c]),
        ShardPlacement::Unpinned => b.unpinned(1),
    };
    b.serve_echo().map_err(|e| format!("embedded echo server on {listen}: {e}"))
}

/// How the embedded server's CPU time is read.
pub fn embedded_cpu_source() -> ServerCpuSource {
    ServerCpuSource::ThreadsNamed(SHARD_THREAD_PREFIX.into())
}

/// A peer server binary and what it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    /// Binary name (in the peer directory).
    pub bin: &'static str,
    /// Whether it speaks HardLight (else: plain WebSocket echo; runs use `raw-echo`).
    pub hardlight: bool,
}

/// The baselines `bench --peers` knows: the HardLight protocol on tokio,
/// the batching echo (tokio-tungstenite), and the two fastest per-message
/// echoes (fastwebsockets, tokio-websockets; see platform-notes.md).
pub const PEERS: [PeerSpec; 4] = [
    PeerSpec { bin: "baseline-tokio", hardlight: true },
    PeerSpec { bin: "echo-tokio-tungstenite", hardlight: false },
    PeerSpec { bin: "echo-fastwebsockets", hardlight: false },
    PeerSpec { bin: "echo-tokio-websockets", hardlight: false },
];

/// A running peer server (killed on drop).
pub struct Peer {
    /// Its name.
    pub name: String,
    /// The address it printed.
    pub addr: SocketAddr,
    child: Child,
}

impl Peer {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Path of a peer binary in `dir`.
    pub fn path(dir: &Path, bin: &str) -> PathBuf {
        dir.join(bin)
    }

    /// Spawns `bin --listen 127.0.0.1:0 --cpu CPU` and waits (at most 20 s) for
    /// its `listening on ADDR` line.
    pub fn spawn(bin: &Path, cpu: Option<usize>) -> Result<Self, String> {
        let name = bin.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut cmd = Command::new(bin);
        cmd.args(["--listen", "127.0.0.1:0"]);
        if let Some(c) = cpu {
            cmd.args(["--cpu", &c.to_string()]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("start {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                if let Some(a) = line.trim().strip_prefix("listening on ") {
                    let _ = tx.send(a.trim().to_string());
                    break;
                }
            }
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => match a.parse::<SocketAddr>() {
                Ok(addr) => Ok(Self { name, addr, child }),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    Err(format!("{name} printed `listening on {a}`: {e}"))
                }
            },
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                Err(format!("{name} exited ({status}) without printing `listening on ADDR` (its stderr is above)"))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("{name} did not print `listening on ADDR` within 20 s"))
            }
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
