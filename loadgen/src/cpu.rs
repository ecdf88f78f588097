//! CPU time of the load generator and of the server, pinning, timer slack.
//!
//! The client's engine thread reads its own time with
//! `getrusage(RUSAGE_THREAD)`. Server time comes from `/proc`: each thread's
//! `schedstat` (nanoseconds on the CPU) where the kernel has it, otherwise
//! `stat`'s utime + stime in clock ticks; the user/system split always comes
//! from `stat`.

use std::fs;
use std::path::Path;
use std::time::Duration;

/// CPU time in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTime {
    /// Total on-CPU time.
    pub total_ns: u64,
    /// User part (tick resolution when read from `/proc/*/stat`).
    pub user_ns: u64,
    /// System part.
    pub sys_ns: u64,
}

impl CpuTime {
    /// `self - earlier`, saturating.
    pub fn since(&self, earlier: &CpuTime) -> CpuTime {
        CpuTime {
            total_ns: self.total_ns.saturating_sub(earlier.total_ns),
            user_ns: self.user_ns.saturating_sub(earlier.user_ns),
            sys_ns: self.sys_ns.saturating_sub(earlier.sys_ns),
        }
    }

    fn add(&mut self, o: CpuTime) {
        self.total_ns += o.total_ns;
        self.user_ns += o.user_ns;
        self.sys_ns += o.sys_ns;
    }
}

/// CPU time of the calling thread.
pub fn this_thread() -> CpuTime {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we pass.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    if rc != 0 {
        return CpuTime::default();
    }
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    let (user_ns, sys_ns) = (tv(ru.ru_utime), tv(ru.ru_stime));
    CpuTime { total_ns: user_ns + sys_ns, user_ns, sys_ns }
}

/// Linux thread id of the calling thread.
pub fn this_tid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

fn tick_ns() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        1_000_000_000 / hz as u64
    } else {
        10_000_000
    }
}

/// utime and stime (ns) from a `/proc/.../stat` line.
fn parse_stat(text: &str) -> Option<(u64, u64)> {
    // The command name may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    let t = tick_ns();
    Some((utime * t, stime * t))
}

/// CPU time of one task directory (`/proc/PID/task/TID`).
fn task_cpu(dir: &Path) -> Option<CpuTime> {
    let (user_ns, sys_ns) = parse_stat(&fs::read_to_string(dir.join("stat")).ok()?)?;
    let total_ns = fs::read_to_string(dir.join("schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(user_ns + sys_ns);
    Some(CpuTime { total_ns, user_ns, sys_ns })
}

/// Sum over the threads of process `pid` (`"self"` for this process) whose
/// name (`comm`, at most 15 bytes) starts with `prefix`; all threads when
/// `prefix` is empty. Returns the time and the number of threads matched.
pub fn threads(pid: &str, prefix: &str) -> (CpuTime, usize) {
    let mut sum = CpuTime::default();
    let mut n = 0;
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return (sum, 0);
    };
    for entry in dir.flatten() {
        let path = entry.path();
        if !prefix.is_empty() {
            let comm = fs::read_to_string(path.join("comm")).unwrap_or_default();
            if !comm.trim_end().starts_with(prefix) {
                continue;
            }
        }
        if let Some(t) = task_cpu(&path) {
            sum.add(t);
            n += 1;
        }
    }
    (sum, n)
}

/// Ids of the threads of process `pid` whose name starts with `prefix`.
pub fn thread_ids(pid: &str, prefix: &str) -> Vec<i32> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| fs::read_to_string(e.path().join("comm")).unwrap_or_default().trim_end().starts_with(prefix))
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// How to read the server's CPU time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerCpuSource {
    /// Not measured.
    None,
    /// Threads of this process whose name starts with the prefix (the
    /// embedded glommio server: `hardlight-shard`, as Linux truncates
    /// `hardlight-shard-N` to 15 bytes).
    ThreadsNamed(String),
    /// Every thread of another process.
    Pid(u32),
}

