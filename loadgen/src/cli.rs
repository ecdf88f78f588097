//! The command line, declared with clap's derive so that every subcommand
//! answers `--help` and a typo is an error that names it.
//!
//! The flag names are the ones the hand-written parser this replaced
//! accepted (scripts and the READMEs use them); what changed is the default
//! of `--out` (an untracked folder, [`DEFAULT_OUT`]) and that help works.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::engine::Arrival;
use crate::suite::{self, BenchOptions};

/// Where results go unless `--out` says otherwise: under `target/`, which
/// git ignores, so that running the main job on a clean clone leaves the
/// committed `results/` alone (refresh those with `--out results`).
pub const DEFAULT_OUT: &str = "target/loadgen";

const EXAMPLES: &str = "\
Examples:
  loadgen bench                         the standard suite (about 110 s), results under target/loadgen/
  loadgen bench --quick                 the same in about 13 s
  loadgen bench --peers --out results   also the peer servers; refreshes the committed results/
  loadgen run --mode open --rate 50k    one open-loop run against the embedded server
  loadgen compare DIR_A DIR_B --plot ab.svg

Every subcommand takes --help. Method and figures: loadgen/README.md.";

/// `loadgen`: load generator for HardLight and plain WebSocket servers (loopback only).
#[derive(Debug, Parser)]
#[command(name = "loadgen", after_help = EXAMPLES, arg_required_else_help = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The standard suite against the embedded HardLight server (and the peers with --peers):
    /// a latency table per case and a plot.
    #[command(long_about = BENCH_ABOUT)]
    Bench(BenchArgs),
    /// One run (or a sweep of open-loop rates) against --url, or against the embedded server.
    #[command(long_about = RUN_ABOUT)]
    Run(RunArgs),
    /// The embedded HardLight Bench server alone; prints `listening on ADDR`.
    Serve(ServeArgs),
    /// Percentiles of runs side by side, with ratios against the first, and a plot.
    #[command(long_about = COMPARE_ABOUT)]
    Compare(CompareArgs),
    /// The reconnect storm: N clients, the server process restarted; time until all are
    /// reconnected and resumed, the server's CPU, and other-shard probe latency.
    Storm(StormArgs),
}

/// `loadgen storm` (see `crate::storm`).
#[derive(Debug, Args)]
pub struct StormArgs {
    /// Clients in the storm.
    #[arg(long, default_value_t = 10_000)]
    pub clients: usize,
    /// Established probe clients on the other shard.
    #[arg(long, default_value_t = 16)]
    pub probes: usize,
    /// CPU of the clients (`none`: unpinned).
    #[arg(long, value_name = "N|none", default_value = "0", value_parser = parse_cpu)]
    pub client_cpu: Cpu,
    /// CPU of the servers' shards (`none`: unpinned).
    #[arg(long, value_name = "N|none", default_value = "1", value_parser = parse_cpu)]
    pub server_cpu: Cpu,
    /// Reconnect backoff: first delay, ms.
    #[arg(long, default_value_t = 100)]
    pub backoff_initial_ms: u64,
    /// Reconnect backoff: cap, ms.
    #[arg(long, default_value_t = 10_000)]
    pub backoff_max_ms: u64,
}

const BENCH_ABOUT: &str = "\
Starts the HardLight server in-process (pinned to --server-cpu), measures the latency floor,
then runs the standard suite from --client-cpu: closed loop 64x1 and 64x16 echo64, open loop
100k/s and 50k/s Poisson over 64 connections, and two HardLight-only cases: `state` (a STATE
message before every response, closed 64x16) and `fanout` (one emitter, 63 subscribers, 500
emits/s). Prints one table per case, writes every run's histograms and summary under --out,
the tables to --out/PREFIX-table.md, and ends with a plot of every case's latency
distribution (--out/PREFIX-plot.svg), naming both files.";

