//! One connection's socket on the ring: its descriptor, the core
//! connection whose buffers the kernel reads into and writes from, and the
//! state of its one receive and one send.
//!
//! # The buffer-lifetime rule
//!
//! A receive SQE points into `ServerConnection::read_buf()` (a fixed heap
//! buffer inside the core that is never resized), and a send SQE into
//! `send_buf` (owned here). The kernel may write to or read from them until
//! the operation's completion is reaped, so:
//!
//! - an [`Io`] is owned by its shard's task slot (behind an `Rc` the task
//!   shares) and the slot is freed only once neither operation is in
//!   flight: a finished connection first cancels what is outstanding
//!   (IORING_OP_ASYNC_CANCEL) and waits for the completions; if they never
//!   come (forced shutdown), the `Io` is leaked, never freed;
//! - while a receive is in flight nobody asks the core for events or for
//!   its read buffer ([`Io::readable`] is false): those are the only calls
//!   that touch the bytes past the parsed input;
//! - the core's own outbound buffer may grow (and move) at any time, as
//!   calls complete, so it is never handed to the kernel: its bytes are
//!   copied into `send_buf`, which is not touched while a send is in
//!   flight.
//!
//! With TLS ([`super::tls`]) a receive lands in the TLS layer's own fixed
//! buffer instead of the core's, and `send_buf` is filled with records
//! from rustls instead of the core's bytes; everything else is the same.
//!
//! # Multishot receive
//!
//! A plain connection on a shard with a buffer pool ([`super::bufring`])
//! arms one multishot receive instead of a receive per message: the
//! kernel keeps its poll on the socket armed and posts each arrival in a
//! pool buffer, which the loop copies into the core's read buffer (and
//! gives back) before the task runs. The core's buffer is then never the
//! kernel's, so the core is always readable. What does not fit waits in
//! `spill`, in order, and a connection that should not read (its core
//! full, too much unsent, a pending decision) cancels its receive: the
//! bytes that arrived before the cancel took effect are at most one pass
//! of completions, so `spill` is bounded by the pool
//! (`RECV_BUFFERS` x `RECV_BUFFER_SIZE`), and the socket holds the rest as
//! it does for a one-shot receive. Spilled bytes count against the shard's
//! held-bytes budget like a partial message (`Io::spilled`), so many
//! connections spilling at once are closed (4004) instead of growing the
//! heap without a shard-wide bound.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use hardlight_core::connection::ServerConnection;
use io_uring::{opcode, types};

use super::reactor::{user_data, Op, Reactor};
use super::tls::{TlsFailure, TlsLayer};
use super::wake::Token;

/// `send_buf` capacity kept after a large message went out.
const SEND_BUF_KEEP: usize = 64 * 1024;

/// A connection's socket state on the ring.
pub(crate) struct Io {
    fd: OwnedFd,
    pub(crate) peer: SocketAddr,
    pub(crate) core: ServerConnection,
    recv_in_flight: bool,
    send_in_flight: bool,
    send_buf: Vec<u8>,
    send_off: usize,
    /// The peer closed its side (a receive returned 0).
    pub(crate) eof: bool,
    /// A socket operation failed; the connection is over.
    pub(crate) failed: bool,
    /// Bytes arrived since the driver last looked (keepalive).
    pub(crate) heard: bool,
    /// The task is over: no new operations, outstanding ones cancelled.
    finished: bool,
    /// wss://: rustls between the socket and the core (boxed: kilobytes
    /// of state that plain connections should not carry).
    tls: Option<Box<TlsLayer>>,
    /// Receives through a multishot receive (module doc); `recv_in_flight`
    /// then means "armed".
    multishot: bool,
    /// A cancel of the armed multishot receive is on its way.
    cancelling: bool,
    /// Received bytes the core had no room for yet, from `spill_start`.
    spill: Vec<u8>,
    spill_start: usize,
    /// The peer's end arrived behind spilled bytes: it reaches the core
    /// once they have.
    eof_spilled: bool,
    /// Why TLS ended the connection, until the loop counts it.
    pub(crate) tls_failure: Option<TlsFailure>,
    /// The task wants to run when a send completes (it holds bytes it
    /// could not queue, or counts held bytes to release). Set by the task
    /// at the end of each round; without it a completed send only starts
    /// the next one (see [`Self::after_send`]).
    pub(crate) wake_on_send: bool,
}

