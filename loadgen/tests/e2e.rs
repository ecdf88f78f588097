//! The load generator against real servers on 127.0.0.1.

mod common;

use std::fs;
use std::time::Duration;

use common::*;
use hardlight_loadgen::cpu::ServerCpuSource;
use hardlight_loadgen::engine::{self, Arrival, Mode};
use hardlight_loadgen::report::{self, files, Hgrm, RunMeta, Summary};
use hardlight_loadgen::scenario::Scenario;
use hardlight_loadgen::server::{self, embedded_cpu_source, EmbeddedService, ShardPlacement};
use hardlight_loadgen::ws::Target;

fn meta(run: &str) -> RunMeta {
    RunMeta { run: run.into(), server: "test".into(), command: "test".into(), ..RunMeta::default() }
}

#[test]
fn closed_loop_counts_match_and_every_file_parses_back() {
    let server = hardlight();
    let target = Target::at(server.local_addr()).unwrap();
    let mut cfg = config(target, Scenario::Echo64, 4, Mode::Closed { in_flight: 4 });
    cfg.server_cpu = embedded_cpu_source();
    let out = engine::run(&cfg).expect("run");

    assert!(out.completed > 100, "only {} calls completed", out.completed);
    assert_eq!(out.latency.len(), out.completed);
    assert_eq!(out.service.len(), out.completed);
    assert_eq!((out.failed, out.mismatched, out.unknown, out.disconnects), (0, 0, 0, 0));
    assert_eq!(out.sent, out.completed + out.incomplete);
    assert_eq!(out.incomplete, 0);
    let interval_total: u64 = out.intervals.iter().map(|i| i.hist.len()).sum();
    assert_eq!(interval_total, out.completed, "every sample lands in one interval");
    // Closed loop: intended == actual send time, so both histograms agree.
    assert_eq!(out.latency.value_at_quantile(0.99), out.service.value_at_quantile(0.99));
    assert!(out.lateness.is_empty());
    let server_cpu = out.server_cpu.expect("embedded shard threads are found by name");
    assert!(server_cpu.total_ns > 0);
    assert!(out.client_cpu.total_ns > 0);
    // One read and one write per round at most, and rounds carry several calls.
    assert!(out.syscalls.answers >= out.completed);
    assert!(out.syscalls.per_answer() > 0.0 && out.syscalls.per_answer() < 4.0, "{:?}", out.syscalls);

    let dir = tempfile::tempdir().unwrap();
    let summary = Summary::new(&cfg, &out, &meta("closed"));
    let run_dir = report::write_run(&dir.path().join("closed"), &cfg, &out, &summary).unwrap();

    let back: Summary = serde_json::from_str(&fs::read_to_string(run_dir.join(files::SUMMARY)).unwrap()).unwrap();
    assert_eq!(back, summary);
    assert_eq!(back.mode, "closed");
    assert_eq!(back.in_flight, Some(4));
    assert_eq!(back.connections, 4);
    assert_eq!(back.completed, out.completed);
    assert!(back.p50_us > 0.0 && back.p50_us <= back.p90_us && back.p90_us <= back.p99_us);
    assert!(back.p99_us <= back.p99_9_us && back.p99_9_us <= back.p99_99_us && back.p99_99_us <= back.max_us);
    let rate = back.completed as f64 / back.duration_s;
    assert!((back.achieved_rate - rate).abs() < 1e-6 * rate.max(1.0));
    assert!(back.server_cpu_per_call_ns.unwrap() > 0.0);
    assert!(back.machine.cpus >= 1 && !back.machine.kernel.is_empty());
    assert!(back.timestamp.ends_with('Z'));
    // Raw JSON carries the documented field names.
    let raw: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run_dir.join(files::SUMMARY)).unwrap()).unwrap();
    for key in [
        "scenario",
        "mode",
        "connections",
        "in_flight",
        "offered_rate",
        "achieved_rate",
        "p50_us",
        "p90_us",
        "p99_us",
        "p99_9_us",
        "p99_99_us",
        "max_us",
        "client_cpu_s",
        "server_cpu_s",
        "server_cpu_per_call_ns",
        "send_lateness_p99_us",
        "machine",
        "git_commit",
        "timestamp",
    ] {
        assert!(raw.get(key).is_some(), "summary.json lacks {key}");
    }

    let hgrm = Hgrm::parse(&fs::read_to_string(run_dir.join(files::LATENCY_HGRM)).unwrap()).unwrap();
    assert_eq!(hgrm.total_count, out.completed);
    assert_eq!(hgrm.points.last().unwrap().total_count, out.completed);
    assert!((hgrm.value_at(0.5) - back.p50_us).abs() <= back.p50_us * 0.01 + 0.01);
    let log = report::read_interval_log(&fs::read(run_dir.join(files::LATENCY_HLOG)).unwrap()).unwrap();
    assert_eq!(log.iter().map(|(_, h)| h.len()).sum::<u64>(), out.completed);
    server.shutdown();
}

