//! `loadgen`: see `loadgen help`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use hardlight_loadgen::args::{parse_rates, Args};
use hardlight_loadgen::compare::{self, Run};
use hardlight_loadgen::cpu::ServerCpuSource;
use hardlight_loadgen::engine::{Arrival, Mode, RunConfig};
use hardlight_loadgen::report::RunMeta;
use hardlight_loadgen::scenario::Scenario;
use hardlight_loadgen::server::{self, ShardPlacement};
use hardlight_loadgen::suite::{self, BenchOptions, Floors};
use hardlight_loadgen::ws::Target;

const HELP: &str = "\
loadgen: load generator for HardLight and plain WebSocket servers (loopback only)

USAGE
  loadgen bench [--quick] [--peers] [--peer-bin-dir DIR] [--client-cpu N] [--server-cpu N]
                [--out DIR] [--name PREFIX] [--warmup S] [--duration S] [--floor-secs S] [--spin]
                [--wait-quiet S] [--retries N] [--spin-below-us N] [--cases K1,K2] [--no-server-syscalls]
                [--backend glommio|ring]
      Starts the HardLight server in-process (pinned to --server-cpu, default 1), runs the standard
      suite from --client-cpu (default 0): closed loop 64x1 and 64x16 echo64, open loop 100k/s
      and 50k/s Poisson over 64 connections (--cases picks some: closed-64x1, closed-64x16,
      open-100k-64, open-50k-64); prints a table with the latency floor and writes results under
      --out (default results/). --quick: about 10 s instead of about 75 s. --peers: also runs
      baseline-tokio (echo64) and the echo peers echo-tokio-tungstenite, echo-fastwebsockets and
      echo-tokio-websockets (raw-echo 64 B) from --peer-bin-dir (default target/release), pinned
      to the server CPU, with ratios against baseline-tokio.
      --wait-quiet S: before every run, wait (at most S seconds) until both CPUs are under 10%
      busy, since other work on a shared machine contaminates every figure (each run reports
      it anyway); --retries N runs a contaminated run again, at most N times.
      --spin busy-polls instead of sleeping; --spin-below-us N busy-polls only when the next
      open-loop send is due within N us (waking from a sleep costs tens of us on a VM).

  loadgen run [--url ws://127.0.0.1:PORT/] [--server-pid PID] [--scenario echo64|echo|add|raw-echo|state|fanout]
              [--size BYTES] [--mode closed|open|sweep] [--connections C] [--in-flight K]
              [--rate R] [--rates R1,R2,..] [--arrival poisson|constant] [--warmup S] [--duration S]
              [--drain S] [--client-cpu N] [--server-cpu N] [--spin] [--spin-below-us N]
              [--name NAME] [--out DIR] [--server-spin-us N]
              [--floor-secs S] [--no-progress] [--no-server-syscalls] [--backend glommio|ring]
      One run (or a sweep of open-loop rates) against --url, or against the embedded server
      when --url is absent. Rates take k/M suffixes (100k, 1.5M). Defaults: echo64, closed,
      64 connections, 1 in flight, warmup 1 s, duration 10 s. --server-spin-us N: the embedded
      server's shard busy-polls N us before parking (glommio's spin_before_park).
      state: every call changes the connection's state (the embedded server serves Stateful);
      the client checks that each call's STATE message arrives before its response.
      fanout: connection 0 emits (closed loop, or --rate emits/s), every other connection
      receives each event (the embedded server serves Fan): calls/s counts deliveries.
      Server syscalls/call are counted with perf on the server's threads (see loadgen/README.md);
      --no-server-syscalls skips it (the tracepoint slows every syscall a little).

  loadgen serve [--listen 127.0.0.1:9000] [--cpu N] [--for S] [--backend glommio|ring]
      Runs the embedded HardLight Bench server alone; prints `listening on ADDR`.
      --backend (bench, run, serve): the embedded server's event loop, glommio (default) or
      ring (HardLight's own io_uring loop).

  loadgen compare RUN_DIR_OR_HGRM... [--plot out.svg] [--title T] [--log-y]
      Percentiles side by side with ratios against the first run; --plot writes an SVG of the
      percentile distributions (x: 1/(1-percentile), log scale).
";

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1);
    let cmd = argv.next().unwrap_or_else(|| "help".into());
    let args = Args::parse(argv);
    let r = match cmd.as_str() {
        "bench" => cmd_bench(args),
        "run" => cmd_run(args),
        "serve" => cmd_serve(args),
        "compare" => cmd_compare(args),
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n\n{HELP}")),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

fn cpu_opt(args: &mut Args, name: &str, default: usize) -> Result<Option<usize>, String> {
    match args.opt_str(name)?.as_deref() {
        None => Ok(Some(default)),
        Some("none") | Some("-") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|e| format!("--{name} {v}: {e}")),
    }
}