impl Io {
    /// A connection's socket state. `multishot`: receive through the
    /// shard's buffer pool (plain sockets only; ignored with TLS).
    pub(crate) fn new(
        fd: OwnedFd,
        peer: SocketAddr,
        core: ServerConnection,
        tls: Option<Box<TlsLayer>>,
        multishot: bool,
    ) -> Self {
        Self {
            multishot: multishot && tls.is_none(),
            cancelling: false,
            spill: Vec::new(),
            spill_start: 0,
            eof_spilled: false,
            tls,
            tls_failure: None,
            wake_on_send: true,
            fd,
            peer,
            core,
            recv_in_flight: false,
            send_in_flight: false,
            send_buf: Vec::new(),
            send_off: 0,
            eof: false,
            failed: false,
            heard: false,
            finished: false,
        }
    }

    /// Whether the core may be asked for events: no receive into its
    /// buffer is in flight (see the module's buffer-lifetime rule). With
    /// TLS the kernel receives into the TLS layer's buffer, never the
    /// core's, so the core is always readable: plaintext moved in while a
    /// receive is armed must be parsed now, not after the next record.
    /// The same holds for a multishot receive, which lands in the pool.
    pub(crate) fn readable(&self) -> bool {
        self.tls.is_some() || self.multishot || !self.recv_in_flight
    }