/// Thread-name prefix of the embedded server's shards.
pub const SHARD_THREAD_PREFIX: &str = "hardlight-shard";

impl ServerCpuSource {
    /// Current cumulative CPU time, or `None` when not measured or nothing matched.
    pub fn read(&self) -> Option<CpuTime> {
        let (t, n) = match self {
            Self::None => return None,
            Self::ThreadsNamed(prefix) => threads("self", prefix),
            Self::Pid(pid) => threads(&pid.to_string(), ""),
        };
        (n > 0).then_some(t)
    }

    /// The threads whose system calls count as the server's: the same
    /// threads whose CPU time [`ServerCpuSource::read`] sums.
    pub fn syscall_target(&self) -> Option<crate::syscount::SyscallTarget> {
        use crate::syscount::SyscallTarget;
        match self {
            Self::None => None,
            Self::ThreadsNamed(prefix) => Some(SyscallTarget::Threads(thread_ids("self", prefix))),
            Self::Pid(pid) => Some(SyscallTarget::Process(*pid)),
        }
    }

    /// A short description for summaries.
    pub fn describe(&self) -> String {
        match self {
            Self::None => "not measured".into(),
            Self::ThreadsNamed(p) => format!("threads named {p}* in this process"),
            Self::Pid(pid) => format!("pid {pid}"),
        }
    }
}

/// Cumulative time of one CPU from `/proc/stat` (ns).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreTimes {
    /// user + nice + system + irq + softirq.
    pub busy_ns: u64,
    /// softirq alone (on loopback, much of TCP's receive path runs here).
    pub softirq_ns: u64,
    /// Time the hypervisor ran something else while this vCPU wanted to run.
    pub steal_ns: u64,
    /// idle + iowait.
    pub idle_ns: u64,
}

impl CoreTimes {
    /// `self - earlier`, saturating.
    pub fn since(&self, e: &CoreTimes) -> CoreTimes {
        CoreTimes {
            busy_ns: self.busy_ns.saturating_sub(e.busy_ns),
            softirq_ns: self.softirq_ns.saturating_sub(e.softirq_ns),
            steal_ns: self.steal_ns.saturating_sub(e.steal_ns),
            idle_ns: self.idle_ns.saturating_sub(e.idle_ns),
        }
    }
}

/// Per-CPU times from `/proc/stat`, indexed by CPU number.
pub fn cores() -> Vec<CoreTimes> {
    parse_proc_stat(&fs::read_to_string("/proc/stat").unwrap_or_default(), tick_ns())
}

fn parse_proc_stat(text: &str, tick: u64) -> Vec<CoreTimes> {
    let mut out = Vec::new();
    for line in text.lines() {
        // `cpuN ...` lines only; the aggregate `cpu  ...` line has a space after `cpu`.
        let Some(rest) = line.strip_prefix("cpu").filter(|r| r.starts_with(|c: char| c.is_ascii_digit())) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let Some(Ok(idx)) = f.next().map(str::parse::<usize>) else { continue };
        let v: Vec<u64> = f.map(|x| x.parse().unwrap_or(0)).collect();
        let g = |i: usize| v.get(i).copied().unwrap_or(0) * tick;
        // user nice system idle iowait irq softirq steal
        let t = CoreTimes {
            busy_ns: g(0) + g(1) + g(2) + g(5) + g(6),
            softirq_ns: g(6),
            steal_ns: g(7),
            idle_ns: g(3) + g(4),
        };
        if out.len() <= idx {
            out.resize(idx + 1, CoreTimes::default());
        }
        out[idx] = t;
    }
    out
}

/// Pins the calling thread to `cpu`. Returns false if the CPU does not exist
/// or the call failed.
pub fn pin_to(cpu: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
}

