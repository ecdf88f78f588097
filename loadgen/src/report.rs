//! Result files: the percentile distribution (`.hgrm`), the interval log,
//! and `summary.json`.
//!
//! Histograms are recorded in nanoseconds and written in microseconds.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::serialization::interval_log::{IntervalLogIterator, IntervalLogWriterBuilder, LogEntry};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::engine::{Interval, Mode, RunConfig, RunOutcome};
use crate::floor::Floor;

/// Nanoseconds per output unit (microseconds).
pub const NS_PER_US: f64 = 1000.0;

/// Writes `h` in HdrHistogram's percentile-distribution format (the output
/// of Java's `outputPercentileDistribution(out, 5, scale)`), values divided
/// by `scale`.
pub fn hgrm(h: &Histogram<u64>, scale: f64) -> String {
    let d = h.sigfig() as usize;
    let mut s = String::new();
    let _ = write!(s, "{:>12} {:>14} {:>10} {:>14}\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    if !h.is_empty() {
        let mut total = 0u64;
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / scale;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(s, "{value:12.d$} {q:2.12} {total:10} {:14.2}", 1.0 / (1.0 - q));
            } else {
                let _ = writeln!(s, "{value:12.d$} {q:2.12} {total:10}");
            }
        }
    }
    let sub_buckets = (2 * 10u64.pow(h.sigfig() as u32)).next_power_of_two();
    let _ = writeln!(s, "#[Mean    = {:12.d$}, StdDeviation   = {:12.d$}]", h.mean() / scale, h.stdev() / scale);
    let _ = writeln!(s, "#[Max     = {:12.d$}, Total count    = {:12}]", h.max() as f64 / scale, h.len());
    let _ = writeln!(s, "#[Buckets = {:12}, SubBuckets     = {:12}]", h.buckets(), sub_buckets);
    s
}

/// One line of a parsed `.hgrm`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HgrmPoint {
    /// Value (in the file's unit).
    pub value: f64,
    /// Percentile as a fraction (0..=1).
    pub quantile: f64,
    /// Count at or below this value.
    pub total_count: u64,
}

/// A parsed `.hgrm`.
#[derive(Debug, Clone, PartialEq)]
pub struct Hgrm {
    /// Points in file order.
    pub points: Vec<HgrmPoint>,
    /// From the footer.
    pub max: f64,
    /// From the footer.
    pub total_count: u64,
    /// From the footer.
    pub mean: f64,
}

impl Hgrm {
    /// Parses the percentile-distribution format (ours, wrk2's, Java's).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut points = Vec::new();
        let (mut max, mut total_count, mut mean) = (None, None, None);
        for line in text.lines() {
            let l = line.trim();
            if l.is_empty() || l.starts_with("Value") {
                continue;
            }
            if let Some(rest) = l.strip_prefix("#[") {
                let rest = rest.trim_end_matches(']');
                for part in rest.split(',') {
                    let Some((k, v)) = part.split_once('=') else { continue };
                    let v = v.trim();
                    match k.trim() {
                        "Max" => max = v.parse::<f64>().ok(),
                        "Total count" => total_count = v.parse::<u64>().ok(),
                        "Mean" => mean = v.parse::<f64>().ok(),
                        _ => {}
                    }
                }
                continue;
            }
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 3 {
                return Err(format!("bad hgrm line `{line}`"));
            }
            let p = |i: usize| f[i].parse::<f64>().map_err(|_| format!("bad number in `{line}`"));
            points.push(HgrmPoint {
                value: p(0)?,
                quantile: p(1)?,
                total_count: f[2].parse().map_err(|_| format!("bad count in `{line}`"))?,
            });
        }
        let last = points.last().copied();
        Ok(Self {
            max: max.or(last.map(|p| p.value)).ok_or("empty hgrm")?,
            total_count: total_count.or(last.map(|p| p.total_count)).unwrap_or(0),
            mean: mean.unwrap_or(f64::NAN),
            points,
        })
    }

    /// The smallest value whose percentile reaches `q` (the file's resolution).
    pub fn value_at(&self, q: f64) -> f64 {
        if q >= 1.0 {
            return self.max;
        }
        self.points.iter().find(|p| p.quantile >= q).map(|p| p.value).unwrap_or(self.max)
    }
}