const RUN_ABOUT: &str = "\
One run (or a sweep of open-loop rates) against --url, or against the embedded server when
--url is absent. Rates take k/M suffixes (100k, 1.5M).
state: every call changes the connection's state (the embedded server serves Stateful); the
client checks that each call's STATE message arrives before its response.
fanout: connection 0 emits (closed loop, or --rate emits/s), every other connection receives
each event (the embedded server serves Fan): calls/s counts deliveries.
Server syscalls/call are counted with perf on the server's threads (see loadgen/README.md).";

const COMPARE_ABOUT: &str = "\
Percentiles side by side with ratios against the first run; --plot writes an SVG of the
percentile distributions (x: 1/(1-percentile), log scale, as HdrHistogram's plotter draws them).
Inputs are run directories or bare .hgrm files (wrk2's too).";

/// `loadgen bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// About 13 s instead of about 110 s (shorter warm-up, window and floor); names runs `quick-*`.
    #[arg(long)]
    pub quick: bool,
    /// Also run the peers: baseline-tokio (echo64) and the echo servers echo-tokio-tungstenite,
    /// echo-fastwebsockets and echo-tokio-websockets (raw-echo 64 B), with ratios against
    /// baseline-tokio, and HardLight's own plain WebSocket echo on the same backend
    /// (hardlight-plain-echo, raw-echo 64 B: the transport without the RPC layer). They cannot
    /// serve the state and fanout cases.
    #[arg(long)]
    pub peers: bool,
    /// Where the peer binaries are (`cargo build --release -p hardlight-bench --bins`).
    #[arg(long, value_name = "DIR", default_value = "target/release")]
    pub peer_bin_dir: PathBuf,
    /// CPU of the load generator's thread (`none`: unpinned).
    #[arg(long, value_name = "N|none", default_value = "0", value_parser = parse_cpu)]
    pub client_cpu: Cpu,
    /// CPU of the server (`none`: unpinned).
    #[arg(long, value_name = "N|none", default_value = "1", value_parser = parse_cpu)]
    pub server_cpu: Cpu,
    /// Results folder; the default is git-ignored. `--out results` refreshes the committed results.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_OUT)]
    pub out: PathBuf,
    /// Prefix of run names (default `bench`, or `quick` with --quick).
    #[arg(long, value_name = "PREFIX")]
    pub name: Option<String>,
    /// Warm-up per run, seconds (default 2, quick 0.4).
    #[arg(long, value_name = "S", value_parser = parse_secs)]
    pub warmup: Option<Duration>,
    /// Measured window per run, seconds (default 15, quick 1.5).
    #[arg(long, value_name = "S", value_parser = parse_secs)]
    pub duration: Option<Duration>,
    /// Time spent measuring the latency floor, seconds (default 4, quick 1).
    #[arg(long, value_name = "S", value_parser = parse_secs)]
    pub floor_secs: Option<Duration>,
    /// Busy-poll instead of sleeping (the client's core then shows 100% busy).
    #[arg(long)]
    pub spin: bool,
    /// Open loop: busy-poll only when the next send is due within N us.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub spin_below_us: u64,
    /// Before every run, wait at most S seconds for both CPUs to go under 10% busy.
    #[arg(long, value_name = "S", value_parser = parse_secs)]
    pub wait_quiet: Option<Duration>,
    /// Run a run contaminated by other work again, at most N times.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub retries: usize,
    /// Only these cases, comma-separated (closed-64x1, closed-64x16, open-100k-64, open-50k-64,
    /// open-20k-64, open-2k-64, state-closed-64x16, fanout-open-500-64).
    #[arg(long, value_name = "K1,K2")]
    pub cases: Option<String>,
    /// Do not count the server's system calls with perf (its tracepoint slows every syscall a little).
    #[arg(long)]
    pub no_server_syscalls: bool,
    /// The embedded server's event loop: `ring` (HardLight's own io_uring
    /// loop, the default) or `glommio`.
    #[arg(long, value_name = "ring|glommio", default_value = "ring")]
    pub backend: String,
    /// The embedded server with its Prometheus endpoint on (on a free
    /// loopback port, scraped once a second), for metrics-on/off A/Bs.
    #[arg(long)]
    pub metrics: bool,
    /// No progress line on stderr.
    #[arg(long)]
    pub no_progress: bool,
}

impl BenchArgs {
    /// The suite's options; `command` is the command line, for the summaries.
    pub fn options(&self, command: String) -> Result<BenchOptions, String> {
        let mut o = BenchOptions::new(self.quick);
        o.peers = self.peers;
        o.peer_bin_dir = self.peer_bin_dir.clone();
        o.client_cpu = self.client_cpu.0;
        o.server_cpu = self.server_cpu.0;
        o.out = self.out.clone();
        if let Some(n) = &self.name {
            o.prefix = n.clone();
        }
        o.warmup = self.warmup.unwrap_or(o.warmup);
        o.duration = self.duration.unwrap_or(o.duration);
        o.floor = self.floor_secs.unwrap_or(o.floor);
        o.spin = self.spin;
        o.spin_below = Duration::from_micros(self.spin_below_us);
        o.wait_quiet = self.wait_quiet.unwrap_or(o.wait_quiet);
        o.retries = self.retries;
        if let Some(c) = &self.cases {
            o.cases = suite::select_cases(c)?;
        }
        o.count_server_syscalls = !self.no_server_syscalls;
        o.progress = !self.no_progress;
        o.command = command;
        Ok(o)
    }
}

/// How `run` schedules requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RunMode {
    /// Keep --in-flight calls outstanding on every connection.
    Closed,
    /// --rate calls/s over all connections.
    Open,
    /// One open-loop run per rate of --rates, stopping at the first the server cannot sustain.
    Sweep,
}

