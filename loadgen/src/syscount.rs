//! The server's system calls over the measured window, counted by perf on
//! the kernel's syscall tracepoints.
//!
//! Why perf tracepoints: the target counts syscalls per call,
//! `io_uring_enter` included, and there is no `/proc` counter of a thread's
//! system calls (`/proc/PID/io`'s `syscr`/`syscw` count only read- and
//! write-family calls, not `recvfrom`, `sendto` or `io_uring_enter`).
//! `strace -c` stops the thread at every call and distorts the very timing
//! being measured; perf's hardware counters are unsupported on this VM, but
//! tracepoints work. `perf stat -e raw_syscalls:sys_enter` counts in the
//! kernel with no stop, on exactly the server's threads (`-t` for the
//! embedded server's shard threads, `-p` for a peer process).
//!
//! perf starts before the run with its counters disabled (`--delay=-1`),
//! and the engine enables and disables them at the window's edges through
//! perf's control FIFO (`--control`), waiting for perf's acknowledgement, so
//! the count covers the same window as the CPU figures.
//!
//! Cost: while any syscall tracepoint is registered, the kernel sends every
//! thread's syscalls through its tracing slow path (tens of ns each), client
//! included. `RunConfig::count_server_syscalls` turns counting off.
//!
//! When perf is missing or refuses, every step returns an error saying why
//! (the table shows `n/a` and the reason).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The tracepoint counting every system call entry.
pub const ALL_SYSCALLS: &str = "raw_syscalls:sys_enter";
/// The tracepoint counting `io_uring_enter` alone.
pub const IO_URING_ENTER: &str = "syscalls:sys_enter_io_uring_enter";

/// The server's system calls in the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerSyscalls {
    /// Every system call (`raw_syscalls:sys_enter`).
    pub total: u64,
    /// `io_uring_enter` calls (included in `total`).
    pub io_uring_enter: u64,
}

/// Which threads to count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyscallTarget {
    /// These thread ids (the embedded server's shard threads).
    Threads(Vec<i32>),
    /// Every thread of this process (a peer).
    Process(u32),
}

/// A running `perf stat`, counters disabled until [`SyscallCounter::enable`].
pub struct SyscallCounter {
    child: Child,
    dir: PathBuf,
    ctl: File,
    ack: File,
}

/// How long perf may take to set up, and to acknowledge a command.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
const ACK_TIMEOUT: Duration = Duration::from_secs(1);