#[test]
fn open_loop_at_a_low_rate_achieves_the_offered_rate() {
    let server = hardlight();
    let target = Target::at(server.local_addr()).unwrap();
    let rate = 2000.0;
    let cfg = config(target, Scenario::Add, 4, Mode::Open { rate, arrival: Arrival::Constant });
    let out = engine::run(&cfg).expect("run");

    // Constant spacing: exactly rate x window requests are intended in the window (+- one per connection).
    let expected = rate * cfg.duration.as_secs_f64();
    assert!((out.sent as f64 - expected).abs() <= 5.0, "sent {} vs {expected}", out.sent);
    assert_eq!(out.incomplete, 0);
    assert_eq!(out.completed, out.sent);
    assert!((out.achieved_rate() - rate).abs() < rate * 0.1, "achieved {}", out.achieved_rate());
    assert_eq!(out.lateness.len(), out.sent, "one lateness sample per send");
    // Every sample's latency from the intended time includes its service time.
    for q in [0.0, 0.5, 0.9, 0.99, 1.0] {
        assert!(
            out.latency.value_at_quantile(q) >= out.service.value_at_quantile(q),
            "q {q}: latency {} < service {}",
            out.latency.value_at_quantile(q),
            out.service.value_at_quantile(q)
        );
    }
    let s = Summary::new(&cfg, &out, &meta("open"));
    assert_eq!(s.offered_rate, Some(rate));
    assert_eq!(s.arrival.as_deref(), Some("constant"));
    assert!(s.send_lateness_p99_us.is_some());
    server.shutdown();
}

#[test]
fn a_stalled_server_is_charged_from_the_intended_send_time() {
    // 2000 calls/s on one connection; the server stalls 300 ms once, 0.2 s
    // into the window. 600 requests are due during the stall but only 256
    // ids exist, so the client must hold the rest back and send them late.
    let stall = Duration::from_millis(300);
    let server = EchoServer::start(Some(800), stall);
    let rate = 2000.0;
    let cfg =
        config(server.target(), Scenario::RawEcho { size: 32 }, 1, Mode::Open { rate, arrival: Arrival::Constant });
    let out = engine::run(&cfg).expect("run");

    assert_eq!(out.incomplete, 0);
    assert_eq!(out.mismatched, 0);
    assert!((out.completed as f64 - rate).abs() <= 3.0, "completed {}", out.completed);
    let max = out.latency.max();
    assert!(max >= 280_000_000, "the stall must show in the max: {max} ns");
    // Requests intended in the first 200 ms of the stall waited at least 100 ms.
    let slow = out.latency.count_between(100_000_000, u64::MAX);
    assert!(slow >= 350, "only {slow} samples >= 100 ms; intended-time accounting lost the stall");
    // Sends were held back once every id was in flight...
    assert!(out.lateness.max() >= 100_000_000, "lateness max {} ns", out.lateness.max());
    // ...and a service-time view (from the actual send) hides part of it.
    assert!(out.service.count_between(100_000_000, u64::MAX) < slow);
}

