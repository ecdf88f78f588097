//! `loadgen`: see `loadgen --help`; the declaration is in `cli.rs`.

use std::process::ExitCode;

use clap::Parser;
use hardlight_loadgen::cli::{BenchArgs, Cli, Command, CompareArgs, RunArgs, RunMode, ServeArgs, StormArgs};
use hardlight_loadgen::compare::{self, Run};
use hardlight_loadgen::cpu::ServerCpuSource;
use hardlight_loadgen::engine::{Mode, RunConfig};
use hardlight_loadgen::report::{self, RunMeta};
use hardlight_loadgen::scenario::Scenario;
use hardlight_loadgen::server::{self, ShardPlacement};
use hardlight_loadgen::suite::{self, Floors};
use hardlight_loadgen::ws::Target;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Bench(a) => cmd_bench(a),
        Command::Run(a) => cmd_run(a),
        Command::Serve(a) => cmd_serve(a),
        Command::Compare(a) => cmd_compare(a),
        Command::Storm(a) => cmd_storm(a),
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

fn cmd_bench(args: BenchArgs) -> Result<(), String> {
    server::set_backend(&args.backend)?;
    server::set_metrics(args.metrics);
    let o = args.options(command_line())?;
    let done = suite::bench(&o)?;
    print!("{}", done.text);
    // The last lines say where everything went, the plot last.
    println!("results: {}/{}-*/ (one folder per run)", o.out.display(), o.prefix);
    println!("tables: {}", done.table.display());
    match &done.plot {
        Ok(p) => println!("plot: {}", p.display()),
        Err(e) => println!("plot: none ({e})"),
    }
    Ok(())
}

fn cmd_run(a: RunArgs) -> Result<(), String> {
    server::set_backend(&a.backend)?;
    server::set_metrics(a.metrics);
    // Before anything is written (results under a tracked folder would make it -dirty).
    let commit = report::git_commit();
    let scenario = Scenario::parse(&a.scenario, a.size)?;
    let (url, client_cpu, server_cpu) = (a.url.clone(), a.client_cpu.0, a.server_cpu.0);
    let server_spin = a.server_spin_us.map(std::time::Duration::from_micros);
    // A bad URL fails before the floor is measured.
    let external = url.as_deref().map(Target::parse_url).transpose()?;
    let floors = (!a.floor_secs.is_zero()).then(|| Floors::measure(client_cpu, a.floor_secs));
    if let Some(f) = &floors {
        eprintln!("{}", f.lines());
    }

    let (target, source, server_label, _embedded) = match (external, &url) {
        (Some(t), Some(u)) => {
            let src = a.server_pid.map(ServerCpuSource::Pid).unwrap_or(ServerCpuSource::None);
            (t, src, u.clone(), None)
        }
        _ => {
            let placement = server_cpu.map(ShardPlacement::Cpu).unwrap_or(ShardPlacement::Unpinned);
            let service = server::EmbeddedService::for_scenario(&scenario);
            let h = server::start_embedded_for("127.0.0.1:0".parse().unwrap(), placement, server_spin, service)?;
            let t = Target::at(h.local_addr())?;
            (t, server::embedded_cpu_source(), "hardlight".to_string(), Some(h))
        }
    };
    let connections = a.connections;
    let mode_v = match a.mode {
        RunMode::Closed => Mode::Closed { in_flight: a.in_flight },
        RunMode::Open => Mode::Open { rate: a.rate.ok_or("--mode open needs --rate")?, arrival: a.arrival },
        RunMode::Sweep => Mode::Open { rate: 1.0, arrival: a.arrival },
    };
    let default_name = match (a.mode, mode_v) {
        (_, Mode::Closed { in_flight }) => format!("run-{}-closed-{connections}x{in_flight}", scenario.name()),
        (RunMode::Open, Mode::Open { rate, .. }) => {
            format!("run-{}-open-{}-{connections}", scenario.name(), rate as u64)
        }
        _ => format!("run-{}-sweep-{connections}", scenario.name()),
    };
    let name = a.name.clone().unwrap_or(default_name);
    let mut cfg = RunConfig::new(name.clone(), target, scenario);
    cfg.connections = connections;
    cfg.mode = mode_v;
    cfg.warmup = a.warmup;
    cfg.duration = a.duration;
    cfg.drain = a.drain;
    cfg.client_cpu = client_cpu;
    cfg.spin = a.spin;
    cfg.spin_below = std::time::Duration::from_micros(a.spin_below_us);
    cfg.progress = !a.no_progress;
    cfg.server_cpu = source;
    cfg.count_server_syscalls = !a.no_server_syscalls;
    let meta = RunMeta {
        run: name.clone(),
        server: server_label,
        server_cpu: if url.is_some() { None } else { server_cpu },
        floor: floors.as_ref().map(|f| f.tight.clone()),
        floor_default_slack: floors.as_ref().map(|f| f.default_slack.clone()),
        command: command_line(),
        git_commit: commit,
    };
    let out = &a.out;
    if a.mode == RunMode::Sweep {
        let rates = a.rates.as_deref().ok_or("--mode sweep needs --rates R1,R2,...")?;
        let (_, table) = suite::sweep(&cfg, rates, a.arrival, out, &meta)?;
        print!("{table}");
    } else {
        let (s, dir) = suite::run_and_write(&cfg, out, &meta)?;
        print!("{}", suite::runs_table(&[(name.clone(), &s)], None));
        eprintln!("results written to {}", dir.display());
    }
    if let Some(f) = &floors {
        println!("{}", f.lines());
    }
    Ok(())
}

fn cmd_serve(a: ServeArgs) -> Result<(), String> {
    server::set_backend(&a.backend)?;
    server::set_metrics(a.metrics);
    let (listen, cpu, for_secs) = (a.listen, a.cpu.0, a.for_secs);
    if !listen.ip().is_loopback() {
        return Err(format!("--listen {listen}: only loopback addresses"));
    }
    let placement = cpu.map(ShardPlacement::Cpu).unwrap_or(ShardPlacement::Unpinned);
    let service = match a.service.as_str() {
        "bench" => server::EmbeddedService::Bench,
        "fan" => server::EmbeddedService::Fan,
        other => return Err(format!("--service {other}: expected bench or fan")),
    };
    let h = server::start_embedded_for(listen, placement, None, service)?;
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

fn cmd_storm(a: StormArgs) -> Result<(), String> {
    let o = hardlight_loadgen::storm::StormOptions {
        clients: a.clients,
        probes: a.probes,
        client_cpu: a.client_cpu.0,
        server_cpu: a.server_cpu.0,
        backoff: hardlight::client::Backoff {
            initial: std::time::Duration::from_millis(a.backoff_initial_ms),
            max: std::time::Duration::from_millis(a.backoff_max_ms),
            ..Default::default()
        },
        command: command_line(),
    };
    let report = hardlight_loadgen::storm::run(&o)?;
    print!("{}", report.text(&o));
    Ok(())
}

fn cmd_compare(a: CompareArgs) -> Result<(), String> {
    let (paths, plot, title, log_y) = (a.runs, a.plot, a.title, a.log_y);
    let runs = paths.iter().map(|p| Run::load(p)).collect::<Result<Vec<_>, _>>()?;
    print!("{}", compare::table(&runs));
    for r in &runs {
        if let Some(f) = r.summary.as_ref().and_then(|s| s.floor.as_ref()) {
            println!("{}: {}", r.name, f.line());
        }
    }
    if let Some(p) = plot {
        let p = compare::plot(&runs, &p, &title, log_y)?;
        eprintln!("plot written to {}", p.display());
    }
    Ok(())
}
