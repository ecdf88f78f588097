//! The progress line on stderr, once a second: rate, p99 so far, calls in
//! flight, both sides' CPU and every core's load, so a run that goes wrong
//! (a saturated client, a busy machine) shows it while it runs.

use crate::cpu::{self, CoreTimes, CpuTime, ServerCpuSource};

/// Readings at the previous line, to print rates over the last second.
pub(super) struct Progress {
    client: CpuTime,
    server: Option<CpuTime>,
    cores: Vec<CoreTimes>,
    answers: u64,
}

/// What the loop knows at a tick.
pub(super) struct Tick<'a> {
    /// The run's label.
    pub label: &'a str,
    /// Nanoseconds since the engine's start.
    pub now: u64,
    /// Nanoseconds since the previous tick.
    pub span: u64,
    /// `warmup`, `measure` or `drain`.
    pub phase: &'static str,
    /// Answers so far, whole run.
    pub answers: u64,
    /// p99 of the window so far (us).
    pub p99_us: f64,
    /// Calls in flight now.
    pub in_flight: usize,
}

impl Progress {
    /// Takes the first readings.
    pub(super) fn start(server: &ServerCpuSource) -> Self {
        Self { client: cpu::this_thread(), server: server.read(), cores: cpu::cores(), answers: 0 }
    }

    /// Prints one line and takes new readings.
    pub(super) fn line(&mut self, t: Tick<'_>, server: &ServerCpuSource) {
        let span = t.span.max(1) as f64;
        let (cli, srv, cores) = (cpu::this_thread(), server.read(), cpu::cores());
        let rate = t.answers.saturating_sub(self.answers) as f64 * 1e9 / span;
        let cli_pct = cli.since(&self.client).total_ns as f64 * 100.0 / span;
        let srv_pct = match (srv, self.server) {
            (Some(a), Some(b)) => format!("{:.0}%", a.since(&b).total_ns as f64 * 100.0 / span),
            _ => "-".into(),
        };
        let busy: Vec<String> = cores
            .iter()
            .zip(self.cores.iter())
            .take(4)
            .map(|(b, a)| format!("{:.0}%", b.since(a).busy_ns as f64 * 100.0 / span))
            .collect();
        eprintln!(
            "[{}] {:>5.1}s {:<7} rate {:>8.1}k/s  p99 so far {:>9.1} us  in flight {:>5}  client cpu {:>3.0}%  server cpu {:>4}  cores busy {}",
            t.label,
            t.now as f64 / 1e9,
            t.phase,
            rate / 1e3,
            t.p99_us,
            t.in_flight,
            cli_pct,
            srv_pct,
            busy.join("/")
        );
        *self = Self { client: cli, server: srv, cores, answers: t.answers };
    }
}