#[test]
fn raw_echo_measures_a_plain_websocket_echo_server() {
    let server = EchoServer::start(None, Duration::ZERO);
    let mut cfg = config(server.target(), Scenario::RawEcho { size: 100 }, 2, Mode::Closed { in_flight: 8 });
    cfg.server_cpu = ServerCpuSource::Pid(std::process::id());
    let out = engine::run(&cfg).expect("run");
    assert!(out.completed > 100, "{}", out.completed);
    assert_eq!((out.mismatched, out.failed, out.disconnects, out.incomplete), (0, 0, 0, 0));
    assert!(out.server_cpu.is_some());
    assert!(server.messages.load(std::sync::atomic::Ordering::SeqCst) >= out.completed);
}

#[test]
fn hardlights_plain_echo_answers_raw_echo_on_the_embedded_servers_threads() {
    // What `bench --peers` runs as `hardlight-plain-echo`: no subprotocol,
    // every message echoed, its CPU read from the shard threads.
    let server = server::start_embedded_echo("127.0.0.1:0".parse().unwrap(), ShardPlacement::Unpinned).unwrap();
    let mut cfg = config(
        Target::at(server.local_addr()).unwrap(),
        Scenario::RawEcho { size: 64 },
        2,
        Mode::Closed { in_flight: 8 },
    );
    cfg.server_cpu = embedded_cpu_source();
    let out = engine::run(&cfg).expect("run");
    assert!(out.completed > 100, "{}", out.completed);
    assert_eq!((out.mismatched, out.failed, out.disconnects, out.incomplete), (0, 0, 0, 0));
    assert!(out.server_cpu.is_some_and(|c| c.total_ns > 0), "{:?}", out.server_cpu);
    server.shutdown();
}

#[test]
fn refused_upgrade_is_reported_with_the_servers_reason() {
    // raw-echo offers no subprotocol; the HardLight server refuses with 400 naming hl/1.
    let server = hardlight();
    let cfg = config(
        Target::at(server.local_addr()).unwrap(),
        Scenario::RawEcho { size: 8 },
        1,
        Mode::Closed { in_flight: 1 },
    );
    let err = engine::run(&cfg).unwrap_err();
    assert!(err.contains("400") && err.contains("hl/1"), "{err}");
    server.shutdown();
}

#[test]
fn sweep_runs_one_open_loop_step_per_rate() {
    let server = EchoServer::start(None, Duration::ZERO);
    let mut cfg = config(server.target(), Scenario::RawEcho { size: 16 }, 2, Mode::Closed { in_flight: 1 });
    cfg.warmup = Duration::from_millis(100);
    cfg.duration = Duration::from_millis(500);
    let dir = tempfile::tempdir().unwrap();
    let (sums, table) =
        hardlight_loadgen::suite::sweep(&cfg, &[500.0, 1000.0], Arrival::Constant, dir.path(), &meta("sweep")).unwrap();
    assert_eq!(sums.len(), 2);
    assert_eq!(sums[0].offered_rate, Some(500.0));
    assert_eq!(sums[1].offered_rate, Some(1000.0));
    for s in &sums {
        let want = s.offered_rate.unwrap() * 0.5;
        assert!((s.completed as f64 - want).abs() <= 3.0, "{} completed at {:?}", s.completed, s.offered_rate);
    }
    assert!(table.contains("500/s") && table.contains("1.0k/s"), "{table}");
    assert!(dir.path().join("sweep/rate-500/summary.json").is_file());
    assert!(dir.path().join("sweep/rate-1000/latency.hgrm").is_file());
}

