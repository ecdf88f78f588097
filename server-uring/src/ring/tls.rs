//! TLS on the ring: rustls' sans-I/O connection between the socket and the
//! core, so the connection task and the core see plaintext exactly as on a
//! plain socket.
//!
//! The kernel never touches rustls' buffers: a receive lands in this
//! layer's own ciphertext buffer ([`TlsLayer::recv_buf`], a fixed
//! allocation, the same rule as the core's read buffer in `super::io`), and
//! a send goes out of the connection's `send_buf`, filled here from rustls.
//! Ciphertext that rustls cannot take yet (its plaintext buffer is full
//! because the core has not parsed what it got) stays here, and no receive
//! is armed until it has been fed: the TLS path has the same backpressure
//! as the plain one.

use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;

use hardlight_core::connection::ServerConnection;

/// Ciphertext receive buffer: one TLS record (16 KiB of plaintext plus its
/// header, padding and tag) fits, so a record never needs two receives
/// just because of the buffer.
pub(crate) const TLS_RECV_BUF: usize = 16 * 1024 + 512;

/// Why the TLS layer ended the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsFailure {
    /// Before the handshake completed (counted as a refused connection).
    Handshake,
    /// After it (a corrupt record, a bad alert).
    Session,
}

/// One connection's TLS state.
pub(crate) struct TlsLayer {
    conn: rustls::ServerConnection,
    /// Where the kernel receives ciphertext; the bytes from `pending_start`
    /// to `pending_end` still wait for rustls.
    recv: Box<[u8]>,
    pending_start: usize,
    pending_end: usize,
    /// The core had no room for plaintext at the last pump: rustls may
    /// still hold some, so no receive is armed before the next pump.
    stalled: bool,
    /// The socket reached end of stream (a receive returned 0).
    socket_eof: bool,
    /// End of plaintext was passed to the core (close_notify, or the
    /// socket's end once everything before it was delivered).
    ended: bool,
    /// close_notify was queued (the core closed).
    closing: bool,
}

impl TlsLayer {
    /// A server-side session for `config`.
    pub(crate) fn new(config: Arc<rustls::ServerConfig>) -> Result<Self, rustls::Error> {
        Ok(Self {
            conn: rustls::ServerConnection::new(config)?,
            recv: vec![0; TLS_RECV_BUF].into_boxed_slice(),
            pending_start: 0,
            pending_end: 0,
            stalled: false,
            socket_eof: false,
            ended: false,
            closing: false,
        })
    }

    /// Whether a receive may be armed: every earlier ciphertext byte went
    /// to rustls and every plaintext byte rustls had went to the core.
    pub(crate) fn wants_recv(&self) -> bool {
        self.pending_start == self.pending_end && !self.stalled && !self.socket_eof && !self.ended
    }

    /// The buffer a receive fills (only when [`Self::wants_recv`]).
    pub(crate) fn recv_buf(&mut self) -> &mut [u8] {
        &mut self.recv
    }

    /// A receive completed with `n` ciphertext bytes (0: end of stream).
    pub(crate) fn on_recv(&mut self, n: usize) {
        self.pending_start = 0;
        self.pending_end = n;
        self.socket_eof |= n == 0;
    }

    /// Whether end of plaintext was passed to the core.
    pub(crate) fn ended(&self) -> bool {
        self.ended
    }

    /// Feeds rustls what it can take and moves plaintext into the core
    /// while the core has room; passes end of stream on once everything
    /// before it was delivered. Returns the plaintext bytes moved.
    pub(crate) fn pump_in(&mut self, core: &mut ServerConnection) -> Result<usize, TlsFailure> {
        let mut moved = 0;
        while !self.ended {
            if !core.wants_read() || core.read_buf().is_empty() {
                // The core must parse (or stop refusing input) first.
                self.stalled = true;
                return Ok(moved);
            }
            match self.conn.reader().read(core.read_buf()) {
                Ok(0) => {
                    // close_notify: the peer's clean end of stream.
                    self.end(core);
                    break;
                }
                Ok(n) => {
                    core.on_read(n);
                    moved += n;
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                // The socket ended without close_notify, after all plaintext.
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                    self.end(core);
                    break;
                }
                Err(_) => return Err(self.failure()),
            }
            // rustls holds no plaintext now.
            self.stalled = false;
            if self.pending_start == self.pending_end {
                if self.socket_eof {
                    self.end(core);
                }
                break;
            }
            let mut rest = &self.recv[self.pending_start..self.pending_end];
            let took = self.conn.read_tls(&mut rest).map_err(|_| self.failure())?;
            self.pending_start += took;
            if self.conn.process_new_packets().is_err() {
                return Err(self.failure());
            }
        }
        Ok(moved)
    }

    fn end(&mut self, core: &mut ServerConnection) {
        self.ended = true;
        core.on_read(0);
    }

    fn failure(&self) -> TlsFailure {
        if self.conn.is_handshaking() {
            TlsFailure::Handshake
        } else {
            TlsFailure::Session
        }
    }

    /// Moves the core's outbound plaintext into rustls (as much as it
    /// buffers) and appends the resulting records, and any handshake
    /// message, to `send_buf`. Queues close_notify once the core closed and
    /// has nothing left to send.
    pub(crate) fn pump_out(&mut self, core: &mut ServerConnection, send_buf: &mut Vec<u8>) {
        let out = core.outbound();
        if !out.is_empty() {
            let n = self.conn.writer().write(out).unwrap_or(0);
            core.advance_outbound(n);
        }
        if core.is_closed() && core.outbound().is_empty() && !self.closing {
            self.closing = true;
            self.conn.send_close_notify();
        }
        self.write_pending(send_buf);
    }

    /// Appends every record rustls has queued (after a failure: its fatal
    /// alert) to `out`, without taking plaintext from the core.
    pub(crate) fn write_pending(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            if self.conn.write_tls(out).is_err() {
                break;
            }
        }
    }

    /// Whether rustls holds records not yet moved to the send buffer.
    pub(crate) fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }
}
