//! One connection of the engine: its socket, buffers, free call ids and
//! the intended and actual send time of every call in flight, and the
//! parsing of the server's frames into timed deliveries.
//!
//! Per read, every complete frame is parsed in place and matched to its call
//! by id; nothing is allocated per call.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};

use hardlight::protocol::frame::{self, Opcode, Role};
use hdrhistogram::Histogram;

use super::epoll::Clock;
use super::{Arrival, RunConfig, MAX_MESSAGE};
use crate::scenario::{Delivery, RequestTemplate, Workload};
use crate::ws::{self, FrameTemplate};

/// `intended[id]` of an id not in flight.
pub(super) const FREE: u64 = u64::MAX;
/// Initial read buffer (it grows to the largest message seen).
pub(super) const READ_BUF: usize = 64 * 1024;

/// A latency histogram: 1 ns to 60 s, 3 significant digits.
pub(super) fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

/// A ring of free call ids.
pub(super) struct IdRing {
    pub(super) ids: [u8; 256],
    pub(super) head: usize,
    pub(super) len: usize,
}

impl IdRing {
    pub(super) fn full() -> Self {
        let mut ids = [0u8; 256];
        for (i, x) in ids.iter_mut().enumerate() {
            *x = i as u8;
        }
        Self { ids, head: 0, len: 256 }
    }

    #[inline]
    pub(super) fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let id = self.ids[self.head];
        self.head = (self.head + 1) & 255;
        self.len -= 1;
        Some(id)
    }

    #[inline]
    pub(super) fn push(&mut self, id: u8) {
        debug_assert!(self.len < 256);
        self.ids[(self.head + self.len) & 255] = id;
        self.len += 1;
    }
}

/// xorshift64*: cheap randomness for Poisson gaps.
pub(super) struct Rng(u64);

impl Rng {
    #[inline]
    pub(super) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in (0, 1].
    #[inline]
    pub(super) fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
}

/// Counters and histograms shared by every connection of a run.
pub(super) struct Recorder {
    pub(super) latency: Histogram<u64>,
    pub(super) service: Histogram<u64>,
    pub(super) lateness: Histogram<u64>,
    pub(super) interval: Histogram<u64>,
    pub(super) win_start: u64,
    pub(super) win_end: u64,
    pub(super) sent: u64,
    pub(super) completed: u64,
    pub(super) failed: u64,
    pub(super) mismatched: u64,
    pub(super) unknown: u64,
    pub(super) incomplete: u64,
    /// Replies (in the window) whose STATE message had not arrived first.
    pub(super) state_late: u64,
}

impl Recorder {
    #[inline]
    pub(super) fn in_window(&self, t: u64) -> bool {
        t >= self.win_start && t < self.win_end
    }
}

pub(super) struct Conn {
    pub(super) stream: TcpStream,
    pub(super) fd: RawFd,
    pub(super) rbuf: Vec<u8>,
    pub(super) rlen: usize,
    pub(super) wbuf: Vec<u8>,
    pub(super) wpos: usize,
    pub(super) want_out: bool,
    pub(super) free: IdRing,
    pub(super) intended: Box<[u64; 256]>,
    pub(super) actual: Box<[u64; 256]>,
    pub(super) outstanding: usize,
    pub(super) sends: bool,
    pub(super) alive: bool,
    pub(super) next_f: f64,
    pub(super) next: u64,
    pub(super) rng: Rng,
    pub(super) mask: [u8; 4],
    pub(super) tmpl: FrameTemplate,
    /// Whether each reply must follow a STATE message naming its call.
    pub(super) check_state: bool,
    /// Calls in flight whose STATE message has arrived (a bit per id).
    pub(super) state_seen: [u64; 4],
    /// `read` and `write` calls, and answers received, over the whole run.
    pub(super) reads: u64,
    pub(super) writes: u64,
    pub(super) answers: u64,
}

pub(super) enum ConnError {
    Closed(String),
    Io(io::Error),
}

impl Conn {
    #[inline]
    pub(super) fn push_request(&mut self, id: u8, intended: u64, actual: u64) {
        self.tmpl.push(&mut self.wbuf, id, intended);
        self.intended[id as usize] = intended;
        self.actual[id as usize] = actual;
        self.outstanding += 1;
    }

    /// Writes as much of the pending output as the socket takes. Returns
    /// whether some output is still pending.
    pub(super) fn flush(&mut self) -> io::Result<bool> {
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
    pub(super) fn on_readable(
        &mut self,
        workload: &dyn Workload,
        rec: &mut Recorder,
        clock: &Clock,
    ) -> Result<bool, ConnError> {
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

    pub(super) fn parse(&mut self, workload: &dyn Workload, rec: &mut Recorder, now: u64) -> Result<(), ConnError> {
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
    pub(super) fn deliver(&mut self, d: Delivery, rec: &mut Recorder, now: u64) -> Result<(), ConnError> {
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
    pub(super) fn advance(&mut self, mean_gap_ns: f64, arrival: Arrival) {
        let gap = match arrival {
            Arrival::Constant => mean_gap_ns,
            Arrival::Poisson => -self.rng.unit().ln() * mean_gap_ns,
        };
        self.next_f += gap;
        self.next = self.next_f as u64;
    }

    /// Requests in the window still outstanding, for the incomplete count.
    pub(super) fn outstanding_in_window(&self, rec: &Recorder) -> u64 {
        self.intended.iter().filter(|&&t| t != FREE && rec.in_window(t)).count() as u64
    }
}

impl Conn {
    /// Opens connection `i` of the run: TCP connect, the upgrade, the
    /// request template framed once with this connection's own mask, and
    /// the workload's setup messages queued for the first write.
    pub(super) fn open(
        i: usize,
        cfg: &RunConfig,
        workload: &dyn Workload,
        template: &RequestTemplate,
    ) -> Result<Self, String> {
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
        Ok(Conn {
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
        })
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
}
