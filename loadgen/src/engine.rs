//! The load engine: one thread, pinned to the client CPU, driving every
//! connection from a hand-rolled `epoll` loop.
//!
//! Why not tokio: tokio's timer has millisecond granularity, so an open-loop
//! client paced by `tokio::time::sleep` sends in 1 ms lumps and adds up to a
//! millisecond of its own lateness to every latency it measures from the
//! intended send time. This loop waits with `epoll_pwait2`, whose timeout is
//! in nanoseconds, on a thread whose timer slack is set to 1 ns, and can
//! busy-poll instead (`spin`). It also does no per-call allocation and no
//! task wake-ups: per round and per connection it makes one `read`, parses
//! every complete frame in place, and makes one `write` of every request due.
//!
//! Latency is recorded in nanoseconds into HdrHistograms:
//! - `latency`: receive time minus the request's *intended* send time. In
//!   closed loop the intended time is the actual send time; in open loop it
//!   is the schedule's, so a request the client could not send on time
//!   (every id in flight, socket full, client late) is charged for the wait,
//!   as wrk2 does (no coordinated omission).
//! - `service`: receive time minus the actual send time.
//! - `lateness`: actual minus intended send time (open loop): the client's own
//!   contribution, to be read beside the machine's latency floor.
//!
//! Only requests whose intended send time falls inside the measured window
//! (after the warm-up) are recorded. After the window, no new request is
//! scheduled; requests already due are still sent and answers still counted
//! until the drain timeout, and whatever is left is reported as incomplete.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant, SystemTime};

use hardlight::frame::{self, Opcode, Role};
use hdrhistogram::Histogram;

use crate::cpu::{self, CoreTimes, CpuTime, ServerCpuSource};
use crate::scenario::{Delivery, Scenario, Workload};
use crate::syscount::ServerSyscalls;
use crate::window::{Edge, Window};
use crate::ws::{self, FrameTemplate, Target};

/// Largest message this tool accepts from a server.
pub const MAX_MESSAGE: usize = 16 << 20;

/// Calls in flight per connection at most (call ids are a `u8`).
pub const MAX_IN_FLIGHT: usize = 256;

