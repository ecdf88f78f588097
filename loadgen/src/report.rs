//! What a run reports: `summary.json` and the files of a run directory.
//!
//! Histograms are recorded in nanoseconds and written in microseconds; their
//! file formats are in [`crate::hgrm`], the machine and commit stamp in
//! [`crate::machine`] (both re-exported here).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::engine::{Mode, RunConfig, RunOutcome};
use crate::floor::Floor;
pub use crate::hgrm::{hgrm, interval_log, read_interval_log, Hgrm, HgrmPoint, NS_PER_US};
pub use crate::machine::{git_commit, rfc3339, Machine};

/// Percentiles of one histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th.
    pub p99_us: f64,
    /// 99.9th.
    pub p99_9_us: f64,
    /// 99.99th.
    pub p99_99_us: f64,
    /// Largest.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Samples.
    pub count: u64,
}

impl Percentiles {
    /// From a histogram in ns.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let us = |q: f64| h.value_at_quantile(q) as f64 / NS_PER_US;
        Self {
            p50_us: us(0.5),
            p90_us: us(0.9),
            p99_us: us(0.99),
            p99_9_us: us(0.999),
            p99_99_us: us(0.9999),
            max_us: h.max() as f64 / NS_PER_US,
            mean_us: h.mean() / NS_PER_US,
            count: h.len(),
        }
    }
}

/// How busy one CPU was during the window, as fractions of the window.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct CoreLoad {
    /// CPU number.
    pub cpu: usize,
    /// user + system + irq + softirq.
    pub busy: f64,
    /// softirq part of `busy` (loopback TCP receive work lands here).
    pub softirq: f64,
    /// Time the hypervisor took away.
    pub steal: f64,
    /// Our side's thread(s) on this CPU (their time includes the softirq
    /// work the kernel does in their context).
    pub ours: f64,
    /// busy - ours: other work on this core (other processes, our process's
    /// other threads, interrupts not run in our threads' context). Above a
    /// few percent, the figures of this run are contaminated.
    pub other: f64,
}

impl CoreLoad {
    fn of(cores: &[crate::cpu::CoreTimes], cpu: Option<usize>, ours_ns: Option<u64>, secs: f64) -> Option<Self> {
        let c = cores.get(cpu?)?;
        let f = |ns: u64| ns as f64 / 1e9 / secs;
        let ours = f(ours_ns?);
        let (busy, softirq) = (f(c.busy_ns), f(c.softirq_ns));
        Some(Self { cpu: cpu?, busy, softirq, steal: f(c.steal_ns), ours, other: (busy - ours).max(0.0) })
    }
}