/// Sets the calling thread's timer slack. Linux delays a sleeping thread's
/// wake-up by up to its slack (50 us by default) to batch timer interrupts;
/// a load generator that paces sends wants 1 ns.
pub fn set_timer_slack_ns(ns: u64) -> bool {
    // SAFETY: PR_SET_TIMERSLACK takes one unsigned long and affects only this thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong, 0, 0, 0) == 0 }
}

/// The calling thread's timer slack in ns.
pub fn timer_slack_ns() -> u64 {
    // SAFETY: PR_GET_TIMERSLACK takes no pointer arguments.
    let r = unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) };
    r.max(0) as u64
}

/// Waits until each of `cpus` has been less than `max_busy` busy for 3
/// seconds in a row, at most `limit`. Returns the last busy fractions seen
/// and whether the machine went quiet.
pub fn wait_quiet(cpus: &[usize], max_busy: f64, limit: Duration) -> (Vec<f64>, bool) {
    let start = std::time::Instant::now();
    let mut quiet_for = 0;
    loop {
        let a = cores();
        std::thread::sleep(Duration::from_secs(1));
        let b = cores();
        let last: Vec<f64> = cpus
            .iter()
            .map(|&c| match (b.get(c), a.get(c)) {
                (Some(b), Some(a)) => {
                    let d = b.since(a);
                    d.busy_ns as f64 / (d.busy_ns + d.idle_ns + d.steal_ns).max(1) as f64
                }
                _ => 0.0,
            })
            .collect();
        quiet_for = if last.iter().all(|&x| x < max_busy) { quiet_for + 1 } else { 0 };
        if quiet_for >= 3 {
            return (last, true);
        }
        if start.elapsed() >= limit {
            return (last, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_per_cpu() {
        let text = "cpu  10 0 10 100 0 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\ncpu1 10 0 0 50 0 0 1 3 0 0\nintr 5\n";
        let c = parse_proc_stat(text, 10);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0], CoreTimes { busy_ns: (1 + 2 + 3 + 6 + 7) * 10, softirq_ns: 70, steal_ns: 80, idle_ns: 90 });
        assert_eq!(c[1].busy_ns, 110);
        assert!(!cores().is_empty());
    }

    #[test]
    fn stat_parsing_survives_odd_names() {
        let line = "1234 (a b) c)) S 1 2 3 4 5 6 7 8 9 10 250 30 0 0 20 0 1 0";
        let (u, s) = parse_stat(line).unwrap();
        assert_eq!(u, 250 * tick_ns());
        assert_eq!(s, 30 * tick_ns());
    }

    /// Burns this thread's CPU until it has used `ns` (bounded by 10 s of wall time).
    fn burn(ns: u64) -> CpuTime {
        let before = this_thread();
        let t0 = std::time::Instant::now();
        loop {
            for _ in 0..10_000 {
                std::hint::black_box(0u64);
            }
            let spent = this_thread().since(&before);
            if spent.total_ns >= ns || t0.elapsed().as_secs() >= 10 {
                return spent;
            }
        }
    }

    #[test]
    fn own_thread_and_named_threads_are_measured() {
        let spent = burn(10_000_000);
        assert!(spent.total_ns >= 10_000_000, "{spent:?}");
        let (all, n) = threads("self", "");
        assert!(n >= 1 && all.total_ns >= spent.total_ns);
        let spinner = std::thread::Builder::new()
            .name("lgtest-spin".into())
            .spawn(|| {
                let own = burn(20_000_000);
                (own, threads("self", "lgtest-spin"))
            })
            .unwrap();
        let (own, (t, n)) = spinner.join().unwrap();
        assert_eq!(n, 1);
        // schedstat (ns) and getrusage agree to within the rusage granularity.
        assert!(t.total_ns + 1_000_000 >= own.total_ns, "{t:?} vs {own:?}");
        assert_eq!(ServerCpuSource::ThreadsNamed("no-such-thread".into()).read(), None);
        assert!(ServerCpuSource::Pid(std::process::id()).read().is_some());
    }
}