const FREE: u64 = u64::MAX;
const READ_BUF: usize = 64 * 1024;

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

    fn validate(&self) -> Result<(), String> {
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

/// Runs the load on a new thread (pinned to `client_cpu`) and waits for it.
pub fn run(cfg: &RunConfig) -> Result<RunOutcome, String> {
    cfg.validate()?;
    let cfg = cfg.clone();
    std::thread::Builder::new()
        .name("loadgen-engine".into())
        .spawn(move || Engine::run(cfg))
        .map_err(|e| format!("spawn engine thread: {e}"))?
        .join()
        .map_err(|_| "engine thread panicked".to_string())?
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

/// A ring of free call ids.
struct IdRing {
    ids: [u8; 256],
    head: usize,
    len: usize,
}

impl IdRing {
    fn full() -> Self {
        let mut ids = [0u8; 256];
        for (i, x) in ids.iter_mut().enumerate() {
            *x = i as u8;
        }
        Self { ids, head: 0, len: 256 }
    }

    #[inline]
    fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let id = self.ids[self.head];
        self.head = (self.head + 1) & 255;
        self.len -= 1;
        Some(id)
    }

    #[inline]
    fn push(&mut self, id: u8) {
        debug_assert!(self.len < 256);
        self.ids[(self.head + self.len) & 255] = id;
        self.len += 1;
    }
}

/// xorshift64*: cheap randomness for Poisson gaps.
struct Rng(u64);

impl Rng {
    #[inline]
    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in (0, 1].
    #[inline]
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
}

/// Counters and histograms shared by every connection of a run.
struct Recorder {
    latency: Histogram<u64>,
    service: Histogram<u64>,
    lateness: Histogram<u64>,
    interval: Histogram<u64>,
    win_start: u64,
    win_end: u64,
    sent: u64,
    completed: u64,
    failed: u64,
    mismatched: u64,
    unknown: u64,
    incomplete: u64,
    /// Replies (in the window) whose STATE message had not arrived first.
    state_late: u64,
}

impl Recorder {
    #[inline]
    fn in_window(&self, t: u64) -> bool {
        t >= self.win_start && t < self.win_end
    }
}

struct Conn {
    stream: TcpStream,
    fd: RawFd,
    rbuf: Vec<u8>,
    rlen: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    want_out: bool,
    free: IdRing,
    intended: Box<[u64; 256]>,
    actual: Box<[u64; 256]>,
    outstanding: usize,
    sends: bool,
    alive: bool,
    next_f: f64,
    next: u64,
    rng: Rng,
    mask: [u8; 4],
    tmpl: FrameTemplate,
    /// Whether each reply must follow a STATE message naming its call.
    check_state: bool,
    /// Calls in flight whose STATE message has arrived (a bit per id).
    state_seen: [u64; 4],
    /// `read` and `write` calls, and answers received, over the whole run.
    reads: u64,
    writes: u64,
    answers: u64,
}

enum ConnError {
    Closed(String),
    Io(io::Error),
}

impl Conn {
    #[inline]
    fn push_request(&mut self, id: u8, intended: u64, actual: u64) {
        self.tmpl.push(&mut self.wbuf, id, intended);
        self.intended[id as usize] = intended;
        self.actual[id as usize] = actual;
        self.outstanding += 1;
    }

    /// Writes as much of the pending output as the socket takes. Returns
    /// whether some output is still pending.
    fn flush(&mut self) -> io::Result<bool> {
        while self.wpos < self.wbuf.len() {
            self.writes += 1;
            match (&self.stream).write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
            Ok(false)
        } else {
            Ok(true)
        }
    }

    /// One `read`, then every complete frame in the buffer. Returns whether
    /// anything was read (false on WouldBlock).
    fn on_readable(&mut self, workload: &dyn Workload, rec: &mut Recorder, clock: &Clock) -> Result<bool, ConnError> {
        if self.rlen == self.rbuf.len() {
            let grow = self.rbuf.len();
            self.rbuf.resize(grow * 2, 0);
        }
        self.reads += 1;
        let n = match (&self.stream).read(&mut self.rbuf[self.rlen..]) {
            Ok(0) => return Err(ConnError::Closed("server closed the TCP connection".into())),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {
                return Ok(false)
            }
            Err(e) => return Err(ConnError::Io(e)),
        };
        let now = clock.now();
        self.rlen += n;
        self.parse(workload, rec, now)?;
        Ok(true)
    }

    fn parse(&mut self, workload: &dyn Workload, rec: &mut Recorder, now: u64) -> Result<(), ConnError> {
        let mut pos = 0;
        while pos < self.rlen {
            let h = match frame::parse_header(&self.rbuf[pos..self.rlen], Role::Client, MAX_MESSAGE) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => return Err(ConnError::Closed(format!("bad frame from server: {e}"))),
            };
            let total = h.header_len + h.payload_len as usize;
            if pos + total > self.rlen {
                if total > self.rbuf.len() {
                    self.rbuf.resize(total.next_power_of_two(), 0);
                }
                break;
            }
            let body = pos + h.header_len..pos + total;
            pos += total;
            match h.opcode {
                Opcode::Binary if h.fin => {
                    let d = workload.classify(&self.rbuf[body]);
                    self.deliver(d, rec, now)?;
                }
                Opcode::Ping => {
                    let payload = self.rbuf[body].to_vec();
                    ws::push_control(&mut self.wbuf, Opcode::Pong, &payload, self.mask);
                }
                Opcode::Pong => {}
                Opcode::Close => {
                    let b = &self.rbuf[body];
                    let code = if b.len() >= 2 { u16::from_be_bytes([b[0], b[1]]) } else { 1005 };
                    let reason = String::from_utf8_lossy(b.get(2..).unwrap_or(&[])).into_owned();
                    return Err(ConnError::Closed(format!("server sent Close {code} {reason}")));
                }
                other => {
                    return Err(ConnError::Closed(format!(
                    "unsupported frame from server: {other:?} fin={} (this tool reads unfragmented binary messages)",
                    h.fin
                )))
                }
            }
        }
        if pos > 0 {
            self.rbuf.copy_within(pos..self.rlen, 0);
            self.rlen -= pos;
        }
        Ok(())
    }

    #[inline]
    fn deliver(&mut self, d: Delivery, rec: &mut Recorder, now: u64) -> Result<(), ConnError> {
        let (id, outcome) = match d {
            Delivery::Reply { id } => (id, 0),
            Delivery::Mismatch { id } => (id, 1),
            Delivery::Failed { id, .. } => (id, 2),
            Delivery::Ack { id } => (id, 3),
            Delivery::State { id } => {
                if self.intended[id as usize] != FREE {
                    self.state_seen[id as usize / 64] |= 1 << (id % 64);
                }
                return Ok(());
            }
            Delivery::Stamped { stamp_ns } => {
                self.answers += 1;
                if rec.in_window(stamp_ns) {
                    let lat = now.saturating_sub(stamp_ns).max(1);
                    rec.latency.saturating_record(lat);
                    rec.interval.saturating_record(lat);
                    rec.completed += 1;
                }
                return Ok(());
            }
            Delivery::Ignore => return Ok(()),
            Delivery::Protocol => {
                return Err(ConnError::Closed("server sent a message this workload cannot parse".into()))
            }
        };
        let intended = self.intended[id as usize];
        if intended == FREE {
            rec.unknown += 1;
            return Ok(());
        }
        let actual = self.actual[id as usize];
        let (word, bit) = (id as usize / 64, 1u64 << (id % 64));
        let state_first = self.state_seen[word] & bit != 0;
        self.state_seen[word] &= !bit;
        self.answers += 1;
        self.intended[id as usize] = FREE;
        self.free.push(id);
        self.outstanding -= 1;
        if rec.in_window(intended) {
            if self.check_state && outcome == 0 && !state_first {
                rec.state_late += 1;
            }
            match outcome {
                0 => {
                    let lat = now.saturating_sub(intended).max(1);
                    rec.latency.saturating_record(lat);
                    rec.interval.saturating_record(lat);
                    rec.service.saturating_record(now.saturating_sub(actual).max(1));
                    rec.completed += 1;
                }
                1 => rec.mismatched += 1,
                2 => rec.failed += 1,
                _ => {}
            }
        }
        Ok(())
    }

    /// Advances the open-loop schedule by one gap.
    #[inline]
    fn advance(&mut self, mean_gap_ns: f64, arrival: Arrival) {
        let gap = match arrival {
            Arrival::Constant => mean_gap_ns,
            Arrival::Poisson => -self.rng.unit().ln() * mean_gap_ns,
        };
        self.next_f += gap;
        self.next = self.next_f as u64;
    }

    /// Requests in the window still outstanding, for the incomplete count.
    fn outstanding_in_window(&self, rec: &Recorder) -> u64 {
        self.intended.iter().filter(|&&t| t != FREE && rec.in_window(t)).count() as u64
    }
}