    /// Everything queued has been handed to the kernel and acknowledged.
    pub(crate) fn flushed(&self) -> bool {
        !self.send_in_flight
            && self.send_off == self.send_buf.len()
            && self.core.outbound().is_empty()
            && !self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// No operation is in flight: the buffers may be freed.
    pub(crate) fn idle(&self) -> bool {
        !self.recv_in_flight && !self.send_in_flight
    }

    fn unsent(&self) -> usize {
        self.send_buf.len() - self.send_off + self.core.outbound().len()
    }

    /// Starts the send and the receive the connection wants now (at most
    /// one of each in flight). Returns true when TLS plaintext that was
    /// waiting for room moved into the core: the task must run again to
    /// parse it (no completion will wake it).
    pub(crate) fn submit(&mut self, r: &mut Reactor, token: Token) -> bool {
        let moved = self.pump_tls() | self.pump_spill();
        self.submit_send(r, token);
        self.submit_recv(r, token);
        moved
    }

    /// TLS: feeds waiting ciphertext to rustls and plaintext to the core.
    /// True when plaintext (or the end of it) reached the core.
    fn pump_tls(&mut self) -> bool {
        let Some(tls) = self.tls.as_mut() else { return false };
        // While a receive is in flight its buffer holds nothing pending, so
        // this only moves plaintext rustls already has (none, unless the
        // core was full): the kernel's buffer is not touched.
        if self.finished || self.failed {
            return false;
        }
        let was_ended = tls.ended();
        match tls.pump_in(&mut self.core) {
            Ok(moved) => {
                if tls.ended() {
                    self.eof = true;
                }
                moved > 0 || tls.ended() != was_ended
            }
            Err(f) => {
                self.send_alert();
                self.tls_failure = Some(f);
                self.failed = true;
                true
            }
        }
    }

    /// rustls queued a fatal alert (it failed): sends it, after whatever
    /// was staged before it, so the peer learns why before the close. One
    /// non-blocking send outside the ring, since the connection ends right
    /// after: a peer whose window is full misses the alert rather than
    /// holding the connection open. Skipped while a ring send is in flight
    /// (the alert must not overtake it).
    fn send_alert(&mut self) {
        let Some(tls) = self.tls.as_mut() else { return };
        if self.send_in_flight || self.finished {
            return;
        }
        let mut out = self.send_buf.split_off(self.send_off);
        tls.write_pending(&mut out);
        self.send_buf.clear();
        self.send_off = 0;
        if !out.is_empty() {
            let sock = socket2::SockRef::from(&self.fd);
            if let Err(e) = sock.send_with_flags(&out, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) {
                tracing::debug!(error = %e, "could not send the TLS alert");
            }
        }
    }

    /// Moves what the core queued into the send buffer when no send is in
    /// flight and the buffer is empty (through rustls with TLS), without
    /// submitting it. The task calls it at the end of its round, before
    /// the held-bytes check, so that bytes about to be sent are not counted
    /// as held, and the loop's submit then starts the send.
    pub(crate) fn stage_send(&mut self) {
        if self.finished || self.failed || self.send_in_flight || self.send_off != self.send_buf.len() {
            return;
        }
        if let Some(tls) = self.tls.as_mut() {
            self.send_buf.clear();
            self.send_off = 0;
            tls.pump_out(&mut self.core, &mut self.send_buf);
        } else if !self.core.outbound().is_empty() {
            self.send_buf.clear();
            self.send_off = 0;
            self.send_buf.extend_from_slice(self.core.outbound());
            let n = self.send_buf.len();
            self.core.advance_outbound(n);
        }
    }

    /// Starts a send of what is queued, unless one is in flight. The loop
    /// also calls this as soon as a send completes, before the task runs,
    /// so that the task's next round fills an empty outbound buffer while
    /// the kernel sends the previous one (double buffering).
    pub(crate) fn submit_send(&mut self, r: &mut Reactor, token: Token) {
        if self.finished || self.failed || self.send_in_flight {
            return;
        }
        self.stage_send();
        if self.send_off < self.send_buf.len() {
            let rest = &self.send_buf[self.send_off..];
            let len = rest.len().min(u32::MAX as usize) as u32;
            let e = opcode::Send::new(types::Fd(self.fd.as_raw_fd()), rest.as_ptr(), len)
                .flags(libc::MSG_NOSIGNAL)
                .build()
                .user_data(user_data(Op::Send, token));
            // SAFETY: `send_buf` is not touched (so not reallocated)
            // while `send_in_flight`, and the `Io` outlives the send
            // (module doc).
            unsafe { r.push(e) };
            self.send_in_flight = true;
        }
    }

    /// Arms a receive if the connection wants input and none is in flight
    /// (with multishot: cancels the armed one if it no longer does).
    fn submit_recv(&mut self, r: &mut Reactor, token: Token) {
        if self.finished || self.failed {
            return;
        }
        if self.multishot {
            let wants = !self.eof
                && !self.eof_spilled
                && self.spilled() == 0
                && self.core.wants_read()
                && self.unsent() < self.core.limits().max_outbound_bytes;
            if wants && !self.recv_in_flight {
                r.recv_multi(self.fd.as_raw_fd(), token);
                self.recv_in_flight = true;
            } else if !wants && self.recv_in_flight && !self.cancelling {
                r.cancel(Op::RecvMulti, token);
                self.cancelling = true;
            }
            return;
        }
        if !self.recv_in_flight
            && !self.eof
            && self.core.wants_read()
            && self.unsent() < self.core.limits().max_outbound_bytes
        {
            if let Some(tls) = self.tls.as_mut() {
                if tls.wants_recv() {
                    let buf = tls.recv_buf();
                    let e = opcode::Recv::new(types::Fd(self.fd.as_raw_fd()), buf.as_mut_ptr(), buf.len() as u32)
                        .build()
                        .user_data(user_data(Op::Recv, token));
                    // SAFETY: the TLS layer's receive buffer is a fixed
                    // allocation nothing touches while `recv_in_flight`
                    // (`pump_tls` waits for the completion), and the `Io`
                    // (which owns the layer) outlives the receive.
                    unsafe { r.push(e) };
                    self.recv_in_flight = true;
                }
                return;
            }
            let buf = self.core.read_buf();
            if !buf.is_empty() {
                let len = buf.len().min(u32::MAX as usize) as u32;
                let e = opcode::Recv::new(types::Fd(self.fd.as_raw_fd()), buf.as_mut_ptr(), len)
                    .build()
                    .user_data(user_data(Op::Recv, token));
                // SAFETY: the core's read buffer is a fixed allocation that
                // nothing touches while `recv_in_flight` (module doc), and
                // the `Io` outlives the receive.
                unsafe { r.push(e) };
                self.recv_in_flight = true;
            }
        }
    }

    /// A receive completed with `result` (bytes, 0 at end of stream, or a
    /// negative errno). Returns an errno worth counting, if any.
    pub(crate) fn on_recv(&mut self, result: i32) -> Option<i32> {
        self.recv_in_flight = false;
        if self.finished {
            return None;
        }
        if let Some(tls) = self.tls.as_mut() {
            if result >= 0 {
                tls.on_recv(result as usize);
                self.heard |= result > 0;
                self.pump_tls();
                return None;
            }
        }
        match result {
            n if n > 0 => {
                self.core.on_read(n as usize);
                self.heard = true;
                None
            }
            0 => {
                self.end_of_stream();
                None
            }
            e if e == -libc::EINTR || e == -libc::EAGAIN => None,
            e => {
                self.failed = true;
                Some(-e)
            }
        }
    }

    /// A multishot receive's completion: `result` bytes (in `data`), 0 at
    /// the end of the stream, or a negative errno; `more` is false for its
    /// last one. Returns an errno worth counting, if any.
    pub(crate) fn on_recv_multi(&mut self, result: i32, more: bool, data: &[u8]) -> Option<i32> {
        if !more {
            self.recv_in_flight = false;
            self.cancelling = false;
        }
        if self.finished {
            return None;
        }
        match result {
            n if n > 0 => {
                self.take_in(data);
                self.heard = true;
                None
            }
            0 => {
                if self.spilled() == 0 {
                    self.end_of_stream();
                } else {
                    self.eof_spilled = true;
                }
                None
            }
            // The pool ran dry (the bytes wait in the socket), our own
            // cancel, or a signal: the task's next round arms a new one.
            e if e == -libc::ENOBUFS || e == -libc::ECANCELED || e == -libc::EINTR || e == -libc::EAGAIN => None,
            e => {
                self.failed = true;
                Some(-e)
            }
        }
    }

    /// Received bytes waiting for room in the core: the peer's, so the
    /// driver charges them to the shard's held-bytes budget with the
    /// core's own (`crate::clock::before_park`).
    pub(crate) fn spilled(&self) -> usize {
        self.spill.len() - self.spill_start
    }

    /// Copies received bytes into the core, or behind what already waits.
    fn take_in(&mut self, data: &[u8]) {
        let taken = if self.spilled() == 0 { feed(&mut self.core, data) } else { 0 };
        self.spill.extend_from_slice(&data[taken..]);
    }

    /// Moves spilled bytes (and then the peer's end) into the core as it
    /// makes room. True when anything moved: the task must run to parse it.
    fn pump_spill(&mut self) -> bool {
        if self.finished || self.failed {
            return false;
        }
        let mut moved = false;
        while self.spilled() > 0 {
            let n = feed(&mut self.core, &self.spill[self.spill_start..]);
            if n == 0 {
                break;
            }
            self.spill_start += n;
            moved = true;
        }
        // Drained: the allocation goes (spills are rare), and an empty
        // spill always starts at 0.
        if self.spilled() == 0 && !self.spill.is_empty() {
            self.spill = Vec::new();
            self.spill_start = 0;
        }
        if self.eof_spilled && self.spill.is_empty() {
            self.eof_spilled = false;
            self.end_of_stream();
            moved = true;
        }
        moved
    }

    /// The peer's end reaches the core (after every byte before it).
    fn end_of_stream(&mut self) {
        self.core.on_read(0);
        self.eof = true;
    }

    /// A send completed with `result` (bytes sent or a negative errno).
    pub(crate) fn on_send(&mut self, result: i32) -> Option<i32> {
        self.send_in_flight = false;
        if self.finished {
            return None;
        }
        match result {
            n if n > 0 => {
                self.send_off += n as usize;
                if self.send_off == self.send_buf.len() {
                    self.send_buf.clear();
                    self.send_off = 0;
                    if self.send_buf.capacity() > SEND_BUF_KEEP {
                        self.send_buf.shrink_to(SEND_BUF_KEEP);
                    }
                }
                None
            }
            e if e == -libc::EINTR || e == -libc::EAGAIN => None,
            0 => {
                self.failed = true;
                Some(libc::EPIPE)
            }
            e => {
                self.failed = true;
                Some(-e)
            }
        }
    }

    /// Whether the task must run after a send completed: when it asked to
    /// ([`Self::wake_on_send`]), when no receive is armed (the task's round
    /// arms it: one may have been held back while too much was unsent), or
    /// when the connection is not simply open (a failure, the peer's end, a
    /// close or a refused handshake waiting for the flush). Otherwise the
    /// completion changes nothing the task waits for, and skipping the
    /// round saves a task poll per message.
    pub(crate) fn after_send(&self) -> bool {
        self.wake_on_send || !self.recv_in_flight || self.failed || self.eof || !self.core.is_open()
    }

    /// The task is over: cancels what is in flight. The slot may be freed
    /// once [`Self::idle`].
    pub(crate) fn finish(&mut self, r: &mut Reactor, token: Token) {
        if self.finished {
            return;
        }
        self.finished = true;
        if self.recv_in_flight && !self.cancelling {
            r.cancel(if self.multishot { Op::RecvMulti } else { Op::Recv }, token);
        }
        if self.send_in_flight {
            r.cancel(Op::Send, token);
        }
    }
}

/// Copies as much of `bytes` as fits into the core's read buffer and
/// returns how much that was.
fn feed(core: &mut ServerConnection, bytes: &[u8]) -> usize {
    let room = core.read_buf();
    let n = room.len().min(bytes.len());
    room[..n].copy_from_slice(&bytes[..n]);
    // Never `on_read(0)`: that is the peer's end.
    if n > 0 {
        core.on_read(n);
    }
    n
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use hardlight_core::connection::Event;
    use hardlight_core::limits::{Limits, IDLE_READ_BUFFER};

    use super::*;

    const HEAD: &str = "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
                        Sec-WebSocket-Protocol: hl.1\r\nX-Pad: ";

    /// A 3000-byte upgrade request: more than a pending handshake's first
    /// read buffer (IDLE_READ_BUFFER), less than the handshake limit.
    fn long_upgrade() -> Vec<u8> {
        let mut req = HEAD.as_bytes().to_vec();
        req.resize(3000 - 4, b'p');
        req.extend_from_slice(b"\r\n\r\n");
        req
    }

    fn io() -> (Io, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        let core = ServerConnection::new(Limits::default());
        (Io::new(a.into(), "127.0.0.1:1".parse().unwrap(), core, None, true), b)
    }

    #[test]
    fn received_bytes_the_core_has_no_room_for_wait_in_order() {
        let (mut io, _peer) = io();
        assert!(io.readable(), "a multishot receive never holds the core's buffer");
        let req = long_upgrade();
        io.on_recv_multi(req.len() as i32, true, &req);
        assert_eq!(io.core.stats().bytes_read, IDLE_READ_BUFFER as u64, "the core took what fit");
        assert_eq!(io.spilled(), req.len() - IDLE_READ_BUFFER);
        let mut rounds = 0;
        while io.pump_spill() {
            rounds += 1;
            assert!(rounds < 16, "the spill drains as the core grows its buffer");
        }
        assert_eq!(io.core.stats().bytes_read, req.len() as u64);
        assert!(io.spill.is_empty() && !io.eof);
        match io.core.poll_event() {
            Some(Event::Upgrade(u)) => assert_eq!(u.header("x-pad").map(str::len), Some(3000 - 4 - HEAD.len())),
            other => panic!("expected the upgrade, got {other:?}"),
        }
    }

    #[test]
    fn the_peers_end_reaches_the_core_only_after_the_bytes_before_it() {
        let (mut io, _peer) = io();
        let req = long_upgrade();
        io.on_recv_multi(req.len() as i32, true, &req);
        io.on_recv_multi(0, false, &[]);
        assert!(!io.eof && !io.core.is_closed(), "the end waits behind spilled bytes");
        assert!(!io.recv_in_flight, "the receive ended with the stream");
        while io.pump_spill() {}
        assert!(io.eof, "then it arrives");
        assert_eq!(io.core.stats().bytes_read, req.len() as u64, "after every byte");
    }

    #[test]
    fn a_dry_pool_or_our_own_cancel_is_not_a_failure() {
        let (mut io, _peer) = io();
        io.recv_in_flight = true;
        assert_eq!(io.on_recv_multi(-libc::ENOBUFS, false, &[]), None);
        assert!(!io.failed && !io.recv_in_flight, "re-armed on the next round");
        io.recv_in_flight = true;
        assert_eq!(io.on_recv_multi(-libc::ECONNRESET, false, &[]), Some(libc::ECONNRESET));
        assert!(io.failed);
    }
}
