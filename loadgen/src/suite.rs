//! Runs that write results: a single run, a rate sweep, and the standard
//! `bench` suite against the embedded server (and optionally the peers).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::cases::{select_cases, standard_cases, Case};
use crate::compare::{fmt_rate, Run};
pub use crate::cpu::wait_quiet;
use crate::cpu::ServerCpuSource;
use crate::engine::{self, Arrival, Mode, RunConfig};
pub use crate::floor::Floors;
use crate::plot;
use crate::report::{self, RunMeta, Summary};
use crate::scenario::Scenario;
use crate::server::{self, EmbeddedService, Peer, ShardPlacement, PEERS};
pub use crate::table::runs_table;
use crate::ws::Target;

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

/// Options of `loadgen bench`.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Results directory (default [`crate::cli::DEFAULT_OUT`], git-ignored).
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
    /// Defaults: full (about 110 s) or quick (about 13 s).
    pub fn new(quick: bool) -> Self {
        Self {
            out: PathBuf::from(crate::cli::DEFAULT_OUT),
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

/// A server the suite runs against.
enum Subject {
    Embedded(hardlight::server::ServerHandle),
    /// HardLight's plain echo: served like a peer (raw-echo), measured
    /// like the embedded server.
    EmbeddedEcho(hardlight::server::ServerHandle),
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

/// What `bench` produced.
#[derive(Debug)]
pub struct BenchDone {
    /// Every run that finished.
    pub runs: Vec<SuiteRun>,
    /// The printed report: a table per case, the floor, what was skipped.
    pub text: String,
    /// Where `text` was written.
    pub table: PathBuf,
    /// The plot of every case (or why there is none).
    pub plot: Result<PathBuf, String>,
}

/// Runs the suite and writes its table and plot next to the runs.
pub fn bench(opts: &BenchOptions) -> Result<BenchDone, String> {
    // The commit, before anything is written: with `--out results` the runs
    // overwrite tracked files, and a stamp taken afterwards would say `-dirty`.
    let commit = report::git_commit();
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

    let (started, mut skipped) = start_subjects(opts);
    let placement = opts.server_cpu.map(ShardPlacement::Cpu).unwrap_or(ShardPlacement::Unpinned);
    let mut runs: Vec<SuiteRun> = Vec::new();
    for case in &opts.cases {
        // A case on a service other than Bench gets an embedded server of
        // its own for its duration (the Bench one idles meanwhile).
        let own = match case.scenario.as_ref().map(EmbeddedService::for_scenario) {
            Some(service) if service != EmbeddedService::Bench => {
                match server::start_embedded_for("127.0.0.1:0".parse().unwrap(), placement, None, service) {
                    Ok(h) => Some(h),
                    Err(e) => {
                        skipped.push(format!("case {} skipped: {e}", case.key));
                        continue;
                    }
                }
            }
            _ => None,
        };
        for (name, subject) in &started {
            let (addr, source, hl) = match subject {
                Subject::Embedded(h) => (own.as_ref().unwrap_or(h).local_addr(), server::embedded_cpu_source(), true),
                Subject::EmbeddedEcho(_) if case.hardlight_only() => continue,
                Subject::EmbeddedEcho(h) => (h.local_addr(), server::embedded_cpu_source(), false),
                // Peers serve Bench or a plain echo: not this case (the table says so).
                Subject::Peer(..) if case.hardlight_only() => continue,
                Subject::Peer(p, hl) => (p.addr, ServerCpuSource::Pid(p.pid()), *hl),
            };
            let target = Target::at(addr)?;
            let scenario =
                case.scenario.clone().unwrap_or(if hl { Scenario::Echo64 } else { Scenario::RawEcho { size: 64 } });
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
                git_commit: commit.clone(),
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
        if let Some(h) = own {
            h.shutdown();
        }
    }
    for (_, subject) in started {
        match subject {
            Subject::Embedded(h) | Subject::EmbeddedEcho(h) => h.shutdown(),
            Subject::Peer(p, _) => drop(p),
        }
    }

    let text = suite_report(opts, &runs, &floors, &skipped, commit.as_deref());
    fs::create_dir_all(&opts.out).map_err(|e| format!("{}: {e}", opts.out.display()))?;
    let table = opts.out.join(format!("{}-table.md", opts.prefix));
    fs::write(&table, &text).map_err(|e| format!("{}: {e}", table.display()))?;
    let plot = plot_suite(opts, &runs);
    Ok(BenchDone { runs, text, table, plot })
}

/// Starts the embedded server and, with `--peers`, every peer binary found.
/// Idle servers cost nothing, so all are started first and each case then
/// runs against each in turn: figures side by side are from the same minute
/// of a shared machine. Returns the servers and what was skipped, and why.
fn start_subjects(opts: &BenchOptions) -> (Vec<(String, Subject)>, Vec<String>) {
    let server_cpu = opts.server_cpu;
    let placement = server_cpu.map(ShardPlacement::Cpu).unwrap_or(ShardPlacement::Unpinned);
    let mut started = Vec::new();
    let mut skipped = Vec::new();
    match server::start_embedded("127.0.0.1:0".parse().unwrap(), placement) {
        Ok(h) => started.push(("hardlight".to_string(), Subject::Embedded(h))),
        Err(e) => skip(&mut skipped, format!("server hardlight skipped: {e}")),
    }
    if !opts.peers {
        return (started, skipped);
    }
    match server::start_embedded_echo("127.0.0.1:0".parse().unwrap(), placement) {
        Ok(h) => started.push(("hardlight-plain-echo".to_string(), Subject::EmbeddedEcho(h))),
        Err(e) => skip(&mut skipped, format!("server hardlight-plain-echo skipped: {e}")),
    }
    for spec in PEERS.iter() {
        let path = Peer::path(&opts.peer_bin_dir, spec.bin);
        if !path.is_file() {
            let msg = format!(
                "peer {} skipped: {} does not exist (build it with `cargo build --release -p hardlight-bench --bins`)",
                spec.bin,
                path.display()
            );
            skip(&mut skipped, msg);
            continue;
        }
        match Peer::spawn(&path, server_cpu) {
            Ok(p) => started.push((spec.bin.to_string(), Subject::Peer(p, spec.hardlight))),
            Err(e) => skip(&mut skipped, format!("server {} skipped: {e}", spec.bin)),
        }
    }
    (started, skipped)
}

/// Says why a server is left out, now and in the report.
fn skip(skipped: &mut Vec<String>, msg: String) {
    eprintln!("{msg}");
    skipped.push(msg);
}

/// One panel per case, one curve per server: `OUT/PREFIX-plot.svg`.
fn plot_suite(opts: &BenchOptions, runs: &[SuiteRun]) -> Result<PathBuf, String> {
    let mut panels = Vec::new();
    for case in &opts.cases {
        let curves: Vec<Run> = runs
            .iter()
            .filter(|r| r.case == case.key)
            .map(|r| Run::load(&r.dir).map(|run| Run { name: r.server.clone(), ..run }))
            .collect::<Result<_, _>>()?;
        if !curves.is_empty() {
            panels.push((case.key.clone(), curves));
        }
    }
    let path = opts.out.join(format!("{}-plot.svg", opts.prefix));
    let title = format!("loadgen {}: latency from intended send time, by percentile", opts.prefix);
    plot::panels(&panels, &path, &title)
}

/// The suite's printed report: one table per case, the floor beside it.
pub fn suite_report(
    opts: &BenchOptions,
    runs: &[SuiteRun],
    floors: &Floors,
    skipped: &[String],
    commit: Option<&str>,
) -> String {
    let mut out = String::new();
    let m = report::Machine::detect();
    let cpu = |c: Option<usize>| c.map(|c| format!("CPU {c}")).unwrap_or_else(|| "no CPU (unpinned)".into());
    out.push_str(&format!(
        "# loadgen {}: {} ({} CPUs, {}), load generator pinned to {}, server to {}, warm-up {:?} and {:?} measured per run, commit {}\n\n",
        opts.prefix,
        m.cpu_model,
        m.cpus,
        m.kernel,
        cpu(opts.client_cpu),
        cpu(opts.server_cpu),
        opts.warmup,
        opts.duration,
        commit.unwrap_or("unknown (not a git checkout)")
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
        if case.hardlight_only() {
            let service = case.scenario.as_ref().map(Scenario::name).unwrap_or_default();
            let peers = if opts.peers { "the peers were not run here" } else { "--peers would not run them here" };
            out.push_str(&format!(
                "\n- HardLight only: no peer server serves the `{service}` scenario's service, so {peers}.\n"
            ));
        }
        for r in &rows {
            for w in &r.summary.warnings {
                out.push_str(&format!("\n- {} warning: {w}", r.server));
            }
        }
        out.push_str("\n\n");
    }
    out.push_str(crate::table::LEGEND);
    out.push_str(&format!("\n{}\n", floors.lines()));
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