/// Writes the interval log (Java `HistogramLogWriter` layout, V2 compressed
/// base64 histograms, values in ns, `Interval_Max` in us).
pub fn interval_log(intervals: &[Interval], start: SystemTime, comment: &str) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    let mut ser = V2DeflateSerializer::new();
    {
        let mut b = IntervalLogWriterBuilder::new();
        for line in comment.lines() {
            b.add_comment(line);
        }
        b.add_comment("Histogram values are in nanoseconds; Interval_Max is in microseconds.");
        b.with_start_time(start).with_base_time(start).with_max_value_divisor(NS_PER_US);
        let _w = b.begin_log_with(&mut buf, &mut ser).map_err(|e| e.to_string())?;
    }
    buf.extend_from_slice(
        b"\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n",
    );
    {
        let mut w = IntervalLogWriterBuilder::new()
            .with_max_value_divisor(NS_PER_US)
            .begin_log_with(&mut buf, &mut ser)
            .map_err(|e| e.to_string())?;
        for iv in intervals {
            w.write_histogram(&iv.hist, iv.start, iv.length, None).map_err(|e| format!("{e:?}"))?;
        }
    }
    // The builder repeats the divisor comment when it starts the second writer; keep one.
    let text = String::from_utf8(buf).map_err(|e| e.to_string())?;
    let mut seen = false;
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line.starts_with("#[MaxValueDivisor") {
            if seen {
                continue;
            }
            seen = true;
        }
        out.push_str(line);
        out.push('\n');
    }
    Ok(out.into_bytes())
}

/// Reads an interval log back: every interval histogram.
pub fn read_interval_log(bytes: &[u8]) -> Result<Vec<(Duration, Histogram<u64>)>, String> {
    let mut out = Vec::new();
    let mut de = Deserializer::new();
    for entry in IntervalLogIterator::new(bytes) {
        match entry.map_err(|e| format!("{e:?}"))? {
            LogEntry::Interval(ih) => {
                let raw = base64_decode(ih.encoded_histogram())?;
                let h: Histogram<u64> = de.deserialize(&mut &raw[..]).map_err(|e| format!("{e:?}"))?;
                out.push((ih.start_timestamp(), h));
            }
            LogEntry::StartTime(_) | LogEntry::BaseTime(_) => {}
        }
    }
    Ok(out)
}

fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    let val = |c: u8| -> Result<u32, String> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(format!("bad base64 byte {c}")),
        } as u32)
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=' && !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        let take = chunk.len().saturating_sub(1);
        for i in 0..take {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Ok(out)
}

/// Percentiles of one histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th.
    pub p99_us: f64,
    /// 99.9th.
    pub p99_9_us: f64,
    /// 99.99th.
    pub p99_99_us: f64,
    /// Largest.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Samples.
    pub count: u64,
}

impl Percentiles {
    /// From a histogram in ns.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let us = |q: f64| h.value_at_quantile(q) as f64 / NS_PER_US;
        Self {
            p50_us: us(0.5),
            p90_us: us(0.9),
            p99_us: us(0.99),
            p99_9_us: us(0.999),
            p99_99_us: us(0.9999),
            max_us: h.max() as f64 / NS_PER_US,
            mean_us: h.mean() / NS_PER_US,
            count: h.len(),
        }
    }
}

/// How busy one CPU was during the window, as fractions of the window.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct CoreLoad {
    /// CPU number.
    pub cpu: usize,
    /// user + system + irq + softirq.
    pub busy: f64,
    /// softirq part of `busy` (loopback TCP receive work lands here).
    pub softirq: f64,
    /// Time the hypervisor took away.
    pub steal: f64,
    /// Our side's thread(s) on this CPU (their time includes the softirq
    /// work the kernel does in their context).
    pub ours: f64,
    /// busy - ours: other work on this core (other processes, our process's
    /// other threads, interrupts not run in our threads' context). Above a
    /// few percent, the figures of this run are contaminated.
    pub other: f64,
}

impl CoreLoad {
    fn of(cores: &[crate::cpu::CoreTimes], cpu: Option<usize>, ours_ns: Option<u64>, secs: f64) -> Option<Self> {
        let c = cores.get(cpu?)?;
        let f = |ns: u64| ns as f64 / 1e9 / secs;
        let ours = f(ours_ns?);
        let (busy, softirq) = (f(c.busy_ns), f(c.softirq_ns));
        Some(Self { cpu: cpu?, busy, softirq, steal: f(c.steal_ns), ours, other: (busy - ours).max(0.0) })
    }
}