fn cmd_bench(mut args: Args) -> Result<(), String> {
    let quick = args.flag("quick");
    let mut o = BenchOptions::new(quick);
    o.peers = args.flag("peers");
    o.spin = args.flag("spin");
    o.progress = !args.flag("no-progress");
    o.count_server_syscalls = !args.flag("no-server-syscalls");
    if let Some(d) = args.opt_str("peer-bin-dir")? {
        o.peer_bin_dir = PathBuf::from(d);
    }
    o.client_cpu = cpu_opt(&mut args, "client-cpu", 0)?;
    o.server_cpu = cpu_opt(&mut args, "server-cpu", 1)?;
    if let Some(d) = args.opt_str("out")? {
        o.out = PathBuf::from(d);
    }
    if let Some(n) = args.opt_str("name")? {
        o.prefix = n;
    }
    if let Some(w) = args.opt_secs("warmup")? {
        o.warmup = w;
    }
    if let Some(d) = args.opt_secs("duration")? {
        o.duration = d;
    }
    if let Some(f) = args.opt_secs("floor-secs")? {
        o.floor = f;
    }
    if let Some(w) = args.opt_secs("wait-quiet")? {
        o.wait_quiet = w;
    }
    if let Some(c) = args.opt_str("cases")? {
        o.cases = suite::select_cases(&c)?;
    }
    if let Some(n) = args.opt::<usize>("retries")? {
        o.retries = n;
    }
    if let Some(us) = args.opt::<u64>("spin-below-us")? {
        o.spin_below = Duration::from_micros(us);
    }
    server::set_backend(&args.get("backend", "glommio".to_string())?)?;
    args.finish()?;
    o.command = command_line();
    let (_, text) = suite::bench(&o)?;
    print!("{text}");
    eprintln!("results written under {}/{}-*", o.out.display(), o.prefix);
    Ok(())
}

