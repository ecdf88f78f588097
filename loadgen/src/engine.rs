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

mod config;
mod conn;
mod epoll;
mod progress;

use std::io::{self, Read};
use std::time::{Duration, Instant};

use hardlight::protocol::frame::{self, Opcode};

pub use self::config::{Arrival, Interval, Mode, RunConfig, RunOutcome, Syscalls};
use self::conn::{new_hist, Conn, ConnError, Recorder, READ_BUF};
use self::epoll::{Clock, Epoll};
use self::progress::{Progress, Tick};
use crate::cpu;
use crate::window::{Edge, Window};
use crate::ws;

/// Largest message this tool accepts from a server.
pub const MAX_MESSAGE: usize = 16 << 20;

/// Calls in flight per connection at most (call ids are a `u8`).
pub const MAX_IN_FLIGHT: usize = 256;

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
            conns.push(Conn::open(i, &cfg, &*workload, &template)?);
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
        let mut progress = Progress::start(&cfg.server_cpu);

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
                    let tick = Tick {
                        label: &cfg.label,
                        now,
                        span: now - last_tick,
                        phase,
                        answers: conns.iter().map(|c| c.answers).sum(),
                        p99_us: if rec.latency.is_empty() {
                            0.0
                        } else {
                            rec.latency.value_at_quantile(0.99) as f64 / 1e3
                        },
                        in_flight: conns.iter().map(|c| c.outstanding).sum(),
                    };
                    progress.line(tick, &cfg.server_cpu);
                }
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
