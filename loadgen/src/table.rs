//! The table every command prints: one row per run, columns named for a
//! reader who has not read this crate.

use crate::compare::{fmt_rate, fmt_us, markdown};
use crate::report::{CoreLoad, Summary};

/// The column heads, in order. Each says what it counts and in what unit,
/// so the table reads without this crate's source; [`LEGEND`] says how.
pub const COLUMNS: [&str; 17] = [
    "run",
    "offered calls/s",
    "completed calls/s",
    "latency p50",
    "latency p90",
    "latency p99",
    "latency p99.9",
    "latency p99.99",
    "latency max",
    "server CPU per call (us)",
    "client CPU per call (us)",
    "server core busy",
    "client core busy",
    "server syscalls per call",
    "client syscalls per call",
    "CPU taken by other work: client core / server core / whole machine",
    "client send delay p99",
];

/// What the columns mean, printed once under the tables of `bench`.
pub const LEGEND: &str = "\
How to read the tables:
- offered calls/s: the open-loop schedule (`closed loop`: each connection keeps a fixed number of calls
  in flight, sending the next when an answer comes). completed calls/s: answers in the measured window.
- latency pNN: from the time each request was due to be sent (not when it was sent) to its answer, so
  a client or server that falls behind is charged for the wait (no coordinated omission). `(1.23x)`:
  ratio to baseline-tokio in the same sitting.
- server/client CPU per call: CPU time of the server's threads and of the load generator's thread over
  the window, divided by completed calls. core busy: that CPU time as a share of one core.
- syscalls per call: the server's counted by perf on its threads (`io_uring_enter` among them shown
  apart), the client's are its read, write and epoll_pwait2 calls.
- CPU taken by other work: busy time on the client's core and the server's core that was not ours,
  and on the whole machine; above 10% the run is contaminated (other processes) and says so.
- client send delay p99 (open loop): how late the load generator itself sent requests; read it
  beside the latency floor below.
";