/// `loadgen run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Server to measure, `ws://127.0.0.1:PORT/` (loopback only); absent: the embedded server.
    #[arg(long)]
    pub url: Option<String>,
    /// Process id of an external server, to read its CPU time and count its syscalls.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// echo64, echo, add, raw-echo, state or fanout.
    #[arg(long, default_value = "echo64")]
    pub scenario: String,
    /// Payload size of `echo` and `raw-echo` (bytes).
    #[arg(long, value_name = "BYTES")]
    pub size: Option<usize>,
    /// Closed loop, open loop, or a sweep of open-loop rates.
    #[arg(long, value_enum, default_value = "closed")]
    pub mode: RunMode,
    /// Connections.
    #[arg(long, value_name = "C", default_value_t = 64)]
    pub connections: usize,
    /// Closed loop: calls in flight per connection (1 to 256).
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub in_flight: usize,
    /// Open loop: calls/s over all connections (k/M suffixes).
    #[arg(long, value_name = "R", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Sweep: the rates, comma-separated (50k,100k,200k).
    #[arg(long, value_name = "R1,R2,..", value_parser = parse_rate, value_delimiter = ',')]
    pub rates: Option<Vec<f64>>,
    /// Open loop: spacing of intended send times (poisson or constant).
    #[arg(long, default_value = "poisson", value_parser = Arrival::parse)]
    pub arrival: Arrival,
    /// Warm-up, seconds.
    #[arg(long, value_name = "S", default_value = "1", value_parser = parse_secs)]
    pub warmup: Duration,
    /// Measured window, seconds.
    #[arg(long, value_name = "S", default_value = "10", value_parser = parse_secs)]
    pub duration: Duration,
    /// Longest wait for answers after the window, seconds.
    #[arg(long, value_name = "S", default_value = "2", value_parser = parse_secs)]
    pub drain: Duration,
    /// CPU of the load generator's thread (`none`: unpinned).
    #[arg(long, value_name = "N|none", default_value = "0", value_parser = parse_cpu)]
    pub client_cpu: Cpu,
    /// CPU of the embedded server (`none`: unpinned).
    #[arg(long, value_name = "N|none", default_value = "1", value_parser = parse_cpu)]
    pub server_cpu: Cpu,
    /// Busy-poll instead of sleeping.
    #[arg(long)]
    pub spin: bool,
    /// Open loop: busy-poll only when the next send is due within N us.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub spin_below_us: u64,
    /// Run name (default from scenario, mode and connections).
    #[arg(long)]
    pub name: Option<String>,
    /// Results folder; the default is git-ignored.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_OUT)]
    pub out: PathBuf,
    /// The embedded server's shard busy-polls N us before parking (glommio's spin_before_park).
    #[arg(long, value_name = "N")]
    pub server_spin_us: Option<u64>,
    /// Time spent measuring the latency floor first, seconds (0: skip).
    #[arg(long, value_name = "S", default_value = "1", value_parser = parse_secs)]
    pub floor_secs: Duration,
    /// No progress line on stderr.
    #[arg(long)]
    pub no_progress: bool,
    /// Do not count the server's system calls with perf.
    #[arg(long)]
    pub no_server_syscalls: bool,
    /// The embedded server's event loop: `ring` (HardLight's own io_uring
    /// loop, the default) or `glommio`.
    #[arg(long, value_name = "ring|glommio", default_value = "ring")]
    pub backend: String,
    /// The embedded server with its Prometheus endpoint on (on a free
    /// loopback port, scraped once a second), for metrics-on/off A/Bs.
    #[arg(long)]
    pub metrics: bool,
}