/// Everything a run reports, written as `summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// Run name (the directory name).
    pub run: String,
    /// Which server: `hardlight` (embedded), a peer's name, or a URL.
    pub server: String,
    /// Scenario name.
    pub scenario: String,
    /// `open` or `closed`.
    pub mode: String,
    /// Open loop: `constant` or `poisson`.
    pub arrival: Option<String>,
    /// Connections.
    pub connections: usize,
    /// Closed loop: calls in flight per connection.
    pub in_flight: Option<usize>,
    /// Open loop: offered calls/s.
    pub offered_rate: Option<f64>,
    /// Completed calls/s over the measured window.
    pub achieved_rate: f64,
    /// Warm-up (s).
    pub warmup_s: f64,
    /// Measured window (s).
    pub duration_s: f64,
    /// Requests sent in the window.
    pub sent: u64,
    /// Answers recorded.
    pub completed: u64,
    /// Failed calls.
    pub failed: u64,
    /// Wrong answers.
    pub mismatched: u64,
    /// Never answered by the end of the drain.
    pub incomplete: u64,
    /// `state`: replies that arrived before their call's STATE message.
    #[serde(default)]
    pub state_late: u64,
    /// Connections lost.
    pub disconnects: u64,
    /// Why the first connection was lost.
    pub disconnect_reason: Option<String>,
    /// Latency from intended send time.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th.
    pub p99_us: f64,
    /// 99.9th.
    pub p99_9_us: f64,
    /// 99.99th.
    pub p99_99_us: f64,
    /// Largest.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Latency from actual send time.
    pub service: Percentiles,
    /// Open loop: actual minus intended send time.
    pub send_lateness: Option<Percentiles>,
    /// Open loop: p99 of send lateness (us).
    pub send_lateness_p99_us: Option<f64>,
    /// Engine thread CPU over the window (s).
    pub client_cpu_s: f64,
    /// User part.
    pub client_cpu_user_s: f64,
    /// System part.
    pub client_cpu_sys_s: f64,
    /// client_cpu_s / duration_s: near 1.0 means the client is saturated.
    pub client_cpu_util: f64,
    /// Client CPU per completed call (ns).
    pub client_cpu_per_call_ns: f64,
    /// Client system calls (read + write + epoll wait) per answer, whole run.
    pub client_syscalls_per_call: f64,
    /// Client `read`, `write` and `epoll_pwait2` calls, whole run.
    pub client_syscalls: [u64; 3],
    /// Server CPU over the window (s).
    pub server_cpu_s: Option<f64>,
    /// User part (tick resolution).
    pub server_cpu_user_s: Option<f64>,
    /// System part (tick resolution).
    pub server_cpu_sys_s: Option<f64>,
    /// server_cpu_s / duration_s.
    pub server_cpu_util: Option<f64>,
    /// Server CPU per completed call (ns).
    pub server_cpu_per_call_ns: Option<f64>,
    /// How server CPU was read.
    pub server_cpu_source: String,
    /// Server system calls per completed call over the window (perf's
    /// `raw_syscalls:sys_enter` on the server's threads; `io_uring_enter`
    /// included). None: see `server_syscalls_note`.
    #[serde(default)]
    pub server_syscalls_per_call: Option<f64>,
    /// `io_uring_enter` calls per completed call (part of the above).
    #[serde(default)]
    pub server_io_uring_enter_per_call: Option<f64>,
    /// Server system calls over the window.
    #[serde(default)]
    pub server_syscalls: Option<u64>,
    /// Why the server's system calls were not counted.
    #[serde(default)]
    pub server_syscalls_note: Option<String>,
    /// Busy time of all CPUs together during the window minus the client's
    /// engine thread and the server (s): other work anywhere on the machine.
    /// Unknown (None) when the server's CPU time is not measured.
    pub other_cpu_s: Option<f64>,
    /// Load on the client's CPU during the window.
    pub client_core: Option<CoreLoad>,
    /// Load on the server's CPU during the window.
    pub server_core: Option<CoreLoad>,
    /// CPU the client was pinned to.
    pub client_cpu: Option<usize>,
    /// CPU the server was pinned to.
    pub server_cpu: Option<usize>,
    /// Whether the client pin succeeded.
    pub client_pinned: bool,
    /// Engine's timer slack (ns).
    pub client_timer_slack_ns: u64,
    /// Busy-polling instead of sleeping.
    pub spin: bool,
    /// Open loop: busy-poll when the next send is this close (us).
    pub spin_below_us: f64,
    /// Latency floor measured in the same invocation, with the engine's timer slack (1 ns).
    pub floor: Option<Floor>,
    /// The same floor with the kernel's default timer slack.
    pub floor_default_slack: Option<Floor>,
    /// The machine.
    pub machine: Machine,
    /// `git rev-parse HEAD` (`-dirty` with uncommitted changes), taken
    /// before anything was written.
    pub git_commit: Option<String>,
    /// When the window started (UTC).
    pub timestamp: String,
    /// The command line.
    pub command: String,
    /// Warnings about the figures (client saturated, incomplete calls...).
    pub warnings: Vec<String>,
}

/// What the caller knows about the run besides the engine's outcome.
#[derive(Debug, Clone, Default)]
pub struct RunMeta {
    /// Run name.
    pub run: String,
    /// Server label.
    pub server: String,
    /// Server CPU.
    pub server_cpu: Option<usize>,
    /// Floor measured in the same invocation (timer slack 1 ns).
    pub floor: Option<Floor>,
    /// Floor with the default timer slack.
    pub floor_default_slack: Option<Floor>,
    /// Command line.
    pub command: String,
    /// The commit, read with [`git_commit`] before the command wrote
    /// anything (results under a tracked folder would make it `-dirty`).
    pub git_commit: Option<String>,
}