/// Nanoseconds since the engine's start.
struct Clock(Instant);

impl Clock {
    #[inline]
    fn now(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

struct Epoll {
    fd: RawFd,
    events: Vec<libc::epoll_event>,
    pwait2: bool,
}

impl Epoll {
    fn new() -> io::Result<Self> {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd, events: vec![libc::epoll_event { events: 0, u64: 0 }; 256], pwait2: true })
    }

    fn ctl(&self, op: i32, fd: RawFd, token: usize, out: bool) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP | if out { libc::EPOLLOUT } else { 0 }) as u32,
            u64: token as u64,
        };
        // SAFETY: ev lives across the call; fd values are ours.
        let rc = unsafe { libc::epoll_ctl(self.fd, op, fd, &mut ev) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Waits at most `timeout_ns` (None: forever). Returns the number of events.
    fn wait(&mut self, timeout_ns: Option<u64>) -> io::Result<usize> {
        let max = self.events.len() as i32;
        if self.pwait2 {
            let ts = timeout_ns.map(|ns| libc::timespec {
                tv_sec: (ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (ns % 1_000_000_000) as libc::c_long,
            });
            let tsp = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: the events buffer holds `max` entries; tsp is null or points at ts.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_epoll_pwait2,
                    self.fd,
                    self.events.as_mut_ptr(),
                    max,
                    tsp,
                    std::ptr::null::<libc::sigset_t>(),
                    0usize,
                )
            };
            if rc >= 0 {
                return Ok(rc as usize);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => return Ok(0),
                Some(libc::ENOSYS) => self.pwait2 = false,
                _ => return Err(e),
            }
        }
        let ms = timeout_ns.map_or(-1, |ns| ns.div_ceil(1_000_000).min(i32::MAX as u64) as i32);
        // SAFETY: as above.
        let rc = unsafe { libc::epoll_wait(self.fd, self.events.as_mut_ptr(), max, ms) };
        if rc >= 0 {
            Ok(rc as usize)
        } else {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                Ok(0)
            } else {
                Err(e)
            }
        }
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.fd) };
    }
}