/// `loadgen serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: std::net::SocketAddr,
    /// CPU of the shard (`none`: unpinned).
    #[arg(long, value_name = "N|none", default_value = "1", value_parser = parse_cpu)]
    pub cpu: Cpu,
    /// Stop after S seconds (default: run until killed).
    #[arg(long = "for", value_name = "S", value_parser = parse_secs)]
    pub for_secs: Option<Duration>,
    /// The embedded server's event loop: `ring` (HardLight's own io_uring
    /// loop, the default) or `glommio`.
    #[arg(long, value_name = "ring|glommio", default_value = "ring")]
    pub backend: String,
    /// The service: `bench` (echo, add) or `fan` (topic subscribe and emit).
    #[arg(long, value_name = "bench|fan", default_value = "bench")]
    pub service: String,
    /// The embedded server with its Prometheus endpoint on (on a free
    /// loopback port, scraped once a second), for metrics-on/off A/Bs.
    #[arg(long)]
    pub metrics: bool,
}

/// `loadgen compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Run directories (with latency.hgrm and summary.json) or .hgrm files; the first is the base.
    #[arg(required = true, value_name = "RUN_DIR_OR_HGRM")]
    pub runs: Vec<PathBuf>,
    /// Write an SVG of the percentile distributions here.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// The plot's title.
    #[arg(long, default_value = "latency by percentile")]
    pub title: String,
    /// Logarithmic latency axis.
    #[arg(long)]
    pub log_y: bool,
}

/// A CPU to pin to, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cpu(pub Option<usize>);

/// `N`, or `none` (or `-`) for unpinned.
pub fn parse_cpu(s: &str) -> Result<Cpu, String> {
    match s {
        "none" | "-" => Ok(Cpu(None)),
        v => v.parse().map(|n| Cpu(Some(n))).map_err(|e| format!("`{v}`: {e} (a CPU number or `none`)")),
    }
}

/// Seconds, fractions allowed, between 0 and 3600.
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=3600.0).contains(&v) => Ok(Duration::from_secs_f64(v)),
        Ok(v) => Err(format!("{v}: want seconds between 0 and 3600")),
        Err(_) => Err(format!("`{s}` is not a number of seconds")),
    }
}

