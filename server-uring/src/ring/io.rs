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
    /// Why TLS ended the connection, until the loop counts it.
    pub(crate) tls_failure: Option<TlsFailure>,
    /// The task wants to run when a send completes (it holds bytes it
    /// could not queue, or counts held bytes to release). Set by the task
    /// at the end of each round; without it a completed send only starts
    /// the next one (see [`Self::after_send`]).
    pub(crate) wake_on_send: bool,
}

impl Io {
    pub(crate) fn new(fd: OwnedFd, peer: SocketAddr, core: ServerConnection, tls: Option<Box<TlsLayer>>) -> Self {
        Self {
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
    pub(crate) fn readable(&self) -> bool {
        self.tls.is_some() || !self.recv_in_flight
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
        let moved = self.pump_tls();
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
                // rustls' alert is not sent: the connection is dropped, as a
                // plain one is on a socket error.
                self.tls_failure = Some(f);
                self.failed = true;
                true
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

    /// Arms a receive if the connection wants input and none is in flight.
    fn submit_recv(&mut self, r: &mut Reactor, token: Token) {
        if self.finished || self.failed {
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
                self.core.on_read(0);
                self.eof = true;
                None
            }
            e if e == -libc::EINTR || e == -libc::EAGAIN => None,
            e => {
                self.failed = true;
                Some(-e)
            }
        }
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
        if self.recv_in_flight {
            r.cancel(Op::Recv, token);
        }
        if self.send_in_flight {
            r.cancel(Op::Send, token);
        }
    }
}