impl Summary {
    /// Builds the summary of a run.
    pub fn new(cfg: &RunConfig, out: &RunOutcome, meta: &RunMeta) -> Self {
        let lat = Percentiles::of(&out.latency);
        let secs = out.measured.as_secs_f64();
        let per_call = |ns: u64| if out.completed > 0 { ns as f64 / out.completed as f64 } else { 0.0 };
        let (arrival, in_flight, offered) = match cfg.mode {
            Mode::Closed { in_flight } => (None, Some(in_flight), None),
            Mode::Open { rate, arrival } => (Some(arrival.name().to_string()), None, Some(rate)),
        };
        let lateness = matches!(cfg.mode, Mode::Open { .. }).then(|| Percentiles::of(&out.lateness));
        let client_util = out.client_cpu.total_ns as f64 / 1e9 / secs;
        let mut warnings = Vec::new();
        if client_util > 0.9 && !cfg.spin && cfg.spin_below.is_zero() {
            warnings.push(format!(
                "client CPU at {:.0}% of its core: the load generator may be the bottleneck",
                client_util * 100.0
            ));
        }
        if let Some(rate) = offered {
            let achieved = out.achieved_rate();
            if achieved < rate * 0.95 {
                warnings.push(format!("achieved {achieved:.0}/s is below the offered {rate:.0}/s"));
            }
        }
        if out.incomplete > 0 {
            warnings.push(format!("{} requests in the window were never answered", out.incomplete));
        }
        if out.failed + out.mismatched + out.unknown > 0 {
            warnings.push(format!(
                "{} failed, {} wrong answers, {} answers for unknown ids",
                out.failed, out.mismatched, out.unknown
            ));
        }
        if out.state_late > 0 {
            warnings.push(format!(
                "{} replies arrived before the STATE message of their call (the protocol sends STATE first)",
                out.state_late
            ));
        }
        if out.disconnects > 0 {
            warnings.push(format!(
                "{} connections lost: {}",
                out.disconnects,
                out.disconnect_reason.as_deref().unwrap_or("?")
            ));
        }
        if out.completed == 0 {
            warnings.push("no call completed in the measured window".into());
        }
        let client_core = CoreLoad::of(&out.cores, cfg.client_cpu, Some(out.client_cpu.total_ns), secs);
        let server_core = CoreLoad::of(&out.cores, meta.server_cpu, out.server_cpu.map(|c| c.total_ns), secs);
        let all_busy: u64 = out.cores.iter().map(|c| c.busy_ns).sum();
        let other_cpu = out
            .server_cpu
            .filter(|_| !out.cores.is_empty())
            .map(|srv| all_busy.saturating_sub(out.client_cpu.total_ns + srv.total_ns) as f64 / 1e9);
        if let Some(o) = other_cpu.filter(|o| o / secs > 0.10) {
            warnings.push(format!(
                "other work used {:.0}% of a CPU during the window: figures are contaminated",
                o / secs * 100.0
            ));
        }
        for (side, core) in [("client", client_core), ("server", server_core)] {
            if let Some(c) = core {
                if c.other > 0.10 {
                    warnings.push(format!(
                        "the {side}'s cpu {} spent {:.0}% of the window on other work: figures are contaminated",
                        c.cpu,
                        c.other * 100.0
                    ));
                }
                if c.steal > 0.05 {
                    warnings.push(format!("cpu {} lost {:.0}% of the window to steal", c.cpu, c.steal * 100.0));
                }
            }
        }
        Self {
            run: meta.run.clone(),
            server: meta.server.clone(),
            scenario: cfg.scenario.name(),
            mode: cfg.mode.name().into(),
            arrival,
            connections: cfg.connections,
            in_flight,
            offered_rate: offered,
            achieved_rate: out.achieved_rate(),
            warmup_s: cfg.warmup.as_secs_f64(),
            duration_s: secs,
            sent: out.sent,
            completed: out.completed,
            failed: out.failed,
            mismatched: out.mismatched,
            incomplete: out.incomplete,
            state_late: out.state_late,
            disconnects: out.disconnects,
            disconnect_reason: out.disconnect_reason.clone(),
            p50_us: lat.p50_us,
            p90_us: lat.p90_us,
            p99_us: lat.p99_us,
            p99_9_us: lat.p99_9_us,
            p99_99_us: lat.p99_99_us,
            max_us: lat.max_us,
            mean_us: lat.mean_us,
            service: Percentiles::of(&out.service),
            send_lateness_p99_us: lateness.map(|l| l.p99_us),
            send_lateness: lateness,
            client_cpu_s: out.client_cpu.total_ns as f64 / 1e9,
            client_cpu_user_s: out.client_cpu.user_ns as f64 / 1e9,
            client_cpu_sys_s: out.client_cpu.sys_ns as f64 / 1e9,
            client_cpu_util: client_util,
            client_cpu_per_call_ns: per_call(out.client_cpu.total_ns),
            client_syscalls_per_call: out.syscalls.per_answer(),
            client_syscalls: [out.syscalls.reads, out.syscalls.writes, out.syscalls.waits],
            server_cpu_s: out.server_cpu.map(|c| c.total_ns as f64 / 1e9),
            server_cpu_user_s: out.server_cpu.map(|c| c.user_ns as f64 / 1e9),
            server_cpu_sys_s: out.server_cpu.map(|c| c.sys_ns as f64 / 1e9),
            server_cpu_util: out.server_cpu.map(|c| c.total_ns as f64 / 1e9 / secs),
            server_cpu_per_call_ns: out.server_cpu.map(|c| per_call(c.total_ns)),
            server_cpu_source: cfg.server_cpu.describe(),
            server_syscalls_per_call: out.server_syscalls.as_ref().ok().map(|n| per_call(n.total)),
            server_io_uring_enter_per_call: out.server_syscalls.as_ref().ok().map(|n| per_call(n.io_uring_enter)),
            server_syscalls: out.server_syscalls.as_ref().ok().map(|n| n.total),
            server_syscalls_note: out.server_syscalls.as_ref().err().cloned(),
            other_cpu_s: other_cpu,
            client_core,
            server_core,
            client_cpu: cfg.client_cpu,
            server_cpu: meta.server_cpu,
            client_pinned: out.pinned,
            client_timer_slack_ns: out.timer_slack_ns,
            spin: cfg.spin,
            spin_below_us: cfg.spin_below.as_secs_f64() * 1e6,
            floor: meta.floor.clone(),
            floor_default_slack: meta.floor_default_slack.clone(),
            machine: Machine::detect(),
            git_commit: meta.git_commit.clone(),
            timestamp: rfc3339(out.started_at),
            command: meta.command.clone(),
            warnings,
        }
    }
}

