//! The engine's clock and its `epoll` wrapper. `epoll_pwait2` takes its
//! timeout in nanoseconds, which is why the engine can pace open-loop sends
//! finer than a millisecond (plain `epoll_wait` is the fallback on kernels
//! without it).

use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

/// Nanoseconds since the engine's start.
pub(super) struct Clock(pub(super) Instant);

impl Clock {
    #[inline]
    pub(super) fn now(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

pub(super) struct Epoll {
    pub(super) fd: RawFd,
    pub(super) events: Vec<libc::epoll_event>,
    pwait2: bool,
}

impl Epoll {
    pub(super) fn new() -> io::Result<Self> {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd, events: vec![libc::epoll_event { events: 0, u64: 0 }; 256], pwait2: true })
    }

    pub(super) fn ctl(&self, op: i32, fd: RawFd, token: usize, out: bool) -> io::Result<()> {
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
    pub(super) fn wait(&mut self, timeout_ns: Option<u64>) -> io::Result<usize> {
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