impl SyscallCounter {
    /// Starts perf on `target` and waits until its (disabled) counters exist.
    pub fn start(target: &SyscallTarget) -> Result<Self, String> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "loadgen-perf-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let cleanup = |e: String| {
            let _ = fs::remove_dir_all(&dir);
            e
        };
        let (ctl_path, ack_path) = (dir.join("ctl"), dir.join("ack"));
        for p in [&ctl_path, &ack_path] {
            mkfifo(p).map_err(cleanup)?;
        }
        let mut cmd = Command::new("perf");
        cmd.args(["stat", "-x", ",", "--delay=-1", "-e", ALL_SYSCALLS, "-e", IO_URING_ENTER, "-o"]);
        cmd.arg(dir.join("counts"));
        cmd.arg(format!("--control=fifo:{},{}", ctl_path.display(), ack_path.display()));
        match target {
            SyscallTarget::Threads(tids) if tids.is_empty() => {
                return Err(cleanup("no server thread to count".into()));
            }
            SyscallTarget::Threads(tids) => {
                let list: Vec<String> = tids.iter().map(|t| t.to_string()).collect();
                cmd.args(["-t", &list.join(",")]);
            }
            SyscallTarget::Process(pid) => {
                cmd.args(["-p", &pid.to_string()]);
            }
        }
        let stderr = File::create(dir.join("stderr")).map_err(|e| cleanup(format!("perf's stderr file: {e}")))?;
        let child = match cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr).spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(cleanup("perf is not installed (Debian: apt-get install linux-perf)".into()))
            }
            Err(e) => return Err(cleanup(format!("cannot start perf: {e}"))),
        };
        // perf opens both FIFOs read-write, so opening them read-write here
        // never blocks whichever side comes first.
        let open = |p: &PathBuf| OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK).open(p);
        let (ctl, ack) = match (open(&ctl_path), open(&ack_path)) {
            (Ok(c), Ok(a)) => (c, a),
            (Err(e), _) | (_, Err(e)) => return Err(cleanup(format!("perf control FIFO: {e}"))),
        };
        let mut counter = Self { child, dir, ctl, ack };
        // perf says `Events disabled` once its counters exist.
        let t0 = Instant::now();
        loop {
            if counter.stderr().contains("Events disabled") {
                return Ok(counter);
            }
            if let Ok(Some(status)) = counter.child.try_wait() {
                return Err(format!("perf exited ({status}) before counting: {}", counter.stderr_line()));
            }
            if t0.elapsed() > READY_TIMEOUT {
                return Err(format!("perf did not set up its counters within {READY_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Starts counting (the window opens).
    pub fn enable(&mut self) -> Result<(), String> {
        self.command("enable")
    }

    /// Stops counting (the window closes).
    pub fn disable(&mut self) -> Result<(), String> {
        self.command("disable")
    }

    /// Ends perf and returns what it counted while enabled.
    pub fn finish(mut self) -> Result<ServerSyscalls, String> {
        // SAFETY: kill with a pid we spawned and have not yet waited for.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let t0 = Instant::now();
        while self.child.try_wait().map_err(|e| format!("waiting for perf: {e}"))?.is_none() {
            if t0.elapsed() > READY_TIMEOUT {
                return Err("perf did not exit within 5 s of SIGINT".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let text = fs::read_to_string(self.dir.join("counts")).unwrap_or_default();
        let total = parse_count(&text, ALL_SYSCALLS)
            .ok_or_else(|| format!("perf counted nothing for {ALL_SYSCALLS}: {}", self.stderr_line()))?;
        Ok(ServerSyscalls { total, io_uring_enter: parse_count(&text, IO_URING_ENTER).unwrap_or(0) })
    }

    fn command(&mut self, cmd: &str) -> Result<(), String> {
        self.ctl.write_all(format!("{cmd}\n").as_bytes()).map_err(|e| format!("perf control: {e}"))?;
        let mut pfd = libc::pollfd { fd: self.ack.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one pollfd, which lives across the call.
        let n = unsafe { libc::poll(&mut pfd, 1, ACK_TIMEOUT.as_millis() as i32) };
        if n <= 0 {
            return Err(format!("perf did not acknowledge `{cmd}` within {ACK_TIMEOUT:?}"));
        }
        let mut buf = [0u8; 64];
        let _ = self.ack.read(&mut buf);
        Ok(())
    }

    fn stderr(&self) -> String {
        fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    /// perf's first meaningful error line, for messages.
    fn stderr_line(&self) -> String {
        let s = self.stderr();
        s.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with("Events")).unwrap_or("").to_string()
    }
}

impl Drop for SyscallCounter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn mkfifo(p: &std::path::Path) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: a NUL-terminated path that lives across the call.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(format!("mkfifo {}: {}", p.display(), std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The count of `event` in `perf stat -x,` output (`<not counted>`: None).
fn parse_count(text: &str, event: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(',').collect();
        (f.len() >= 3 && f[2] == event).then(|| f[0].trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_csv_is_parsed() {
        let text = "# started on x\n\n109,,raw_syscalls:sys_enter,991258,100.00,,\n<not counted>,,syscalls:sys_enter_io_uring_enter,0,0.00,,\n";
        assert_eq!(parse_count(text, ALL_SYSCALLS), Some(109));
        assert_eq!(parse_count(text, IO_URING_ENTER), None);
        assert_eq!(parse_count("", ALL_SYSCALLS), None);
    }

    /// Runs only where perf works: counts a thread that makes a known
    /// number of system calls while enabled, and none while disabled.
    #[test]
    fn counts_a_threads_syscalls_in_the_enabled_window_only() {
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<u32>();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let worker = std::thread::spawn(move || {
            tid_tx.send(crate::cpu::this_tid()).unwrap();
            while let Ok(n) = go_rx.recv() {
                for _ in 0..n {
                    // SAFETY: getppid has no preconditions.
                    unsafe { libc::syscall(libc::SYS_getppid) };
                }
                done_tx.send(()).unwrap();
            }
        });
        let tid = tid_rx.recv().unwrap();
        let mut c = match SyscallCounter::start(&SyscallTarget::Threads(vec![tid])) {
            Ok(c) => c,
            // Only a machine without perf skips; any other failure fails.
            Err(e) if e.contains("not installed") => {
                eprintln!("skipped: {e}");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        go_tx.send(5000).unwrap(); // before the window: not counted
        done_rx.recv().unwrap();
        c.enable().unwrap();
        go_tx.send(20_000).unwrap();
        done_rx.recv().unwrap();
        c.disable().unwrap();
        go_tx.send(5000).unwrap(); // after the window: not counted
        done_rx.recv().unwrap();
        let n = c.finish().unwrap();
        drop(go_tx);
        worker.join().unwrap();
        // The 20,000 getppid calls, plus the worker's few channel futex calls.
        assert!(n.total >= 20_000 && n.total < 20_100, "{n:?}");
        assert_eq!(n.io_uring_enter, 0);
    }
}
