//! Runs that write results: a single run, a rate sweep, and the standard
//! `bench` suite against the embedded server (and optionally the peers).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::compare::fmt_rate;
use crate::cpu::ServerCpuSource;
use crate::engine::{self, Arrival, Mode, RunConfig};
use crate::floor::{self, Floor};
use crate::report::{self, RunMeta, Summary};
use crate::scenario::Scenario;
use crate::server::{self, Peer, ShardPlacement, PEERS};
pub use crate::table::runs_table;
use crate::ws::Target;

/// The latency floor, measured twice: with the engine's 1 ns timer slack
/// and with the kernel's default.
#[derive(Debug, Clone)]
pub struct Floors {
    /// Timer slack 1 ns (what the engine runs with).
    pub tight: Floor,
    /// Default timer slack.
    pub default_slack: Floor,
}

impl Floors {
    /// Measures both, `total` split evenly, on `cpu`.
    pub fn measure(cpu: Option<usize>, total: Duration) -> Self {
        let half = total / 2;
        let sleep = Duration::from_micros(50);
        let (tight, _) = floor::measure(cpu, sleep, half, Some(1));
        let (default_slack, _) = floor::measure(cpu, sleep, half, None);
        Self { tight, default_slack }
    }

    /// Two lines for reports.
    pub fn lines(&self) -> String {
        format!("{}\n{}", self.tight.line(), self.default_slack.line())
    }
}

/// Waits until each of `cpus` has been less than `max_busy` busy for 3
/// seconds in a row, at most `limit`. Returns the last busy fractions seen
/// and whether the machine went quiet.
pub fn wait_quiet(cpus: &[usize], max_busy: f64, limit: Duration) -> (Vec<f64>, bool) {
    let start = std::time::Instant::now();
    let mut quiet_for = 0;
    loop {
        let a = crate::cpu::cores();
        std::thread::sleep(Duration::from_secs(1));
        let b = crate::cpu::cores();
        let last: Vec<f64> = cpus
            .iter()
            .map(|&c| match (b.get(c), a.get(c)) {
                (Some(b), Some(a)) => {
                    let d = b.since(a);
                    d.busy_ns as f64 / (d.busy_ns + d.idle_ns + d.steal_ns).max(1) as f64
                }
                _ => 0.0,
            })
            .collect();
        quiet_for = if last.iter().all(|&x| x < max_busy) { quiet_for + 1 } else { 0 };
        if quiet_for >= 3 {
            return (last, true);
        }
        if start.elapsed() >= limit {
            return (last, false);
        }
    }
}

/// Runs `cfg`, writes its files under `out/name`, returns the summary.
pub fn run_and_write(cfg: &RunConfig, out: &Path, meta: &RunMeta) -> Result<(Summary, PathBuf), String> {
    let outcome = engine::run(cfg)?;
    let summary = Summary::new(cfg, &outcome, meta);
    let dir = out.join(&meta.run);
    report::write_run(&dir, cfg, &outcome, &summary).map_err(|e| format!("write {}: {e}", dir.display()))?;
    for w in &summary.warnings {
        eprintln!("[{}] warning: {w}", meta.run);
    }
    Ok((summary, dir))
}

/// One case of the standard suite.
#[derive(Debug, Clone)]
pub struct Case {
    /// Short key used in run names, e.g. `closed-64x1`.
    pub key: String,
    /// Connections.
    pub connections: usize,
    /// Mode.
    pub mode: Mode,
}

/// The standard suite: closed 64x1, closed 64x16, open 100k/s Poisson over
/// 64, and open 50k/s Poisson over 64.
///
/// On the 2-core VM this was written on, one TCP segment costs each side
/// about 10 us of CPU (syscall plus the loopback receive path, which runs
/// on the sender's core), and in open loop over 64 connections almost
/// every call is its own segment both ways. So at 100k/s the client and
/// the server each need about a whole core: that case measures a saturated
/// pair. The 50k/s case is latency under load with headroom on both sides.
pub fn standard_cases() -> Vec<Case> {
    let open = |k: u32| Case {
        key: format!("open-{k}k-64"),
        connections: 64,
        mode: Mode::Open { rate: k as f64 * 1000.0, arrival: Arrival::Poisson },
    };
    vec![
        Case { key: "closed-64x1".into(), connections: 64, mode: Mode::Closed { in_flight: 1 } },
        Case { key: "closed-64x16".into(), connections: 64, mode: Mode::Closed { in_flight: 16 } },
        open(100),
        open(50),
    ]
}