/// A markdown table of runs, with ratios against `base` where given, then
/// one note per reason a figure is `n/a`, and what the columns mean.
pub fn runs_table(rows: &[(String, &Summary)], base: Option<&Summary>) -> String {
    let ratio = |v: f64, b: Option<f64>| match b {
        Some(b) if b > 0.0 => format!(" ({:.2}x)", v / b),
        _ => String::new(),
    };
    let mut t = vec![COLUMNS.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
    let mut notes: Vec<String> = Vec::new();
    for (name, s) in rows {
        let b = base.filter(|b| !std::ptr::eq(*b, *s));
        let us = |ns: f64| if ns >= 10_000.0 { format!("{:.1}", ns / 1e3) } else { format!("{:.2}", ns / 1e3) };
        let server_cpu = match s.server_cpu_per_call_ns {
            Some(c) => format!("{}{}", us(c), ratio(c, b.and_then(|b| b.server_cpu_per_call_ns))),
            None => {
                notes.push(format!("server CPU per call n/a: not measured ({})", s.server_cpu_source));
                "n/a".into()
            }
        };
        let server_syscalls = match (s.server_syscalls_per_call, s.server_io_uring_enter_per_call) {
            (Some(n), Some(u)) if u > 0.0 => format!("{n:.2} ({u:.2} io_uring_enter)"),
            (Some(n), _) => format!("{n:.2}"),
            (None, _) => {
                let why = s.server_syscalls_note.as_deref().unwrap_or("not recorded in this summary");
                notes.push(format!("server syscalls per call n/a: {why}"));
                "n/a".into()
            }
        };
        let other = {
            let o = |c: Option<CoreLoad>| c.map(|c| format!("{:.0}%", c.other * 100.0)).unwrap_or("-".into());
            let all = s.other_cpu_s.map(|c| format!("{:.0}%", c / s.duration_s.max(1e-9) * 100.0));
            format!("{}/{}/{}", o(s.client_core), o(s.server_core), all.unwrap_or("-".into()))
        };
        t.push(vec![
            name.clone(),
            s.offered_rate.map(fmt_rate).unwrap_or_else(|| "closed loop".into()),
            format!("{}{}", fmt_rate(s.achieved_rate), ratio(s.achieved_rate, b.map(|b| b.achieved_rate))),
            format!("{}{}", fmt_us(s.p50_us), ratio(s.p50_us, b.map(|b| b.p50_us))),
            format!("{}{}", fmt_us(s.p90_us), ratio(s.p90_us, b.map(|b| b.p90_us))),
            format!("{}{}", fmt_us(s.p99_us), ratio(s.p99_us, b.map(|b| b.p99_us))),
            format!("{}{}", fmt_us(s.p99_9_us), ratio(s.p99_9_us, b.map(|b| b.p99_9_us))),
            format!("{}{}", fmt_us(s.p99_99_us), ratio(s.p99_99_us, b.map(|b| b.p99_99_us))),
            format!("{}{}", fmt_us(s.max_us), ratio(s.max_us, b.map(|b| b.max_us))),
            server_cpu,
            us(s.client_cpu_per_call_ns),
            s.server_cpu_util.map(|u| format!("{:.0}%", u * 100.0)).unwrap_or_else(|| "n/a".into()),
            format!("{:.0}%", s.client_cpu_util * 100.0),
            server_syscalls,
            format!("{:.2}", s.client_syscalls_per_call),
            other,
            s.send_lateness_p99_us.map(fmt_us).unwrap_or_else(|| "-".into()),
        ]);
    }
    let mut out = markdown(&t);
    notes.dedup();
    let mut seen = Vec::new();
    for n in notes {
        if !seen.contains(&n) {
            out.push_str(&format!("\n- {n}"));
            seen.push(n);
        }
    }
    if rows.iter().any(|(_, s)| s.scenario.starts_with("fanout")) {
        out.push_str("\n- fanout: completed calls/s counts deliveries (one emit reaches every subscriber) and the latencies are emit to delivery");
    }
    if !seen.is_empty() || rows.iter().any(|(_, s)| s.scenario.starts_with("fanout")) {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::CpuTime;
    use crate::engine::{RunConfig, RunOutcome};
    use crate::report::RunMeta;
    use crate::scenario::Scenario;
    use crate::ws::Target;
    use hdrhistogram::Histogram;
    use std::time::{Duration, SystemTime};

    fn summary() -> Summary {
        let mut h = Histogram::<u64>::new(3).unwrap();
        h.record(1000).unwrap();
        let cfg = RunConfig::new("t", Target::at("127.0.0.1:1".parse().unwrap()).unwrap(), Scenario::Echo64);
        let out = RunOutcome {
            latency: h.clone(),
            service: h,
            lateness: Histogram::new(3).unwrap(),
            intervals: Vec::new(),
            measured: Duration::from_secs(1),
            started_at: SystemTime::now(),
            sent: 1,
            completed: 1,
            failed: 0,
            mismatched: 0,
            incomplete: 0,
            unknown: 0,
            state_late: 0,
            disconnects: 0,
            disconnect_reason: None,
            client_cpu: CpuTime::default(),
            server_cpu: None,
            cores: Vec::new(),
            syscalls: Default::default(),
            server_syscalls: Err("test".into()),
            pinned: false,
            timer_slack_ns: 1,
            connect_time: Duration::ZERO,
        };
        Summary::new(&cfg, &out, &RunMeta::default())
    }

    #[test]
    fn columns_say_what_they_hold_and_missing_figures_say_why() {
        let mut s = summary();
        s.server_cpu_per_call_ns = Some(15_400.0);
        s.server_syscalls_per_call = Some(6.9);
        s.server_io_uring_enter_per_call = Some(4.25);
        s.client_cpu_per_call_ns = 810.0;
        let mut missing = s.clone();
        missing.server_syscalls_per_call = None;
        missing.server_syscalls_note = Some("perf is not installed (Debian: apt-get install linux-perf)".into());
        let text = runs_table(&[("a".into(), &s), ("b".into(), &missing)], None);
        let head = text.lines().next().unwrap();
        for col in ["server CPU per call (us)", "server syscalls per call", "client syscalls per call", "latency p99"] {
            assert!(head.contains(col), "{head}");
        }
        let cells = |row: &str| -> Vec<String> {
            let line = text.lines().find(|l| l.starts_with(&format!("| {row} "))).unwrap();
            line.split('|').map(|c| c.trim().to_string()).collect()
        };
        // cells[0] is the empty string before the first '|'.
        let col = |name: &str| COLUMNS.iter().position(|c| *c == name).unwrap() + 1;
        let a = cells("a");
        assert_eq!(a[col("server CPU per call (us)")], "15.4");
        assert_eq!(a[col("client CPU per call (us)")], "0.81");
        assert_eq!(a[col("server syscalls per call")], "6.90 (4.25 io_uring_enter)");
        assert_eq!(a[col("offered calls/s")], "closed loop");
        assert_eq!(cells("b")[col("server syscalls per call")], "n/a");
        assert!(text.contains("server syscalls per call n/a: perf is not installed"), "{text}");
        // No Rust debug formatting leaks into what a reader sees.
        assert!(!text.contains("Some(") && !text.contains("None"), "{text}");
    }
}
