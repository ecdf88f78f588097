//! The `loadgen` binary: compare, run against an external server, and a
//! very short bench suite.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use common::EchoServer;
use hardlight_loadgen::compare::{self, Run};
use hardlight_loadgen::cpu::CpuTime;
use hardlight_loadgen::engine::{Interval, RunConfig, RunOutcome};
use hardlight_loadgen::report::{self, RunMeta, Summary};
use hardlight_loadgen::scenario::Scenario;
use hardlight_loadgen::ws::Target;
use hdrhistogram::Histogram;

fn loadgen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
}

/// Writes a synthetic run whose latencies are `scale` x (1..=1000 us).
fn synthetic_run(dir: &Path, name: &str, scale: u64) {
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
    for i in 1..=1000u64 {
        h.record(i * 1000 * scale).unwrap();
    }
    let cfg = RunConfig::new(name, Target::at("127.0.0.1:1".parse().unwrap()).unwrap(), Scenario::Echo64);
    let out = RunOutcome {
        latency: h.clone(),
        service: h.clone(),
        lateness: Histogram::new(3).unwrap(),
        intervals: vec![Interval { start: Duration::ZERO, length: Duration::from_secs(1), hist: h }],
        measured: Duration::from_secs(1),
        started_at: SystemTime::now(),
        sent: 1000,
        completed: 1000,
        failed: 0,
        mismatched: 0,
        incomplete: 0,
        unknown: 0,
        state_late: 0,
        disconnects: 0,
        disconnect_reason: None,
        client_cpu: CpuTime { total_ns: 100_000_000, user_ns: 0, sys_ns: 0 },
        server_cpu: Some(CpuTime { total_ns: 1_000_000 * scale, user_ns: 0, sys_ns: 0 }),
        cores: Vec::new(),
        syscalls: Default::default(),
        server_syscalls: Err("synthetic run".into()),
        pinned: false,
        timer_slack_ns: 1,
        connect_time: Duration::ZERO,
    };
    let meta = RunMeta { run: name.into(), server: "synthetic".into(), ..RunMeta::default() };
    let s = Summary::new(&cfg, &out, &meta);
    report::write_run(&dir.join(name), &cfg, &out, &s).unwrap();
}

#[test]
fn compare_prints_ratios_and_draws_an_svg() {
    let tmp = tempfile::tempdir().unwrap();
    synthetic_run(tmp.path(), "fast", 1);
    synthetic_run(tmp.path(), "slow", 2);
    let runs = vec![Run::load(&tmp.path().join("fast")).unwrap(), Run::load(&tmp.path().join("slow")).unwrap()];
    let table = compare::table(&runs);
    assert!(table.contains("| fast") && table.contains("| slow"), "{table}");
    assert!(table.contains("(2.00x)"), "the slow run's p50 is twice the fast one's:\n{table}");
    assert!(table.contains("(1.00x)"));
    let svg = tmp.path().join("plot/compare.svg");
    compare::plot(&runs, &svg, "test", false).unwrap();
    let text = fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg"), "{}", &text[..100.min(text.len())]);
    assert!(text.contains("fast") && text.contains("slow"), "legend names both runs");
    assert!(text.matches("<polyline").count() >= 2, "one curve per run");

    // The same through the binary, with a bare .hgrm file as the second input and a log y axis.
    let svg2 = tmp.path().join("cli.svg");
    let out = loadgen()
        .arg("compare")
        .arg(tmp.path().join("fast"))
        .arg(tmp.path().join("slow").join("latency.hgrm"))
        .args(["--log-y", "--plot"])
        .arg(&svg2)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("| fast") && stdout.contains("x)"), "{stdout}");
    assert!(fs::read_to_string(&svg2).unwrap().contains("<polyline"));
}

#[test]
fn run_against_an_external_echo_server_writes_results() {
    let server = EchoServer::start(None, Duration::ZERO);
    let tmp = tempfile::tempdir().unwrap();
    let out = loadgen()
        .args(["run", "--url", &format!("ws://{}/", server.addr)])
        .args(["--scenario", "raw-echo", "--size", "64", "--mode", "open", "--rate", "1k"])
        .args(["--connections", "2", "--warmup", "0.1", "--duration", "0.5", "--floor-secs", "0.1"])
        .args(["--client-cpu", "none", "--name", "ext", "--no-progress", "--server-pid"])
        .arg(std::process::id().to_string())
        .arg("--out")
        .arg(tmp.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("| ext") && stdout.contains("latency floor"), "{stdout}");
    let s = report::read_summary(&tmp.path().join("ext")).unwrap();
    assert_eq!(s.scenario, "raw-echo-64");
    assert_eq!(s.mode, "open");
    assert_eq!(s.offered_rate, Some(1000.0));
    assert!(s.completed >= 450 && s.completed <= 550, "{}", s.completed);
    assert!(s.server_cpu_s.is_some(), "--server-pid is read");
    assert!(s.floor.is_some() && s.floor_default_slack.is_some());
    assert!(tmp.path().join("ext/send-lateness.hgrm").is_file());
}

#[test]
fn bad_arguments_fail_with_a_message() {
    let out = loadgen().args(["run", "--url", "ws://10.1.2.3:80/"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
    let out = loadgen().args(["run", "--typo", "3"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--typo"));
    let out = loadgen().args(["run", "--scenario", "fanin"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("state, fanout"));
    let out = loadgen().arg("help").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("loadgen bench"));
}

#[test]
fn bench_suite_in_miniature() {
    let tmp = tempfile::tempdir().unwrap();
    let out = loadgen()
        .args(["bench", "--quick", "--warmup", "0.1", "--duration", "0.3", "--floor-secs", "0.2"])
        .args(["--client-cpu", "none", "--server-cpu", "none", "--no-progress", "--peers", "--peer-bin-dir"])
        .arg(tmp.path().join("no-peers-here"))
        .arg("--out")
        .arg(tmp.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for case in ["closed-64x1", "closed-64x16", "open-100k-64", "open-50k-64", "latency floor", "skipped"] {
        assert!(stdout.contains(case), "table lacks {case}:\n{stdout}");
    }
    for case in ["closed-64x1", "closed-64x16", "open-100k-64", "open-50k-64"] {
        let s = report::read_summary(&tmp.path().join(format!("quick-hardlight-{case}-echo64"))).unwrap();
        assert!(s.completed > 0, "{case}: nothing completed");
        assert_eq!(s.connections, 64);
        assert!(s.floor.is_some());
    }
    assert!(tmp.path().join("quick-table.md").is_file());
}
