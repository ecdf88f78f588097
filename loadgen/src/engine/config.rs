//! What a run is asked to do ([`RunConfig`], [`Mode`], [`Arrival`]) and
//! what it measured ([`RunOutcome`]): the engine's inputs and outputs, kept
//! apart from the loop so that reports and tests read them without the
//! loop's internals.

use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;

use super::MAX_IN_FLIGHT;
use crate::cpu::{CoreTimes, CpuTime, ServerCpuSource};
use crate::scenario::Scenario;
use crate::syscount::ServerSyscalls;
use crate::ws::Target;

/// How requests are scheduled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Keep `in_flight` calls outstanding on every connection.
    Closed {
        /// Calls in flight per connection (1..=256).
        in_flight: usize,
    },
    /// A fixed total offered rate spread over the connections.
    Open {
        /// Calls per second, all connections together.
        rate: f64,
        /// Spacing of intended send times.
        arrival: Arrival,
    },
}

impl Mode {
    /// `closed` or `open`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Closed { .. } => "closed",
            Self::Open { .. } => "open",
        }
    }
}

/// Spacing of intended send times in open loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Evenly spaced, connections interleaved.
    Constant,
    /// Exponential gaps per connection (their sum is a Poisson process at the total rate).
    Poisson,
}

impl Arrival {
    /// Parses `constant` or `poisson`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "constant" | "uniform" => Ok(Self::Constant),
            "poisson" | "exp" => Ok(Self::Poisson),
            o => Err(format!("unknown arrival `{o}` (constant, poisson)")),
        }
    }

    /// The name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Constant => "constant",
            Self::Poisson => "poisson",
        }
    }
}

/// Everything one run needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Name shown in the progress line.
    pub label: String,
    /// Server address.
    pub target: Target,
    /// Workload.
    pub scenario: Scenario,
    /// Connections.
    pub connections: usize,
    /// Open or closed loop.
    pub mode: Mode,
    /// Traffic before measuring.
    pub warmup: Duration,
    /// Measured window.
    pub duration: Duration,
    /// Longest wait for answers after the window.
    pub drain: Duration,
    /// CPU the engine thread is pinned to.
    pub client_cpu: Option<usize>,
    /// Busy-poll (`epoll_pwait2` with a zero timeout) instead of sleeping.
    /// The client's core then shows 100% busy whatever the load.
    pub spin: bool,
    /// Open loop: busy-poll instead of sleeping when the next send is due
    /// within this long (waking from a sleep costs tens of microseconds on a
    /// virtual machine; see the latency floor). Zero: always sleep.
    pub spin_below: Duration,
    /// Print a progress line on stderr every second.
    pub progress: bool,
    /// Where to read the server's CPU time.
    pub server_cpu: ServerCpuSource,
    /// Seed for masks, keys and Poisson gaps.
    pub seed: u64,
    /// Time allowed for each connection's TCP connect and upgrade.
    pub connect_timeout: Duration,
    /// Count the server's system calls over the window with perf
    /// (`crate::syscount`; it slows every thread's syscalls a little).
    pub count_server_syscalls: bool,
}

impl RunConfig {
    /// Defaults for a run against `target`: 64 connections, closed loop 1 in
    /// flight, 1 s warm-up, 10 s measured, 2 s drain, client on CPU 0.
    pub fn new(label: impl Into<String>, target: Target, scenario: Scenario) -> Self {
        Self {
            label: label.into(),
            target,
            scenario,
            connections: 64,
            mode: Mode::Closed { in_flight: 1 },
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(10),
            drain: Duration::from_secs(2),
            client_cpu: Some(0),
            spin: false,
            spin_below: Duration::ZERO,
            progress: true,
            server_cpu: ServerCpuSource::None,
            seed: 0x5eed,
            connect_timeout: Duration::from_secs(10),
            count_server_syscalls: true,
        }
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        if self.connections == 0 || self.connections > 10_000 {
            return Err(format!("--connections {} out of range 1..=10000", self.connections));
        }
        match self.mode {
            Mode::Closed { in_flight } if in_flight == 0 || in_flight > MAX_IN_FLIGHT => {
                Err(format!("--in-flight {in_flight} out of range 1..={MAX_IN_FLIGHT}"))
            }
            Mode::Open { rate, .. } if !(rate > 0.0 && rate.is_finite()) => Err(format!("bad rate {rate}")),
            _ if self.duration.is_zero() => Err("--duration must be positive".into()),
            _ => Ok(()),
        }
    }
}