/// The machine a run was measured on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Machine {
    /// `/proc/cpuinfo` model name.
    pub cpu_model: String,
    /// Online CPUs.
    pub cpus: usize,
    /// `uname -sr`.
    pub kernel: String,
}

impl Machine {
    /// Reads this machine.
    pub fn detect() -> Self {
        let cpu_model = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        // Online CPUs of the machine, not this thread's affinity mask.
        // SAFETY: sysconf has no preconditions.
        let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(0) as usize;
        Self { cpu_model, cpus, kernel: uname() }
    }
}

fn uname() -> String {
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname fills the struct we pass.
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".into();
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    format!("{} {} {}", field(&u.sysname), field(&u.release), field(&u.machine))
}

/// `git rev-parse HEAD` (with `-dirty` when the tree has changes), if available.
pub fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git").args(["rev-parse", "HEAD"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let head = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dirty = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .is_some_and(|o| !o.stdout.is_empty());
    Some(if dirty { format!("{head}-dirty") } else { head })
}

/// RFC 3339 UTC timestamp.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Everything a run reports, written as `summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// Run name (the directory name).
    pub run: String,
    /// Which server: `hardlight` (embedded), a peer's name, or a URL.
    pub server: String,
    /// Scenario name.
    pub scenario: String,
    /// `open` or `closed`.
    pub mode: String,
    /// Open loop: `constant` or `poisson`.
    pub arrival: Option<String>,
    /// Connections.
    pub connections: usize,
    /// Closed loop: calls in flight per connection.
    pub in_flight: Option<usize>,
    /// Open loop: offered calls/s.
    pub offered_rate: Option<f64>,
    /// Completed calls/s over the measured window.
    pub achieved_rate: f64,
    /// Warm-up (s).
    pub warmup_s: f64,
    /// Measured window (s).
    pub duration_s: f64,
    /// Requests sent in the window.
    pub sent: u64,
    /// Answers recorded.
    pub completed: u64,
    /// Failed calls.
    pub failed: u64,
    /// Wrong answers.
    pub mismatched: u64,
    /// Never answered by the end of the drain.
    pub incomplete: u64,
    /// `state`: replies that arrived before their call's STATE message.
    #[serde(default)]
    pub state_late: u64,
    /// Connections lost.
    pub disconnects: u64,
    /// Why the first connection was lost.
    pub disconnect_reason: Option<String>,
    /// Latency from intended send time.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th.
    pub p99_us: f64,
    /// 99.9th.
    pub p99_9_us: f64,
    /// 99.99th.
    pub p99_99_us: f64,
    /// Largest.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Latency from actual send time.
    pub service: Percentiles,
    /// Open loop: actual minus intended send time.
    pub send_lateness: Option<Percentiles>,
    /// Open loop: p99 of send lateness (us).
    pub send_lateness_p99_us: Option<f64>,
    /// Engine thread CPU over the window (s).
    pub client_cpu_s: f64,
    /// User part.
    pub client_cpu_user_s: f64,
    /// System part.
    pub client_cpu_sys_s: f64,
    /// client_cpu_s / duration_s: near 1.0 means the client is saturated.
    pub client_cpu_util: f64,
    /// Client CPU per completed call (ns).
    pub client_cpu_per_call_ns: f64,
    /// Client system calls (read + write + epoll wait) per answer, whole run.
    pub client_syscalls_per_call: f64,
    /// Client `read`, `write` and `epoll_pwait2` calls, whole run.
    pub client_syscalls: [u64; 3],
    /// Server CPU over the window (s).
    pub server_cpu_s: Option<f64>,
    /// User part (tick resolution).
    pub server_cpu_user_s: Option<f64>,
    /// System part (tick resolution).
    pub server_cpu_sys_s: Option<f64>,
    /// server_cpu_s / duration_s.
    pub server_cpu_util: Option<f64>,
    /// Server CPU per completed call (ns).
    pub server_cpu_per_call_ns: Option<f64>,
    /// How server CPU was read.
    pub server_cpu_source: String,
    /// Server system calls per completed call over the window (perf's
    /// `raw_syscalls:sys_enter` on the server's threads; `io_uring_enter`
    /// included). None: see `server_syscalls_note`.
    #[serde(default)]
    pub server_syscalls_per_call: Option<f64>,
    /// `io_uring_enter` calls per completed call (part of the above).
    #[serde(default)]
    pub server_io_uring_enter_per_call: Option<f64>,
    /// Server system calls over the window.
    #[serde(default)]
    pub server_syscalls: Option<u64>,
    /// Why the server's system calls were not counted.
    #[serde(default)]
    pub server_syscalls_note: Option<String>,
    /// Busy time of all CPUs together during the window minus the client's
    /// engine thread and the server (s): other work anywhere on the machine.
    /// Unknown (None) when the server's CPU time is not measured.
    pub other_cpu_s: Option<f64>,
    /// Load on the client's CPU during the window.
    pub client_core: Option<CoreLoad>,
    /// Load on the server's CPU during the window.
    pub server_core: Option<CoreLoad>,
    /// CPU the client was pinned to.
    pub client_cpu: Option<usize>,
    /// CPU the server was pinned to.
    pub server_cpu: Option<usize>,
    /// Whether the client pin succeeded.
    pub client_pinned: bool,
    /// Engine's timer slack (ns).
    pub client_timer_slack_ns: u64,
    /// Busy-polling instead of sleeping.
    pub spin: bool,
    /// Open loop: busy-poll when the next send is this close (us).
    pub spin_below_us: f64,
    /// Latency floor measured in the same invocation, with the engine's timer slack (1 ns).
    pub floor: Option<Floor>,
    /// The same floor with the kernel's default timer slack.
    pub floor_default_slack: Option<Floor>,
    /// The machine.
    pub machine: Machine,
    /// `git rev-parse HEAD`.
    pub git_commit: Option<String>,
    /// When the window started (UTC).
    pub timestamp: String,
    /// The command line.
    pub command: String,
    /// Warnings about the figures (client saturated, incomplete calls...).
    pub warnings: Vec<String>,
}