/// Selects cases by key (comma-separated); empty selects all.
pub fn select_cases(keys: &str) -> Result<Vec<Case>, String> {
    let all = standard_cases();
    if keys.trim().is_empty() {
        return Ok(all);
    }
    keys.split(',')
        .map(|k| {
            all.iter().find(|c| c.key == k.trim()).cloned().ok_or_else(|| {
                let names: Vec<&str> = all.iter().map(|c| c.key.as_str()).collect();
                format!("unknown case `{k}` ({})", names.join(", "))
            })
        })
        .collect()
}

/// Options of `loadgen bench`.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Results directory (`results`).
    pub out: PathBuf,
    /// Run name prefix (`bench`, or `quick` with `--quick`).
    pub prefix: String,
    /// Client CPU.
    pub client_cpu: Option<usize>,
    /// Server CPU.
    pub server_cpu: Option<usize>,
    /// Warm-up per case.
    pub warmup: Duration,
    /// Measured window per case.
    pub duration: Duration,
    /// Floor measurement time.
    pub floor: Duration,
    /// Also run the peers.
    pub peers: bool,
    /// Where the peer binaries are.
    pub peer_bin_dir: PathBuf,
    /// Busy-poll instead of sleeping.
    pub spin: bool,
    /// Open loop: busy-poll when the next send is due within this long.
    pub spin_below: Duration,
    /// Progress lines.
    pub progress: bool,
    /// The command line, for summaries.
    pub command: String,
    /// Cases (default: the standard suite).
    pub cases: Vec<Case>,
    /// Before every run, wait at most this long for the client and server
    /// CPUs to go quiet (under 10% busy).
    pub wait_quiet: Duration,
    /// Runs again (waiting for quiet first) when a run reports contamination
    /// by other work, at most this many times.
    pub retries: usize,
    /// Count the server's system calls with perf (`crate::syscount`).
    pub count_server_syscalls: bool,
}

impl BenchOptions {
    /// Defaults: full (about 60 s) or quick (about 10 s).
    pub fn new(quick: bool) -> Self {
        Self {
            out: PathBuf::from("results"),
            prefix: if quick { "quick" } else { "bench" }.into(),
            client_cpu: Some(0),
            server_cpu: Some(1),
            warmup: Duration::from_millis(if quick { 400 } else { 2000 }),
            duration: Duration::from_millis(if quick { 1500 } else { 15000 }),
            floor: Duration::from_secs(if quick { 1 } else { 4 }),
            peers: false,
            peer_bin_dir: PathBuf::from("target/release"),
            spin: false,
            spin_below: Duration::ZERO,
            progress: true,
            command: String::new(),
            cases: standard_cases(),
            wait_quiet: Duration::ZERO,
            retries: 0,
            count_server_syscalls: true,
        }
    }
}

/// Starts a server for the suite.
type Starter = Box<dyn FnOnce() -> Result<Subject, String>>;

/// A server the suite runs against.
enum Subject {
    Embedded(hardlight::server::ServerHandle),
    Peer(Peer, bool),
}

/// One finished run of the suite.
#[derive(Debug, Clone)]
pub struct SuiteRun {
    /// Server label.
    pub server: String,
    /// Case key.
    pub case: String,
    /// Its summary.
    pub summary: Summary,
    /// Its directory.
    pub dir: PathBuf,
}

