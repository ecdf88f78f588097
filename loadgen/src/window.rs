//! The measured window: what is read when it opens and when it closes.
//!
//! Every figure beside the latencies (client and server CPU, per-core load,
//! the server's system calls) is the difference between a reading at the
//! window's start and one at its end, so they all cover the same span. The
//! engine calls [`Window::advance`] once per loop pass with the time; this
//! type takes the readings as the edges pass.

use std::time::{Duration, SystemTime};

use crate::cpu::{self, CoreTimes, CpuTime, ServerCpuSource};
use crate::syscount::{ServerSyscalls, SyscallCounter};

/// What happened to the window on one [`Window::advance`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// Nothing.
    None,
    /// It opened.
    Opened,
    /// It closed.
    Closed,
}

/// The window `[start, end)` in engine time (ns since the engine's start).
pub struct Window {
    start: u64,
    end: u64,
    opened: bool,
    closed: bool,
    closed_at: u64,
    started_at: SystemTime,
    server_source: ServerCpuSource,
    client: (Option<CpuTime>, Option<CpuTime>),
    server: (Option<CpuTime>, Option<CpuTime>),
    cores: (Vec<CoreTimes>, Vec<CoreTimes>),
    syscalls: Result<SyscallCounter, String>,
}

/// Readings over the window.
#[derive(Debug, Clone)]
pub struct WindowReadings {
    /// Wall-clock time at the window's start.
    pub started_at: SystemTime,
    /// Its length (shorter than configured when every connection was lost).
    pub measured: Duration,
    /// The engine thread's CPU time.
    pub client_cpu: CpuTime,
    /// The server's CPU time, when measured.
    pub server_cpu: Option<CpuTime>,
    /// Every CPU's times.
    pub cores: Vec<CoreTimes>,
    /// The server's system calls, or why they were not counted.
    pub server_syscalls: Result<ServerSyscalls, String>,
}

impl Window {
    /// A window from `start` to `end`. With `count_syscalls`, perf is started
    /// now on the server's threads (its failure is kept as the reason).
    pub fn new(start: u64, end: u64, server_source: ServerCpuSource, count_syscalls: bool) -> Self {
        let syscalls = if !count_syscalls {
            Err("not counted (counting was turned off)".to_string())
        } else {
            match server_source.syscall_target() {
                None => Err("server not measured (give --server-pid)".to_string()),
                Some(t) => SyscallCounter::start(&t),
            }
        };
        Self {
            start,
            end,
            opened: false,
            closed: false,
            closed_at: end,
            started_at: SystemTime::now(),
            server_source,
            client: (None, None),
            server: (None, None),
            cores: (Vec::new(), Vec::new()),
            syscalls,
        }
    }

    /// Whether the window has opened.
    pub fn opened(&self) -> bool {
        self.opened
    }

    /// Whether the window has closed.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// When it closed (its configured end until then).
    pub fn closed_at(&self) -> u64 {
        self.closed_at
    }

    /// Takes the readings of whichever edge `now` has passed.
    pub fn advance(&mut self, now: u64) -> Edge {
        if !self.opened && now >= self.start {
            self.opened = true;
            self.started_at = SystemTime::now();
            if let Ok(c) = &mut self.syscalls {
                if let Err(e) = c.enable() {
                    self.syscalls = Err(e);
                }
            }
            self.client.0 = Some(cpu::this_thread());
            self.server.0 = self.server_source.read();
            self.cores.0 = cpu::cores();
            return Edge::Opened;
        }
        if self.opened && !self.closed && now >= self.end {
            self.close(now);
            return Edge::Closed;
        }
        Edge::None
    }

    fn close(&mut self, now: u64) {
        self.closed = true;
        self.closed_at = now;
        self.client.1 = Some(cpu::this_thread());
        self.server.1 = self.server_source.read();
        self.cores.1 = cpu::cores();
        if let Ok(c) = &mut self.syscalls {
            if let Err(e) = c.disable() {
                self.syscalls = Err(e);
            }
        }
    }

    /// Closes the window at `now` if the run ended early, and returns the readings.
    pub fn finish(mut self, now: u64) -> WindowReadings {
        if !self.closed {
            self.close(now.min(self.end));
        }
        let syscalls = if self.opened {
            self.syscalls.and_then(SyscallCounter::finish)
        } else {
            Err("the window never opened".to_string())
        };
        let since = |w: (Option<CpuTime>, Option<CpuTime>)| match w {
            (Some(a), Some(b)) => Some(b.since(&a)),
            _ => None,
        };
        WindowReadings {
            started_at: self.started_at,
            measured: Duration::from_nanos(self.closed_at.saturating_sub(self.start).max(1)),
            client_cpu: since(self.client).unwrap_or_default(),
            server_cpu: since(self.server),
            cores: self.cores.1.iter().zip(self.cores.0.iter()).map(|(b, a)| b.since(a)).collect(),
            server_syscalls: syscalls,
        }
    }
}