#[test]
fn server_syscalls_are_counted_on_the_shard_threads_over_the_window() {
    let server = hardlight();
    let mut cfg = config(Target::at(server.local_addr()).unwrap(), Scenario::Echo64, 2, Mode::Closed { in_flight: 1 });
    cfg.server_cpu = embedded_cpu_source();
    let out = engine::run(&cfg).expect("run");
    let n = match out.server_syscalls {
        Ok(n) => n,
        // Only a machine without perf may skip; any other failure fails.
        Err(e) if e.contains("not installed") => return eprintln!("skipped: {e}"),
        Err(e) => panic!("server syscalls not counted: {e}"),
    };
    assert!(out.completed > 100, "{}", out.completed);
    // Ping-pong with one call in flight on each of 2 connections: the shard
    // sleeps between rounds and a wake-up finds at most 2 calls, so it makes
    // at least one system call (io_uring_enter, on either backend) per 2
    // calls.
    assert!(2 * n.total >= out.completed, "{n:?} for {} calls", out.completed);
    assert!(n.io_uring_enter > 0, "{n:?}");
    let s = Summary::new(&cfg, &out, &meta("sys"));
    assert_eq!(s.server_syscalls, Some(n.total));
    assert!(s.server_syscalls_per_call.unwrap() >= 0.5);

    // Turned off: n/a with the reason, and the run still works.
    cfg.count_server_syscalls = false;
    cfg.duration = Duration::from_millis(300);
    let out = engine::run(&cfg).expect("run");
    assert!(out.server_syscalls.unwrap_err().contains("turned off"));
}

#[test]
fn state_scenario_sees_every_state_message_before_its_response() {
    let server = hardlight_serving(EmbeddedService::State);
    for in_flight in [1, 16] {
        let mut cfg = config(Target::at(server.local_addr()).unwrap(), Scenario::State, 4, Mode::Closed { in_flight });
        cfg.count_server_syscalls = false;
        let out = engine::run(&cfg).expect("run");
        assert!(out.completed > 100, "{}", out.completed);
        assert_eq!(
            (out.failed, out.mismatched, out.unknown, out.disconnects),
            (0, 0, 0, 0),
            "{:?}",
            out.disconnect_reason
        );
        assert_eq!(out.state_late, 0, "every STATE arrived before its response");
    }
}

/// `touch` answered without changing state: the protocol's order cannot be
/// observed, so the engine must count every reply as late.
struct Stateless;

impl hardlight_bench::stateful::Stateful for Stateless {
    async fn touch(&self, _call: u8) -> bool {
        true
    }
}

#[test]
fn state_scenario_counts_responses_that_come_without_their_state_message() {
    use hardlight::server::{ConnectContext, Refusal, Server};
    let server = Server::builder("127.0.0.1:0".parse().unwrap())
        .unpinned(1)
        .serve(|_: &ConnectContext<'_>| Ok::<_, Refusal>(hardlight_bench::stateful::StatefulService::new(Stateless)))
        .unwrap();
    let mut cfg = config(Target::at(server.local_addr()).unwrap(), Scenario::State, 2, Mode::Closed { in_flight: 4 });
    cfg.count_server_syscalls = false;
    cfg.duration = Duration::from_millis(500);
    let out = engine::run(&cfg).expect("run");
    assert!(out.completed > 50, "{}", out.completed);
    assert_eq!(out.state_late, out.completed, "no reply had its STATE first");
    let s = Summary::new(&cfg, &out, &meta("late"));
    assert!(s.warnings.iter().any(|w| w.contains("before the STATE message")), "{:?}", s.warnings);
    server.shutdown();
}

#[test]
fn fanout_scenario_delivers_every_emit_to_every_subscriber() {
    let server = hardlight_serving(EmbeddedService::Fan);
    let conns = 9; // the emitter and 8 subscribers
    let mut cfg = config(
        Target::at(server.local_addr()).unwrap(),
        Scenario::Fanout,
        conns,
        Mode::Open { rate: 200.0, arrival: Arrival::Constant },
    );
    cfg.count_server_syscalls = false;
    let out = engine::run(&cfg).expect("run");
    assert_eq!((out.failed, out.mismatched, out.unknown, out.disconnects), (0, 0, 0, 0), "{:?}", out.disconnect_reason);
    // 200 emits/s over a 1 s window, each delivered to the 8 subscribers.
    assert!((190..=210).contains(&out.sent), "emits sent in the window: {}", out.sent);
    assert_eq!(out.completed, out.sent * (conns as u64 - 1), "deliveries");
    assert_eq!(out.latency.len(), out.completed, "every delivery is timed");
    assert_eq!(out.incomplete, 0);
}