fn cmd_run(mut args: Args) -> Result<(), String> {
    let url = args.opt_str("url")?;
    let server_pid: Option<u32> = args.opt("server-pid")?;
    let size: Option<usize> = args.opt("size")?;
    let scenario = Scenario::parse(&args.get("scenario", "echo64".to_string())?, size)?;
    let mode = args.get("mode", "closed".to_string())?;
    let connections: usize = args.get("connections", 64)?;
    let in_flight: usize = args.get("in-flight", 1)?;
    let rate = args.opt_rate("rate")?;
    let rates = args.opt_str("rates")?.map(|r| parse_rates(&r)).transpose()?;
    let arrival = Arrival::parse(&args.get("arrival", "poisson".to_string())?)?;
    let warmup = args.opt_secs("warmup")?.unwrap_or(Duration::from_secs(1));
    let duration = args.opt_secs("duration")?.unwrap_or(Duration::from_secs(10));
    let drain = args.opt_secs("drain")?.unwrap_or(Duration::from_secs(2));
    let client_cpu = cpu_opt(&mut args, "client-cpu", 0)?;
    let server_cpu = cpu_opt(&mut args, "server-cpu", 1)?;
    let spin = args.flag("spin");
    let spin_below = Duration::from_micros(args.get("spin-below-us", 0u64)?);
    let progress = !args.flag("no-progress");
    let out = PathBuf::from(args.get("out", "results".to_string())?);
    let floor_secs = args.opt_secs("floor-secs")?.unwrap_or(Duration::from_secs(1));
    let name = args.opt_str("name")?;
    let server_spin = args.opt::<u64>("server-spin-us")?.map(Duration::from_micros);
    let count_syscalls = !args.flag("no-server-syscalls");
    server::set_backend(&args.get("backend", "glommio".to_string())?)?;
    args.finish()?;

    let floors = (!floor_secs.is_zero()).then(|| Floors::measure(client_cpu, floor_secs));
    if let Some(f) = &floors {
        eprintln!("{}", f.lines());
    }

    let (target, source, server_label, _embedded) = match &url {
        Some(u) => {
            let t = Target::parse_url(u)?;
            let src = server_pid.map(ServerCpuSource::Pid).unwrap_or(ServerCpuSource::None);
            (t, src, u.clone(), None)
        }
        None => {
            let placement = server_cpu.map(ShardPlacement::Cpu).unwrap_or(ShardPlacement::Unpinned);
            let service = server::EmbeddedService::for_scenario(&scenario);
            let h = server::start_embedded_for("127.0.0.1:0".parse().unwrap(), placement, server_spin, service)?;
            let t = Target::at(h.local_addr())?;
            (t, server::embedded_cpu_source(), "hardlight".to_string(), Some(h))
        }
    };
    let mode_v = match mode.as_str() {
        "closed" => Mode::Closed { in_flight },
        "open" => Mode::Open { rate: rate.ok_or("--mode open needs --rate")?, arrival },
        "sweep" => Mode::Open { rate: 1.0, arrival },
        o => return Err(format!("unknown --mode `{o}` (closed, open, sweep)")),
    };
    let default_name = match mode_v {
        Mode::Closed { in_flight } => format!("run-{}-closed-{connections}x{in_flight}", scenario.name()),
        Mode::Open { rate, .. } if mode == "open" => {
            format!("run-{}-open-{}-{connections}", scenario.name(), rate as u64)
        }
        _ => format!("run-{}-sweep-{connections}", scenario.name()),
    };
    let name = name.unwrap_or(default_name);
    let mut cfg = RunConfig::new(name.clone(), target, scenario);
    cfg.connections = connections;
    cfg.mode = mode_v;
    cfg.warmup = warmup;
    cfg.duration = duration;
    cfg.drain = drain;
    cfg.client_cpu = client_cpu;
    cfg.spin = spin;
    cfg.spin_below = spin_below;
    cfg.progress = progress;
    cfg.server_cpu = source;
    cfg.count_server_syscalls = count_syscalls;
    let meta = RunMeta {
        run: name.clone(),
        server: server_label,
        server_cpu: if url.is_some() { None } else { server_cpu },
        floor: floors.as_ref().map(|f| f.tight.clone()),
        floor_default_slack: floors.as_ref().map(|f| f.default_slack.clone()),
        command: command_line(),
    };
    if mode == "sweep" {
        let rates = rates.ok_or("--mode sweep needs --rates R1,R2,...")?;
        let (_, table) = suite::sweep(&cfg, &rates, arrival, &out, &meta)?;
        print!("{table}");
    } else {
        let (s, dir) = suite::run_and_write(&cfg, &out, &meta)?;
        print!("{}", suite::runs_table(&[(name.clone(), &s)], None));
        eprintln!("results written to {}", dir.display());
    }
    if let Some(f) = &floors {
        println!("{}", f.lines());
    }
    Ok(())
}

fn cmd_serve(mut args: Args) -> Result<(), String> {
    let listen: std::net::SocketAddr = args.get("listen", "127.0.0.1:9000".parse().unwrap())?;
    if !listen.ip().is_loopback() {
        return Err(format!("--listen {listen}: only loopback addresses"));
    }
    let cpu = cpu_opt(&mut args, "cpu", 1)?;
    let for_secs = args.opt_secs("for")?;
    server::set_backend(&args.get("backend", "glommio".to_string())?)?;
    args.finish()?;
    let placement = cpu.map(ShardPlacement::Cpu).unwrap_or(ShardPlacement::Unpinned);
    let h = server::start_embedded(listen, placement)?;
    println!("listening on {}", h.local_addr());
    match for_secs {
        Some(d) => {
            std::thread::sleep(d);
            h.shutdown();
        }
        // SIGTERM/SIGINT drain the server gracefully.
        None => {
            h.run_until_signal().map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn cmd_compare(mut args: Args) -> Result<(), String> {
    let plot = args.opt_str("plot")?;
    let title = args.get("title", "latency by percentile".to_string())?;
    let log_y = args.flag("log-y");
    let mut paths = Vec::new();
    while let Some(p) = args.next_positional() {
        paths.push(PathBuf::from(p));
    }
    args.finish()?;
    if paths.is_empty() {
        return Err("compare needs at least one run directory or .hgrm file".into());
    }
    let runs = paths.iter().map(|p| Run::load(p)).collect::<Result<Vec<_>, _>>()?;
    print!("{}", compare::table(&runs));
    for r in &runs {
        if let Some(f) = r.summary.as_ref().and_then(|s| s.floor.as_ref()) {
            println!("{}: {}", r.name, f.line());
        }
    }
    if let Some(p) = plot {
        let p = compare::plot(&runs, &PathBuf::from(p), &title, log_y)?;
        eprintln!("plot written to {}", p.display());
    }
    Ok(())
}