/// Runs the suite, prints and writes the table. Returns the runs and the table text.
pub fn bench(opts: &BenchOptions) -> Result<(Vec<SuiteRun>, String), String> {
    let quiet = || {
        if !opts.wait_quiet.is_zero() {
            let cpus: Vec<usize> = opts.client_cpu.iter().chain(opts.server_cpu.iter()).copied().collect();
            let (busy, quiet) = wait_quiet(&cpus, 0.10, opts.wait_quiet);
            let pct: Vec<String> = busy.iter().map(|b| format!("{:.0}%", b * 100.0)).collect();
            if !quiet {
                eprintln!(
                    "warning: the machine did not go quiet (cpus {cpus:?} busy {}); running anyway",
                    pct.join("/")
                );
            }
        }
    };
    quiet();
    eprintln!("measuring the latency floor on cpu {:?} for {:?}", opts.client_cpu, opts.floor);
    let floors = Floors::measure(opts.client_cpu, opts.floor);
    eprintln!("{}", floors.lines());

    let mut subjects: Vec<(String, Starter)> = Vec::new();
    let server_cpu = opts.server_cpu;
    subjects.push((
        "hardlight".into(),
        Box::new(move || {
            let placement = server_cpu.map(ShardPlacement::Cpu).unwrap_or(ShardPlacement::Unpinned);
            server::start_embedded("127.0.0.1:0".parse().unwrap(), placement).map(Subject::Embedded)
        }),
    ));
    let mut skipped = Vec::new();
    if opts.peers {
        for spec in PEERS.iter() {
            let path = Peer::path(&opts.peer_bin_dir, spec.bin);
            if !path.is_file() {
                let msg = format!(
                    "peer {} skipped: {} does not exist (build it with `cargo build --release -p hardlight-bench --bins`)",
                    spec.bin,
                    path.display()
                );
                eprintln!("{msg}");
                skipped.push(msg);
                continue;
            }
            let hl = spec.hardlight;
            subjects.push((
                spec.bin.to_string(),
                Box::new(move || Peer::spawn(&path, server_cpu).map(|p| Subject::Peer(p, hl))),
            ));
        }
    }

    // Start every server first (idle ones cost nothing), then run each case
    // against each server in turn, so that the figures compared side by side
    // were measured within the same minute of a shared machine.
    let mut started: Vec<(String, Subject)> = Vec::new();
    for (name, start) in subjects {
        match start() {
            Ok(s) => started.push((name, s)),
            Err(e) => {
                let msg = format!("server {name} skipped: {e}");
                eprintln!("{msg}");
                skipped.push(msg);
            }
        }
    }
    let mut runs: Vec<SuiteRun> = Vec::new();
    for case in &opts.cases {
        for (name, subject) in &started {
            let (addr, source, hl) = match subject {
                Subject::Embedded(h) => (h.local_addr(), server::embedded_cpu_source(), true),
                Subject::Peer(p, hl) => (p.addr, ServerCpuSource::Pid(p.pid()), *hl),
            };
            let target = Target::at(addr)?;
            let scenario = if hl { Scenario::Echo64 } else { Scenario::RawEcho { size: 64 } };
            let run = format!("{}-{}-{}-{}", opts.prefix, name, case.key, scenario.name());
            let mut cfg = RunConfig::new(run.clone(), target, scenario);
            cfg.connections = case.connections;
            cfg.mode = case.mode;
            cfg.warmup = opts.warmup;
            cfg.duration = opts.duration;
            cfg.client_cpu = opts.client_cpu;
            cfg.spin = opts.spin;
            cfg.spin_below = opts.spin_below;
            cfg.progress = opts.progress;
            cfg.server_cpu = source;
            cfg.count_server_syscalls = opts.count_server_syscalls;
            if !opts.wait_quiet.is_zero() {
                quiet();
            }
            let meta = RunMeta {
                run: run.clone(),
                server: name.clone(),
                server_cpu: opts.server_cpu,
                floor: Some(floors.tight.clone()),
                floor_default_slack: Some(floors.default_slack.clone()),
                command: opts.command.clone(),
            };
            for attempt in 0..=opts.retries {
                if attempt > 0 {
                    quiet();
                }
                match run_and_write(&cfg, &opts.out, &meta) {
                    Ok((summary, dir)) => {
                        let dirty = summary.warnings.iter().any(|w| w.contains("contaminated"));
                        if dirty && attempt < opts.retries {
                            eprintln!("[{run}] contaminated by other work: running it again ({})", attempt + 1);
                            continue;
                        }
                        runs.push(SuiteRun { server: name.clone(), case: case.key.clone(), summary, dir });
                    }
                    Err(e) => {
                        let msg = format!("run {run} failed: {e}");
                        eprintln!("{msg}");
                        skipped.push(msg);
                    }
                }
                break;
            }
        }
    }
    for (_, subject) in started {
        match subject {
            Subject::Embedded(h) => h.shutdown(),
            Subject::Peer(p, _) => drop(p),
        }
    }

    let text = suite_report(opts, &runs, &floors, &skipped);
    fs::create_dir_all(&opts.out).map_err(|e| format!("{}: {e}", opts.out.display()))?;
    let table_path = opts.out.join(format!("{}-table.md", opts.prefix));
    fs::write(&table_path, &text).map_err(|e| format!("{}: {e}", table_path.display()))?;
    Ok((runs, text))
}