/// One interval of the interval log.
#[derive(Debug, Clone)]
pub struct Interval {
    /// Start, relative to the measured window's start.
    pub start: Duration,
    /// Length.
    pub length: Duration,
    /// Latencies (ns) recorded in it.
    pub hist: Histogram<u64>,
}

/// The engine's system calls, to show how little the client does per call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Syscalls {
    /// `read` calls.
    pub reads: u64,
    /// `write` calls.
    pub writes: u64,
    /// `epoll_pwait2` calls.
    pub waits: u64,
    /// Answers received (all of the run, not only the window).
    pub answers: u64,
}

impl Syscalls {
    /// System calls per answer.
    pub fn per_answer(&self) -> f64 {
        (self.reads + self.writes + self.waits) as f64 / self.answers.max(1) as f64
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// Latency from intended send time (ns).
    pub latency: Histogram<u64>,
    /// Latency from actual send time (ns).
    pub service: Histogram<u64>,
    /// Actual minus intended send time (ns); open loop only.
    pub lateness: Histogram<u64>,
    /// Per-second histograms of `latency`.
    pub intervals: Vec<Interval>,
    /// Length of the measured window.
    pub measured: Duration,
    /// Wall-clock time at the window's start.
    pub started_at: SystemTime,
    /// Requests sent whose intended time is in the window.
    pub sent: u64,
    /// Answers recorded (requests in the window answered as expected).
    pub completed: u64,
    /// Requests in the window that failed (call or application error).
    pub failed: u64,
    /// Answers whose bytes were not what the workload expects.
    pub mismatched: u64,
    /// Requests in the window never answered (or never sent) by the end of the drain.
    pub incomplete: u64,
    /// Answers for ids not in flight.
    pub unknown: u64,
    /// Replies in the window that arrived before the STATE message of their
    /// call (`state` scenario; the protocol says STATE comes first).
    pub state_late: u64,
    /// Connections lost during the run.
    pub disconnects: u64,
    /// The first reason a connection was lost.
    pub disconnect_reason: Option<String>,
    /// Engine thread CPU time over the window.
    pub client_cpu: CpuTime,
    /// Server CPU time over the window.
    pub server_cpu: Option<CpuTime>,
    /// Every CPU's busy, softirq and steal time over the window (`/proc/stat`).
    pub cores: Vec<CoreTimes>,
    /// The engine's system calls over the whole run (warm-up and drain included).
    pub syscalls: Syscalls,
    /// The server's system calls over the window, or why they were not counted.
    pub server_syscalls: Result<ServerSyscalls, String>,
    /// Whether pinning the engine thread succeeded.
    pub pinned: bool,
    /// Engine thread's timer slack (ns).
    pub timer_slack_ns: u64,
    /// Time to open and upgrade every connection.
    pub connect_time: Duration,
}

impl RunOutcome {
    /// Completed calls per second over the window.
    pub fn achieved_rate(&self) -> f64 {
        self.completed as f64 / self.measured.as_secs_f64().max(1e-9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation() {
        let t = Target::at("127.0.0.1:1".parse().unwrap()).unwrap();
        let mut c = RunConfig::new("x", t, Scenario::Echo64);
        c.mode = Mode::Closed { in_flight: 300 };
        assert!(c.validate().is_err());
        c.mode = Mode::Closed { in_flight: 256 };
        assert!(c.validate().is_ok());
        c.connections = 0;
        assert!(c.validate().is_err());
    }
}