/// Parses a rate: a number with an optional `k` (thousand) or `M` (million) suffix.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix(['k', 'K']) {
        (n, 1e3)
    } else if let Some(n) = t.strip_suffix(['m', 'M']) {
        (n, 1e6)
    } else {
        (t, 1.0)
    };
    let v: f64 = num.parse().map_err(|_| format!("`{s}` is not a rate (examples: 2500, 100k, 1.5M)"))?;
    let r = v * mult;
    if !(r.is_finite() && r > 0.0 && r <= 1e8) {
        return Err(format!("rate `{s}` out of range (0, 100M]"));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("loadgen").chain(args.split_whitespace()))
    }

    #[test]
    fn the_declaration_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn default_output_is_outside_the_committed_results() {
        let Command::Bench(b) = parse("bench").unwrap().command else { panic!("bench") };
        let o = b.options(String::new()).unwrap();
        assert_eq!(o.out, PathBuf::from(DEFAULT_OUT));
        assert!(!o.out.starts_with("results"), "{}", o.out.display());
        let Command::Run(r) = parse("run").unwrap().command else { panic!("run") };
        assert!(!r.out.starts_with("results"), "{}", r.out.display());
        // The committed results are refreshed by saying so.
        let Command::Bench(b) = parse("bench --out results").unwrap().command else { panic!("bench") };
        assert_eq!(b.options(String::new()).unwrap().out, PathBuf::from("results"));
    }

    #[test]
    fn flag_names_are_the_ones_scripts_use() {
        let c = parse(
            "bench --quick --peers --peer-bin-dir /x --client-cpu none --server-cpu 1 --out o --name n \
             --warmup 0.5 --duration 2 --floor-secs 0 --spin --spin-below-us 30 --wait-quiet 120 --retries 2 \
             --cases closed-64x1,open-50k-64 --no-server-syscalls --no-progress",
        )
        .unwrap();
        let Command::Bench(b) = c.command else { panic!("bench") };
        let o = b.options("cmd".into()).unwrap();
        assert_eq!((o.client_cpu, o.server_cpu, o.prefix.as_str()), (None, Some(1), "n"));
        assert_eq!(
            (o.warmup, o.duration, o.floor),
            (Duration::from_millis(500), Duration::from_secs(2), Duration::ZERO)
        );
        assert_eq!((o.wait_quiet, o.retries, o.spin_below), (Duration::from_secs(120), 2, Duration::from_micros(30)));
        assert_eq!(o.cases.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(), ["closed-64x1", "open-50k-64"]);
        assert!(o.peers && o.spin && !o.count_server_syscalls && !o.progress);

        let c = parse(
            "run --url ws://127.0.0.1:9/ --server-pid 7 --scenario raw-echo --size 512 --mode sweep --connections 8 \
             --in-flight 4 --rate 1.5M --rates 50k,100k --arrival constant --warmup 0 --duration 1 --drain 0.5 \
             --client-cpu 0 --server-cpu none --spin --spin-below-us 5 --name x --out o --server-spin-us 100 \
             --floor-secs 0 --no-progress --no-server-syscalls",
        )
        .unwrap();
        let Command::Run(r) = c.command else { panic!("run") };
        assert_eq!(r.rates, Some(vec![50e3, 100e3]));
        assert_eq!((r.rate, r.mode, r.arrival), (Some(1.5e6), RunMode::Sweep, Arrival::Constant));
        assert_eq!((r.client_cpu, r.server_cpu), (Cpu(Some(0)), Cpu(None)));

        let Command::Serve(s) = parse("serve --listen 127.0.0.1:0 --cpu none --for 1").unwrap().command else {
            panic!("serve")
        };
        assert_eq!((s.cpu, s.for_secs), (Cpu(None), Some(Duration::from_secs(1))));
        let Command::Compare(c) = parse("compare a b/latency.hgrm --plot p.svg --title t --log-y").unwrap().command
        else {
            panic!("compare")
        };
        assert_eq!(c.runs.len(), 2);
        assert!(c.log_y);
    }

    #[test]
    fn typos_and_bad_values_are_errors_that_name_them() {
        let e = parse("run --typo 3").unwrap_err().to_string();
        assert!(e.contains("--typo"), "{e}");
        let e = parse("run --rate fast").unwrap_err().to_string();
        assert!(e.contains("not a rate"), "{e}");
        let e = parse("bench --duration 99999").unwrap_err().to_string();
        assert!(e.contains("between 0 and 3600"), "{e}");
        assert!(parse("compare").is_err(), "compare needs at least one run");
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("2500").unwrap(), 2500.0);
        assert_eq!(parse_rate("1.5M").unwrap(), 1_500_000.0);
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("-5k").is_err());
    }
}
