//! The machine's latency floor: how late a thread on the client CPU wakes
//! from a short sleep. Tail latencies near this floor are the machine's,
//! not the server's.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::cpu;

/// The floor as reported beside every table (microseconds).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Floor {
    /// Requested sleep.
    pub sleep_us: f64,
    /// Timer slack the sleeping thread ran with (ns).
    pub timer_slack_ns: u64,
    /// CPU the thread was pinned to.
    pub cpu: Option<usize>,
    /// Number of sleeps.
    pub samples: u64,
    /// Wake-up lateness percentiles (us).
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p99_9_us: f64,
    /// 99.99th percentile.
    pub p99_99_us: f64,
    /// Worst wake-up.
    pub max_us: f64,
}

/// Measures wake-up lateness of `sleep` sleeps for `duration` (at most
/// 1 million sleeps) on a new thread pinned to `cpu`, with the given timer
/// slack (`None`: the kernel's default). Returns the summary and the
/// lateness histogram in ns.
pub fn measure(
    cpu: Option<usize>,
    sleep: Duration,
    duration: Duration,
    slack_ns: Option<u64>,
) -> (Floor, Histogram<u64>) {
    std::thread::Builder::new()
        .name("loadgen-floor".into())
        .spawn(move || {
            if let Some(c) = cpu {
                cpu::pin_to(c);
            }
            if let Some(s) = slack_ns {
                cpu::set_timer_slack_ns(s);
            }
            let slack = cpu::timer_slack_ns();
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
            let start = Instant::now();
            let want = sleep.as_nanos() as u64;
            while start.elapsed() < duration && h.len() < 1_000_000 {
                let t0 = Instant::now();
                std::thread::sleep(sleep);
                let slept = t0.elapsed().as_nanos() as u64;
                h.saturating_record(slept.saturating_sub(want).max(1));
            }
            let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            let f = Floor {
                sleep_us: want as f64 / 1000.0,
                timer_slack_ns: slack,
                cpu,
                samples: h.len(),
                p50_us: us(0.5),
                p99_us: us(0.99),
                p99_9_us: us(0.999),
                p99_99_us: us(0.9999),
                max_us: h.max() as f64 / 1000.0,
            };
            (f, h)
        })
        .expect("spawn floor thread")
        .join()
        .expect("floor thread")
}

impl Floor {
    /// One line for tables.
    pub fn line(&self) -> String {
        format!(
            "latency floor (sleep {:.0} us on cpu {}, timer slack {} ns, {} samples): wake-up lateness p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
            self.sleep_us,
            self.cpu.map(|c| c.to_string()).unwrap_or_else(|| "any".into()),
            self.timer_slack_ns,
            self.samples,
            self.p50_us,
            self.p99_us,
            self.p99_9_us,
            self.max_us
        )
    }
}

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
        let (tight, _) = measure(cpu, sleep, half, Some(1));
        let (default_slack, _) = measure(cpu, sleep, half, None);
        Self { tight, default_slack }
    }

    /// Two lines for reports.
    pub fn lines(&self) -> String {
        format!("{}\n{}", self.tight.line(), self.default_slack.line())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_measures_some_sleeps() {
        let (f, h) = measure(None, Duration::from_micros(50), Duration::from_millis(100), Some(1));
        assert!(f.samples > 10, "{f:?}");
        assert_eq!(h.len(), f.samples);
        assert_eq!(f.timer_slack_ns, 1);
        assert!(f.p50_us <= f.p99_us && f.p99_us <= f.max_us);
        assert!(f.line().contains("p99.9"));
    }
}