/// What the caller knows about the run besides the engine's outcome.
#[derive(Debug, Clone, Default)]
pub struct RunMeta {
    /// Run name.
    pub run: String,
    /// Server label.
    pub server: String,
    /// Server CPU.
    pub server_cpu: Option<usize>,
    /// Floor measured in the same invocation (timer slack 1 ns).
    pub floor: Option<Floor>,
    /// Floor with the default timer slack.
    pub floor_default_slack: Option<Floor>,
    /// Command line.
    pub command: String,
}

impl Summary {
    /// Builds the summary of a run.
    pub fn new(cfg: &RunConfig, out: &RunOutcome, meta: &RunMeta) -> Self {
        let lat = Percentiles::of(&out.latency);
        let secs = out.measured.as_secs_f64();
        let per_call = |ns: u64| if out.completed > 0 { ns as f64 / out.completed as f64 } else { 0.0 };
        let (arrival, in_flight, offered) = match cfg.mode {
            Mode::Closed { in_flight } => (None, Some(in_flight), None),
            Mode::Open { rate, arrival } => (Some(arrival.name().to_string()), None, Some(rate)),
        };
        let lateness = matches!(cfg.mode, Mode::Open { .. }).then(|| Percentiles::of(&out.lateness));
        let client_util = out.client_cpu.total_ns as f64 / 1e9 / secs;
        let mut warnings = Vec::new();
        if client_util > 0.9 && !cfg.spin && cfg.spin_below.is_zero() {
            warnings.push(format!(
                "client CPU at {:.0}% of its core: the load generator may be the bottleneck",
                client_util * 100.0
            ));
        }
        if let Some(rate) = offered {
            let achieved = out.achieved_rate();
            if achieved < rate * 0.95 {
                warnings.push(format!("achieved {achieved:.0}/s is below the offered {rate:.0}/s"));
            }
        }
        if out.incomplete > 0 {
            warnings.push(format!("{} requests in the window were never answered", out.incomplete));
        }
        if out.failed + out.mismatched + out.unknown > 0 {
            warnings.push(format!(
                "{} failed, {} wrong answers, {} answers for unknown ids",
                out.failed, out.mismatched, out.unknown
            ));
        }
        if out.state_late > 0 {
            warnings.push(format!(
                "{} replies arrived before the STATE message of their call (the protocol sends STATE first)",
                out.state_late
            ));
        }
        if out.disconnects > 0 {
            warnings.push(format!(
                "{} connections lost: {}",
                out.disconnects,
                out.disconnect_reason.as_deref().unwrap_or("?")
            ));
        }
        if out.completed == 0 {
            warnings.push("no call completed in the measured window".into());
        }
        let client_core = CoreLoad::of(&out.cores, cfg.client_cpu, Some(out.client_cpu.total_ns), secs);
        let server_core = CoreLoad::of(&out.cores, meta.server_cpu, out.server_cpu.map(|c| c.total_ns), secs);
        let all_busy: u64 = out.cores.iter().map(|c| c.busy_ns).sum();
        let other_cpu = out
            .server_cpu
            .filter(|_| !out.cores.is_empty())
            .map(|srv| all_busy.saturating_sub(out.client_cpu.total_ns + srv.total_ns) as f64 / 1e9);
        if let Some(o) = other_cpu.filter(|o| o / secs > 0.10) {
            warnings.push(format!(
                "other work used {:.0}% of a CPU during the window: figures are contaminated",
                o / secs * 100.0
            ));
        }
        for (side, core) in [("client", client_core), ("server", server_core)] {
            if let Some(c) = core {
                if c.other > 0.10 {
                    warnings.push(format!(
                        "the {side}'s cpu {} spent {:.0}% of the window on other work: figures are contaminated",
                        c.cpu,
                        c.other * 100.0
                    ));
                }
                if c.steal > 0.05 {
                    warnings.push(format!("cpu {} lost {:.0}% of the window to steal", c.cpu, c.steal * 100.0));
                }
            }
        }
        Self {
            run: meta.run.clone(),
            server: meta.server.clone(),
            scenario: cfg.scenario.name(),
            mode: cfg.mode.name().into(),
            arrival,
            connections: cfg.connections,
            in_flight,
            offered_rate: offered,
            achieved_rate: out.achieved_rate(),
            warmup_s: cfg.warmup.as_secs_f64(),
            duration_s: secs,
            sent: out.sent,
            completed: out.completed,
            failed: out.failed,
            mismatched: out.mismatched,
            incomplete: out.incomplete,
            state_late: out.state_late,
            disconnects: out.disconnects,
            disconnect_reason: out.disconnect_reason.clone(),
            p50_us: lat.p50_us,
            p90_us: lat.p90_us,
            p99_us: lat.p99_us,
            p99_9_us: lat.p99_9_us,
            p99_99_us: lat.p99_99_us,
            max_us: lat.max_us,
            mean_us: lat.mean_us,
            service: Percentiles::of(&out.service),
            send_lateness_p99_us: lateness.map(|l| l.p99_us),
            send_lateness: lateness,
            client_cpu_s: out.client_cpu.total_ns as f64 / 1e9,
            client_cpu_user_s: out.client_cpu.user_ns as f64 / 1e9,
            client_cpu_sys_s: out.client_cpu.sys_ns as f64 / 1e9,
            client_cpu_util: client_util,
            client_cpu_per_call_ns: per_call(out.client_cpu.total_ns),
            client_syscalls_per_call: out.syscalls.per_answer(),
            client_syscalls: [out.syscalls.reads, out.syscalls.writes, out.syscalls.waits],
            server_cpu_s: out.server_cpu.map(|c| c.total_ns as f64 / 1e9),
            server_cpu_user_s: out.server_cpu.map(|c| c.user_ns as f64 / 1e9),
            server_cpu_sys_s: out.server_cpu.map(|c| c.sys_ns as f64 / 1e9),
            server_cpu_util: out.server_cpu.map(|c| c.total_ns as f64 / 1e9 / secs),
            server_cpu_per_call_ns: out.server_cpu.map(|c| per_call(c.total_ns)),
            server_cpu_source: cfg.server_cpu.describe(),
            server_syscalls_per_call: out.server_syscalls.as_ref().ok().map(|n| per_call(n.total)),
            server_io_uring_enter_per_call: out.server_syscalls.as_ref().ok().map(|n| per_call(n.io_uring_enter)),
            server_syscalls: out.server_syscalls.as_ref().ok().map(|n| n.total),
            server_syscalls_note: out.server_syscalls.as_ref().err().cloned(),
            other_cpu_s: other_cpu,
            client_core,
            server_core,
            client_cpu: cfg.client_cpu,
            server_cpu: meta.server_cpu,
            client_pinned: out.pinned,
            client_timer_slack_ns: out.timer_slack_ns,
            spin: cfg.spin,
            spin_below_us: cfg.spin_below.as_secs_f64() * 1e6,
            floor: meta.floor.clone(),
            floor_default_slack: meta.floor_default_slack.clone(),
            machine: Machine::detect(),
            git_commit: git_commit(),
            timestamp: rfc3339(out.started_at),
            command: meta.command.clone(),
            warnings,
        }
    }
}