/// The suite's printed report: one table per case, the floor beside it.
pub fn suite_report(opts: &BenchOptions, runs: &[SuiteRun], floors: &Floors, skipped: &[String]) -> String {
    let mut out = String::new();
    let m = report::Machine::detect();
    out.push_str(&format!(
        "# loadgen {}: {} ({} cpus, {}), client cpu {:?}, server cpu {:?}, warmup {:?}, window {:?}, commit {}\n\n",
        opts.prefix,
        m.cpu_model,
        m.cpus,
        m.kernel,
        opts.client_cpu,
        opts.server_cpu,
        opts.warmup,
        opts.duration,
        report::git_commit().unwrap_or_else(|| "?".into())
    ));
    for case in &opts.cases {
        let rows: Vec<&SuiteRun> = runs.iter().filter(|r| r.case == case.key).collect();
        if rows.is_empty() {
            continue;
        }
        let base = rows.iter().find(|r| r.server == "baseline-tokio").map(|r| &r.summary);
        let named: Vec<(String, &Summary)> =
            rows.iter().map(|r| (format!("{} {}", r.server, r.summary.scenario), &r.summary)).collect();
        out.push_str(&format!("## {}\n\n", case.key));
        if base.is_some() {
            out.push_str("(ratios against baseline-tokio, measured in the same sitting)\n\n");
        }
        out.push_str(&runs_table(&named, base));
        for r in &rows {
            for w in &r.summary.warnings {
                out.push_str(&format!("\n- {} warning: {w}", r.server));
            }
        }
        out.push_str("\n\n");
    }
    out.push_str(&format!("{}\n", floors.lines()));
    for s in skipped {
        out.push_str(&format!("\n{s}"));
    }
    out.push('\n');
    out
}

/// Sweep: one open-loop run per rate; returns the summaries and a table.
pub fn sweep(
    base: &RunConfig,
    rates: &[f64],
    arrival: Arrival,
    out: &Path,
    meta: &RunMeta,
) -> Result<(Vec<Summary>, String), String> {
    let mut sums = Vec::new();
    for &rate in rates {
        let mut cfg = base.clone();
        cfg.mode = Mode::Open { rate, arrival };
        let run = format!("{}/rate-{}", meta.run, rate as u64);
        cfg.label = run.clone();
        let m = RunMeta { run, ..meta.clone() };
        let (s, _) = run_and_write(&cfg, out, &m)?;
        let saturated = s.achieved_rate < rate * 0.95 || s.incomplete > 0;
        sums.push(s);
        if saturated {
            eprintln!("[{}] the server did not sustain {}: stopping the sweep here", meta.run, fmt_rate(rate));
            break;
        }
    }
    let rows: Vec<(String, &Summary)> =
        sums.iter().map(|s| (format!("{} @ {}", s.scenario, fmt_rate(s.offered_rate.unwrap_or(0.0))), s)).collect();
    Ok((sums.clone(), runs_table(&rows, None)))
}