struct Engine;

impl Engine {
    fn run(cfg: RunConfig) -> Result<RunOutcome, String> {
        let pinned = cfg.client_cpu.map(cpu::pin_to).unwrap_or(false);
        if let Some(c) = cfg.client_cpu {
            if !pinned {
                eprintln!("warning: could not pin the load generator to cpu {c}");
            }
        }
        cpu::set_timer_slack_ns(1);
        let timer_slack_ns = cpu::timer_slack_ns();
        let workload = cfg.scenario.workload();
        let template = workload.template();

        let connect_start = Instant::now();
        let mut conns = Vec::with_capacity(cfg.connections);
        for i in 0..cfg.connections {
            let nonce = ws::splitmix(cfg.seed ^ (i as u64).wrapping_mul(0x9E37_79B9));
            let up = ws::connect(&cfg.target, workload.subprotocol(), nonce, cfg.connect_timeout)
                .map_err(|e| format!("connection {i} to {}: {e}", cfg.target.addr))?;
            up.stream.set_nonblocking(true).map_err(|e| format!("set_nonblocking: {e}"))?;
            let m = ws::splitmix(nonce ^ 0xA5A5).to_le_bytes();
            let mask = [m[0], m[1], m[2], m[3]];
            let tmpl = FrameTemplate::new(&template.payload, template.id_at, template.stamp_at, mask)
                .with_id_also_at(template.id_also_at);
            let mut rbuf = vec![0u8; READ_BUF.max(up.leftover.len().next_power_of_two())];
            rbuf[..up.leftover.len()].copy_from_slice(&up.leftover);
            let mut wbuf = Vec::with_capacity(tmpl.bytes.len() * 64);
            for m in workload.setup_messages(i) {
                ws::push_control(&mut wbuf, Opcode::Binary, &m, mask);
            }
            conns.push(Conn {
                fd: up.stream.as_raw_fd(),
                stream: up.stream,
                rlen: up.leftover.len(),
                rbuf,
                wbuf,
                wpos: 0,
                want_out: false,
                free: IdRing::full(),
                intended: Box::new([FREE; 256]),
                actual: Box::new([0; 256]),
                outstanding: 0,
                sends: workload.sends(i, cfg.connections),
                alive: true,
                next_f: 0.0,
                next: 0,
                rng: Rng(ws::splitmix(nonce ^ 0x5A5A) | 1),
                mask,
                tmpl,
                check_state: workload.state_precedes_reply(),
                state_seen: [0; 4],
                reads: 0,
                writes: 0,
                answers: 0,
            });
        }
        let connect_time = connect_start.elapsed();

        let mut ep = Epoll::new().map_err(|e| format!("epoll: {e}"))?;
        for (i, c) in conns.iter().enumerate() {
            ep.ctl(libc::EPOLL_CTL_ADD, c.fd, i, false).map_err(|e| format!("epoll_ctl: {e}"))?;
        }

        let win_start = cfg.warmup.as_nanos() as u64;
        let win_end = win_start + cfg.duration.as_nanos() as u64;
        // Before the clock starts: starting perf takes a while.
        let mut window = Window::new(win_start, win_end, cfg.server_cpu.clone(), cfg.count_server_syscalls);
        let clock = Clock(Instant::now());
        let sec = 1_000_000_000u64;
        let spin_below = cfg.spin_below.as_nanos() as u64;
        let drain_end = win_end + cfg.drain.as_nanos() as u64;
        let mut rec = Recorder {
            latency: new_hist(),
            service: new_hist(),
            lateness: new_hist(),
            interval: new_hist(),
            win_start,
            win_end,
            sent: 0,
            completed: 0,
            failed: 0,
            mismatched: 0,
            unknown: 0,
            incomplete: 0,
            state_late: 0,
        };
        // The offered rate is spread over the connections that send (fanout:
        // only the emitter).
        let senders = conns.iter().filter(|c| c.sends).count().max(1);
        let (closed_k, open) = match cfg.mode {
            Mode::Closed { in_flight } => (in_flight, None),
            Mode::Open { rate, arrival } => (0, Some((senders as f64 * 1e9 / rate, arrival))),
        };
        let n_conns = conns.len();
        if let Some((gap, arrival)) = open {
            for (i, c) in conns.iter_mut().enumerate() {
                c.next_f = match arrival {
                    Arrival::Constant => gap * i as f64 / n_conns as f64,
                    Arrival::Poisson => -c.rng.unit().ln() * gap,
                };
                c.next = c.next_f as u64;
            }
        }

        let mut disconnects = 0u64;
        let mut waits = 0u64;
        let mut disconnect_reason: Option<String> = None;
        let mut intervals = Vec::new();
        let mut interval_start = win_start;
        let mut next_tick = sec;
        let mut last_tick = 0u64;
        let mut cli_cpu_at_tick = cpu::this_thread();
        let mut srv_cpu_at_tick = cfg.server_cpu.read();
        let mut cores_at_tick = cpu::cores();
        let mut answers_at_tick = 0u64;

        // Closed loop: fill every connection.
        if open.is_none() {
            let now = clock.now();
            for c in conns.iter_mut().filter(|c| c.sends) {
                while c.outstanding < closed_k {
                    let id = c.free.pop().expect("free id");
                    c.push_request(id, now, now);
                }
            }
        }
        // Flush setup messages and the first requests, and parse bytes that
        // came with the 101.
        for (i, c) in conns.iter_mut().enumerate() {
            let parsed = if c.rlen > 0 { c.parse(&*workload, &mut rec, clock.now()) } else { Ok(()) };
            let r = parsed.and_then(|_| c.flush().map_err(ConnError::Io));
            Self::after_io(c, i, r, &ep, &mut disconnects, &mut disconnect_reason, &mut rec);
        }

        loop {
            let now = clock.now();
            if window.advance(now) == Edge::Opened {
                interval_start = now;
            }
            if now >= next_tick {
                let cli = cpu::this_thread();
                let srv = cfg.server_cpu.read();
                let span = (now - last_tick).max(1) as f64;
                if window.opened() && (!window.closed() || now < window.closed_at() + sec) {
                    let iv = std::mem::replace(&mut rec.interval, new_hist());
                    if !iv.is_empty() {
                        intervals.push(Interval {
                            start: Duration::from_nanos(interval_start - win_start),
                            length: Duration::from_nanos(now - interval_start),
                            hist: iv,
                        });
                    }
                    interval_start = now;
                }
                if cfg.progress {
                    let phase = if !window.opened() {
                        "warmup"
                    } else if !window.closed() {
                        "measure"
                    } else {
                        "drain"
                    };
                    let answers: u64 = conns.iter().map(|c| c.answers).sum();
                    let rate = (answers - answers_at_tick) as f64 * 1e9 / span;
                    answers_at_tick = answers;
                    let p99 =
                        if rec.latency.is_empty() { 0.0 } else { rec.latency.value_at_quantile(0.99) as f64 / 1e3 };
                    let out: usize = conns.iter().map(|c| c.outstanding).sum();
                    let cli_pct = cli.since(&cli_cpu_at_tick).total_ns as f64 * 100.0 / span;
                    let srv_pct = match (srv, srv_cpu_at_tick) {
                        (Some(a), Some(b)) => format!("{:.0}%", a.since(&b).total_ns as f64 * 100.0 / span),
                        _ => "-".into(),
                    };
                    let cores = cpu::cores();
                    let busy: Vec<String> = cores
                        .iter()
                        .zip(cores_at_tick.iter())
                        .take(4)
                        .map(|(b, a)| format!("{:.0}%", b.since(a).busy_ns as f64 * 100.0 / span))
                        .collect();
                    cores_at_tick = cores;
                    eprintln!(
                        "[{}] {:>5.1}s {:<7} rate {:>8.1}k/s  p99 so far {:>9.1} us  in flight {:>5}  client cpu {:>3.0}%  server cpu {:>4}  cores busy {}",
                        cfg.label,
                        now as f64 / 1e9,
                        phase,
                        rate / 1e3,
                        p99,
                        out,
                        cli_pct,
                        srv_pct,
                        busy.join("/")
                    );
                }
                cli_cpu_at_tick = cli;
                srv_cpu_at_tick = srv;
                last_tick = now;
                next_tick = now - now % sec + sec;
            }

            let live = conns.iter().filter(|c| c.alive).count();
            if live == 0 {
                break;
            }
            if now >= win_end {
                let quiet = conns
                    .iter()
                    .all(|c| !c.alive || (c.outstanding == 0 && (open.is_none() || !c.sends || c.next >= win_end)));
                if quiet || now >= drain_end {
                    break;
                }
            }

            // Open loop: send everything due, one write per connection.
            let mut next_due = u64::MAX;
            if let Some((gap, arrival)) = open {
                for (i, c) in conns.iter_mut().enumerate() {
                    if !c.alive || !c.sends {
                        continue;
                    }
                    if c.next <= now && c.next < win_end && c.free.len > 0 {
                        let t = clock.now();
                        while c.next <= t && c.next < win_end {
                            let Some(id) = c.free.pop() else { break };
                            let intended = c.next;
                            c.push_request(id, intended, t);
                            if rec.in_window(intended) {
                                rec.sent += 1;
                                rec.lateness.saturating_record(t.saturating_sub(intended).max(1));
                            }
                            c.advance(gap, arrival);
                        }
                        if !c.want_out {
                            let r = c.flush().map_err(ConnError::Io);
                            Self::after_io(c, i, r, &ep, &mut disconnects, &mut disconnect_reason, &mut rec);
                        }
                    }
                    if c.alive && c.next < win_end && c.free.len > 0 {
                        next_due = next_due.min(c.next);
                    }
                }
            }

            let mut wake = next_tick.min(next_due);
            wake = wake.min(if now < win_start {
                win_start
            } else if now < win_end {
                win_end
            } else {
                drain_end
            });
            let mut timeout = if cfg.spin { 0 } else { wake.saturating_sub(clock.now()) };
            if next_due != u64::MAX && next_due.saturating_sub(clock.now()) < spin_below {
                timeout = 0;
            }
            let n = ep.wait(Some(timeout)).map_err(|e| format!("epoll_wait: {e}"))?;
            waits += 1;
            for k in 0..n {
                let ev = ep.events[k];
                let (bits, token) = (ev.events, ev.u64 as usize);
                let c = &mut conns[token];
                if !c.alive {
                    continue;
                }
                if bits & (libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP | libc::EPOLLRDHUP) as u32 != 0 {
                    let r = match c.on_readable(&*workload, &mut rec, &clock) {
                        Err(e) => Err(e),
                        Ok(_) => {
                            if open.is_none() && c.sends {
                                let t = clock.now();
                                if t < win_end {
                                    while c.outstanding < closed_k {
                                        let Some(id) = c.free.pop() else { break };
                                        c.push_request(id, t, t);
                                        if rec.in_window(t) {
                                            rec.sent += 1;
                                        }
                                    }
                                }
                            }
                            if c.want_out {
                                Ok(true)
                            } else {
                                c.flush().map_err(ConnError::Io)
                            }
                        }
                    };
                    Self::after_io(c, token, r, &ep, &mut disconnects, &mut disconnect_reason, &mut rec);
                } else if bits & libc::EPOLLOUT as u32 != 0 {
                    let r = c.flush().map_err(ConnError::Io);
                    Self::after_io(c, token, r, &ep, &mut disconnects, &mut disconnect_reason, &mut rec);
                }
            }
        }

        let end = clock.now();
        let readings = window.finish(end);
        if !rec.interval.is_empty() {
            let iv = std::mem::replace(&mut rec.interval, new_hist());
            intervals.push(Interval {
                start: Duration::from_nanos(interval_start.saturating_sub(win_start)),
                length: Duration::from_nanos(end.saturating_sub(interval_start).max(1)),
                hist: iv,
            });
        }
        // Whatever in the window is still outstanding or was never sent.
        let mut incomplete = rec.incomplete;
        for c in conns.iter_mut() {
            if c.alive {
                incomplete += c.outstanding_in_window(&rec);
            }
            if let Some((gap, arrival)) = open {
                if c.sends {
                    let mut guard = 0u64;
                    while c.next < win_end && guard < 100_000_000 {
                        if rec.in_window(c.next) {
                            incomplete += 1;
                        }
                        c.advance(gap, arrival);
                        guard += 1;
                    }
                }
            }
        }
        let syscalls = Syscalls {
            reads: conns.iter().map(|c| c.reads).sum(),
            writes: conns.iter().map(|c| c.writes).sum(),
            waits,
            answers: conns.iter().map(|c| c.answers).sum(),
        };
        Self::close_all(&mut conns, &mut ep);

        Ok(RunOutcome {
            latency: rec.latency,
            service: rec.service,
            lateness: rec.lateness,
            intervals,
            measured: readings.measured,
            started_at: readings.started_at,
            sent: rec.sent,
            completed: rec.completed,
            failed: rec.failed,
            mismatched: rec.mismatched,
            incomplete,
            unknown: rec.unknown,
            state_late: rec.state_late,
            disconnects,
            disconnect_reason,
            client_cpu: readings.client_cpu,
            server_cpu: readings.server_cpu,
            cores: readings.cores,
            syscalls,
            server_syscalls: readings.server_syscalls,
            pinned,
            timer_slack_ns,
            connect_time,
        })
    }