/// The files of one run directory.
pub mod files {
    /// Latency from intended send time, percentile distribution (us).
    pub const LATENCY_HGRM: &str = "latency.hgrm";
    /// Latency from actual send time (us).
    pub const SERVICE_HGRM: &str = "service.hgrm";
    /// Send lateness (us), open loop.
    pub const LATENESS_HGRM: &str = "send-lateness.hgrm";
    /// Interval log of latency.
    pub const LATENCY_HLOG: &str = "latency.hlog";
    /// Summary.
    pub const SUMMARY: &str = "summary.json";
}

/// Writes a run's files under `dir` (created). Returns the directory.
pub fn write_run(dir: &Path, cfg: &RunConfig, out: &RunOutcome, summary: &Summary) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    fs::write(dir.join(files::LATENCY_HGRM), hgrm(&out.latency, NS_PER_US))?;
    fs::write(dir.join(files::SERVICE_HGRM), hgrm(&out.service, NS_PER_US))?;
    if matches!(cfg.mode, Mode::Open { .. }) {
        fs::write(dir.join(files::LATENESS_HGRM), hgrm(&out.lateness, NS_PER_US))?;
    }
    let comment = format!("loadgen run {} ({}): latency from intended send time", summary.run, summary.command);
    let log = interval_log(&out.intervals, out.started_at, &comment).map_err(io::Error::other)?;
    fs::write(dir.join(files::LATENCY_HLOG), log)?;
    let json = serde_json::to_string_pretty(summary).map_err(io::Error::other)?;
    fs::write(dir.join(files::SUMMARY), json + "\n")?;
    Ok(dir.to_path_buf())
}