/// The files of one run directory.
pub mod files {
    /// Latency from intended send time, percentile distribution (us).
    pub const LATENCY_HGRM: &str = "latency.hgrm";
    /// Latency from actual send time (us).
    pub const SERVICE_HGRM: &str = "service.hgrm";
    /// Send lateness (us), open loop.
    pub const LATENESS_HGRM: &str = "send-lateness.hgrm";
    /// Interval log of latency.
    pub const LATENCY_HLOG: &str = "latency.hlog";
    /// Summary.
    pub const SUMMARY: &str = "summary.json";
}

/// Writes a run's files under `dir` (created). Returns the directory.
pub fn write_run(dir: &Path, cfg: &RunConfig, out: &RunOutcome, summary: &Summary) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    fs::write(dir.join(files::LATENCY_HGRM), hgrm(&out.latency, NS_PER_US))?;
    fs::write(dir.join(files::SERVICE_HGRM), hgrm(&out.service, NS_PER_US))?;
    if matches!(cfg.mode, Mode::Open { .. }) {
        fs::write(dir.join(files::LATENESS_HGRM), hgrm(&out.lateness, NS_PER_US))?;
    }
    let comment = format!("loadgen run {} ({}): latency from intended send time", summary.run, summary.command);
    let log = interval_log(&out.intervals, out.started_at, &comment).map_err(io::Error::other)?;
    fs::write(dir.join(files::LATENCY_HLOG), log)?;
    let json = serde_json::to_string_pretty(summary).map_err(io::Error::other)?;
    fs::write(dir.join(files::SUMMARY), json + "\n")?;
    Ok(dir.to_path_buf())
}

/// Reads a `summary.json`.
pub fn read_summary(dir: &Path) -> Result<Summary, String> {
    let p = dir.join(files::SUMMARY);
    let text = fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
}