    /// Keeps epoll interest in line with pending output; drops a failed connection.
    #[allow(clippy::too_many_arguments)]
    fn after_io(
        c: &mut Conn,
        token: usize,
        r: Result<bool, ConnError>,
        ep: &Epoll,
        disconnects: &mut u64,
        reason: &mut Option<String>,
        rec: &mut Recorder,
    ) {
        match r {
            Ok(pending) => {
                if pending != c.want_out && ep.ctl(libc::EPOLL_CTL_MOD, c.fd, token, pending).is_ok() {
                    c.want_out = pending;
                }
            }
            Err(e) => {
                let why = match e {
                    ConnError::Closed(s) => s,
                    ConnError::Io(e) => format!("I/O error: {e}"),
                };
                let _ = ep.ctl(libc::EPOLL_CTL_DEL, c.fd, token, false);
                c.alive = false;
                *disconnects += 1;
                rec.incomplete += c.outstanding_in_window(rec);
                if reason.is_none() {
                    *reason = Some(why);
                }
            }
        }
    }

    /// Sends Close 1000 on every live connection and reads until the server
    /// closes (at most 500 ms in all), so the server sees a clean close.
    fn close_all(conns: &mut [Conn], ep: &mut Epoll) {
        let mut open = 0;
        for c in conns.iter_mut().filter(|c| c.alive) {
            let (p, n) = frame::close_payload(1000, "load run finished");
            ws::push_control(&mut c.wbuf, Opcode::Close, &p[..n], c.mask);
            if c.flush().is_err() {
                c.alive = false;
            } else {
                open += 1;
            }
        }
        let deadline = Instant::now() + Duration::from_millis(500);
        let mut scratch = vec![0u8; READ_BUF];
        while open > 0 && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now()).as_nanos() as u64;
            let Ok(n) = ep.wait(Some(left)) else { break };
            for k in 0..n {
                let token = ep.events[k].u64 as usize;
                let c = &mut conns[token];
                if !c.alive {
                    continue;
                }
                loop {
                    match (&c.stream).read(&mut scratch) {
                        Ok(0) => {
                            c.alive = false;
                            open -= 1;
                            let _ = ep.ctl(libc::EPOLL_CTL_DEL, c.fd, token, false);
                            break;
                        }
                        Ok(_) => continue,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => {
                            c.alive = false;
                            open -= 1;
                            let _ = ep.ctl(libc::EPOLL_CTL_DEL, c.fd, token, false);
                            break;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_ring_cycles_in_order() {
        let mut r = IdRing::full();
        let a: Vec<u8> = (0..256).map(|_| r.pop().unwrap()).collect();
        assert_eq!(a, (0..=255).collect::<Vec<u8>>());
        assert!(r.pop().is_none());
        r.push(7);
        r.push(3);
        assert_eq!(r.pop(), Some(7));
        assert_eq!(r.pop(), Some(3));
    }

    #[test]
    fn poisson_gaps_have_the_right_mean() {
        let mut rng = Rng(12345);
        let n = 200_000;
        let mean: f64 = (0..n).map(|_| -rng.unit().ln()).sum::<f64>() / n as f64;
        assert!((mean - 1.0).abs() < 0.01, "{mean}");
        let mut rng = Rng(99);
        assert!((0..10_000).map(|_| rng.unit()).all(|u| u > 0.0 && u <= 1.0));
    }

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
