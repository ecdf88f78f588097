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
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("loadgen bench"));
}

#[test]
fn help_works_on_every_subcommand() {
    for sub in ["bench", "run", "serve", "compare"] {
        for ask in [vec![sub, "--help"], vec![sub, "-h"], vec!["help", sub]] {
            let out = loadgen().args(&ask).output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{ask:?}: {}", String::from_utf8_lossy(&out.stderr));
            assert!(stdout.contains(&format!("Usage: loadgen {sub}")), "{ask:?}:\n{stdout}");
            assert!(stdout.contains("--"), "{ask:?} lists the options:\n{stdout}");
        }
    }
    let out = loadgen().arg("--help").output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    for sub in ["bench", "run", "serve", "compare"] {
        assert!(stdout.contains(sub), "{stdout}");
    }
    // The flags scripts use are documented under their old names.
    let out = loadgen().args(["bench", "--help"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for flag in ["--quick", "--peers", "--out", "--wait-quiet", "--retries", "--cases", "--no-server-syscalls"] {
        assert!(stdout.contains(flag), "{flag}:\n{stdout}");
    }
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
    for case in [
        "closed-64x1",
        "closed-64x16",
        "open-100k-64",
        "open-50k-64",
        "open-20k-64",
        "open-2k-64",
        "state-closed-64x16",
        "fanout-open-500-64",
    ] {
        assert!(stdout.contains(&format!("## {case}")), "table lacks {case}:\n{stdout}");
    }
    for text in [
        "latency floor",
        "skipped",
        "How to read the tables",
        "HardLight only: no peer server serves the `fanout`",
        "the peers were not run here",
    ] {
        assert!(stdout.contains(text), "table lacks {text}:\n{stdout}");
    }
    for run in [
        "closed-64x1-echo64",
        "closed-64x16-echo64",
        "open-100k-64-echo64",
        "open-50k-64-echo64",
        "open-20k-64-echo64",
        "open-2k-64-echo64",
        "state-closed-64x16-state",
        "fanout-open-500-64-fanout",
    ] {
        let s = report::read_summary(&tmp.path().join(format!("quick-hardlight-{run}"))).unwrap();
        assert!(s.completed > 0, "{run}: nothing completed");
        assert_eq!(s.connections, 64);
        assert!(s.floor.is_some());
        assert_eq!((s.failed, s.mismatched, s.state_late, s.disconnects), (0, 0, 0, 0), "{run}");
    }
    assert!(tmp.path().join("quick-table.md").is_file());
    // It ends with the plot: the last line names the file, which holds a panel per case.
    let plot = plot_line(&stdout);
    assert_eq!(plot, tmp.path().join("quick-plot.svg"));
    let svg = fs::read_to_string(&plot).unwrap();
    assert!(svg.matches("<polyline").count() >= 6, "a curve per case");
    assert!(svg.contains("fanout-open-500-64") && svg.contains("closed-64x1"), "panels are titled by case");
}

/// The path on the last line of `bench`'s output, `plot: PATH`.
fn plot_line(stdout: &str) -> std::path::PathBuf {
    let last = stdout.lines().last().unwrap_or_default();
    let path = last.strip_prefix("plot: ").unwrap_or_else(|| panic!("the last line names the plot: {last}"));
    path.into()
}

/// A git repository in a temp folder, laid out like a clone of this one:
/// the project's .gitignore and a committed `results/` file for each name
/// in `tracked` (relative to `results/`).
fn clean_clone(tracked: &[&str]) -> (tempfile::TempDir, String) {
    let repo = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git").args(args).current_dir(repo.path()).output().expect("git runs");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    git(&["init", "-q"]);
    fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/../.gitignore"), repo.path().join(".gitignore")).unwrap();
    fs::create_dir_all(repo.path().join("results")).unwrap();
    fs::write(repo.path().join("results/README.md"), "committed results\n").unwrap();
    for t in tracked {
        let p = repo.path().join("results").join(t);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, "committed\n").unwrap();
    }
    git(&["add", "-A"]);
    git(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "clone"]);
    let head = git(&["rev-parse", "HEAD"]);
    (repo, head)
}

fn git_status(repo: &Path) -> String {
    let out = Command::new("git").args(["status", "--porcelain", "--untracked-files=all"]).current_dir(repo).output();
    String::from_utf8_lossy(&out.unwrap().stdout).into_owned()
}

fn tiny_bench(repo: &Path, extra: &[&str]) -> String {
    let out = loadgen()
        .current_dir(repo)
        .args(["bench", "--quick", "--warmup", "0.1", "--duration", "0.2", "--floor-secs", "0.1"])
        .args(["--client-cpu", "none", "--server-cpu", "none", "--no-progress", "--no-server-syscalls"])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_default_bench_leaves_the_committed_results_alone() {
    let (repo, head) = clean_clone(&["bench-table.md", "quick-table.md"]);
    let stdout = tiny_bench(repo.path(), &["--cases", "closed-64x1"]);
    // Nothing changed that git would show: results/ is untouched and the
    // default folder is ignored.
    assert_eq!(git_status(repo.path()), "", "{stdout}");
    assert_eq!(fs::read_to_string(repo.path().join("results/quick-table.md")).unwrap(), "committed\n");
    let out = repo.path().join("target/loadgen");
    let s = report::read_summary(&out.join("quick-hardlight-closed-64x1-echo64")).unwrap();
    assert_eq!(s.git_commit.as_deref(), Some(head.as_str()));
    assert!(out.join("quick-table.md").is_file());
    let plot = plot_line(&stdout);
    assert_eq!(plot, Path::new("target/loadgen/quick-plot.svg"));
    assert!(repo.path().join(&plot).is_file(), "the plot it names exists");
}

#[test]
fn the_commit_is_stamped_before_anything_is_written() {
    // Results refreshed in place overwrite tracked files: the first run
    // already makes the tree dirty, yet every run carries the clean commit.
    let runs = ["quick-hardlight-closed-64x1-echo64", "quick-hardlight-closed-64x16-echo64"];
    let tracked: Vec<String> = runs.iter().map(|r| format!("{r}/summary.json")).collect();
    let (repo, head) = clean_clone(&tracked.iter().map(String::as_str).collect::<Vec<_>>());
    let stdout = tiny_bench(repo.path(), &["--cases", "closed-64x1,closed-64x16", "--out", "results"]);
    let status = git_status(repo.path());
    assert!(status.contains(&format!(" M results/{}", tracked[0])), "the runs overwrote tracked files:\n{status}");
    for r in runs {
        let s = report::read_summary(&repo.path().join("results").join(r)).unwrap();
        assert_eq!(s.git_commit.as_deref(), Some(head.as_str()), "{r}");
    }
    assert!(stdout.contains(&format!("commit {head}\n")), "the table's header names the clean commit:\n{stdout}");
}