/// Reads a `summary.json`.
pub fn read_summary(dir: &Path) -> Result<Summary, String> {
    let p = dir.join(files::SUMMARY);
    let text = fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Histogram<u64> {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for i in 1..=10_000u64 {
            h.record(i * 1000).unwrap(); // 1 us .. 10 ms
        }
        h.record(50_000_000).unwrap();
        h
    }

    #[test]
    fn hgrm_round_trips_percentiles_and_counts() {
        let h = sample();
        let text = hgrm(&h, NS_PER_US);
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"), "{text}");
        assert!(text.contains("#[Buckets = "));
        assert!(text.contains("SubBuckets     =         2048]"));
        let p = Hgrm::parse(&text).unwrap();
        assert_eq!(p.total_count, h.len());
        assert_eq!(p.points.last().unwrap().total_count, h.len());
        assert!((p.max - h.max() as f64 / 1000.0).abs() < 0.01);
        for q in [0.5, 0.9, 0.99] {
            let want = h.value_at_quantile(q) as f64 / 1000.0;
            let got = p.value_at(q);
            assert!((got - want).abs() <= want * 0.002 + 0.001, "q {q}: {got} vs {want}");
        }
        // Percentiles and counts never go down.
        assert!(p.points.windows(2).all(|w| w[0].quantile <= w[1].quantile && w[0].total_count <= w[1].total_count));
    }

    #[test]
    fn interval_log_round_trips() {
        let h = sample();
        let ivs = vec![
            Interval { start: Duration::ZERO, length: Duration::from_secs(1), hist: h.clone() },
            Interval { start: Duration::from_secs(1), length: Duration::from_millis(500), hist: h.clone() },
        ];
        let log = interval_log(&ivs, SystemTime::now(), "test run").unwrap();
        let text = String::from_utf8(log.clone()).unwrap();
        assert!(text.contains("\"StartTimestamp\",\"Interval_Length\""), "{text}");
        assert_eq!(text.matches("#[MaxValueDivisor").count(), 1, "{text}");
        let back = read_interval_log(&log).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].0, Duration::from_secs(1));
        assert_eq!(back[0].1, h);
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_700_000_000)), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn machine_is_detected() {
        let m = Machine::detect();
        assert!(m.cpus >= 1);
        assert!(m.kernel.starts_with("Linux"), "{}", m.kernel);
    }
}
