//! The server side of one HardLight connection as a state machine with no I/O.
//!
//! A driver (the glommio server, or a test) moves bytes: it reads from the
//! socket into [`ServerConnection::read_buf`], reports how many arrived with
//! [`ServerConnection::on_read`], pulls [`Event`]s, answers calls with
//! [`ServerConnection::complete`] / [`ServerConnection::fail`], and writes
//! [`ServerConnection::outbound`] to the socket. Everything the protocol
//! decides (framing rules, envelope parsing, call ids, close codes, and the
//! time rules: keepalive, idle close, message deadline, close handshake,
//! shutdown grace) happens here, so it can be tested on byte buffers. Time
//! is an input ([`ServerConnection::handle_timeout`],
//! [`ServerConnection::poll_timeout`]); the core never reads a clock.
//!
//! Files: this one holds the connection's state and its commands; `upgrade`
//! the handshake phase; `parse` the message phase (frames in, events out);
//! `timers` the time rules.
//!
//! A connection made with [`Mode::Echo`] is a plain WebSocket instead (the
//! endpoint the Autobahn conformance suite tests): no subprotocol, text and
//! binary messages delivered whole as [`Event::Message`], text validated as
//! UTF-8 as it arrives.

use std::time::Duration;

use crate::calls::CallTable;
use crate::envelope::{self, ClientMessage};
use crate::error::{CallErrorCode, CloseCode};
use crate::frame::{self, FrameError, FrameHeader, Opcode, Role};
use crate::handshake::{self, HandshakeError, UpgradeRequest};
use crate::limits::{Limits, IDLE_READ_BUFFER};
use crate::service::Reply;
use crate::wire::{AlignedBuf, ARCHIVE_ALIGN};

pub use observe::{CallObserver, CallOutcome};
pub use timers::TimerAction;

/// Bytes of padding before a reassembled message in the aligned message
/// buffer, chosen so that a call's input archive (after the 4-byte call
/// header) starts on an [`ARCHIVE_ALIGN`] boundary.
const MSG_PAD: usize = ARCHIVE_ALIGN - envelope::CALL_HEADER_LEN;

/// What a connection carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// HardLight RPC (`hl/1`): the upgrade must offer the subprotocol, only
    /// binary messages are accepted (text closes with 1003), and every
    /// message is an envelope ([`Event::Call`]).
    #[default]
    Rpc,
    /// A plain WebSocket for an echo server: no subprotocol is required or
    /// selected, and complete messages (text or binary, after reassembly)
    /// are delivered as [`Event::Message`] for the driver to answer with
    /// [`ServerConnection::send_message`]. Text is validated as UTF-8 as it
    /// arrives; an invalid byte closes with 1007 at once, even inside a
    /// fragment or a frame still arriving. The framing, control-frame, close
    /// and size rules are the RPC mode's.
    Echo,
}

/// What the driver must act on.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A valid upgrade request arrived. The driver decides (connection
    /// factory) and calls [`ServerConnection::accept`] or
    /// [`ServerConnection::refuse`].
    Upgrade(UpgradeRequest),
    /// The upgrade request was invalid; the refusal is queued in `outbound`.
    HandshakeFailed(HandshakeError),
    /// A call to run. Its id is now live until `complete` or `fail`.
    Call {
        /// Call id.
        id: u8,
        /// Method id.
        method: u16,
        /// Input archive, aligned to [`ARCHIVE_ALIGN`]; valid until the next
        /// `poll_event`/`on_read`.
        input: &'a [u8],
        /// The client's time limit for this call (`CALL_DEADLINE`), counted
        /// from now; `None` for a plain `CALL`. The core enforces it: when
        /// it passes, [`Event::Cancel`] tells the driver to drop the call.
        timeout: Option<Duration>,
    },
    /// Drop call `id`'s handler without answering: the core has answered it
    /// (`Cancelled` for the client's CANCEL, `DeadlineExceeded` when its
    /// deadline passed) and freed its id. Comes before any later event that
    /// could reuse the id.
    Cancel {
        /// The call id.
        id: u8,
    },
    /// A complete message ([`Mode::Echo`] only). `text` messages are valid UTF-8.
    Message {
        /// Whether the message is text (opcode 0x1) rather than binary.
        text: bool,
        /// The reassembled payload; valid until the next `poll_event`/`on_read`.
        payload: &'a [u8],
    },
    /// The connection is finished: flush `outbound`, then close the socket.
    Closed(CloseReason),
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer sent a Close frame with this code (1005 if none).
    ByPeer(u16),
    /// This side closed with this code; the peer has acknowledged or the stream ended.
    ByUs(CloseCode),
    /// The stream ended without a closing handshake.
    Eof,
    /// The upgrade was refused.
    Refused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the upgrade request.
    Handshake,
    /// Upgrade request delivered; waiting for the driver's decision.
    AwaitingAccept,
    /// Exchanging messages.
    Open,
    /// We sent a Close frame; waiting for the peer's Close (data is discarded).
    Closing(CloseCode),
    /// Done; only flushing remains.
    Closed,
}

/// Progress through the payload of a data frame.
#[derive(Debug, Clone, Copy)]
struct DataFrame {
    mask: [u8; 4],
    remaining: u64,
    done: usize,
    fin: bool,
    /// Discarding a data frame that arrived after our Close.
    skip: bool,
}

/// Counters a driver can export.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Call requests received.
    pub calls_received: u64,
    /// Calls answered with an output or application error.
    pub calls_completed: u64,
    /// Calls answered with a call error.
    pub calls_failed: u64,
    /// Complete data messages received (any kind, after reassembly).
    pub messages_received: u64,
    /// Bytes read from the peer (handshake included).
    pub bytes_read: u64,
    /// Bytes written to the peer (as reported by `advance_outbound`).
    pub bytes_written: u64,
}

/// One server-side connection's protocol state.
#[derive(Debug)]
pub struct ServerConnection {
    limits: Limits,
    mode: Mode,
    phase: Phase,
    inbuf: Vec<u8>,
    in_start: usize,
    in_end: usize,
    /// Reassembled message payload, after `MSG_PAD` bytes of padding.
    msg: AlignedBuf,
    /// Opcode (text or binary) of the message being reassembled, if any.
    msg_opcode: Option<Opcode>,
    /// Bytes of a text message in `msg` (after the padding) known to be
    /// valid UTF-8; at most 3 bytes of an unfinished character follow them.
    utf8_valid: usize,
    data: Option<DataFrame>,
    calls: CallTable,
    draining: bool,
    out: Vec<u8>,
    out_start: usize,
    scratch: AlignedBuf,
    pending_close: Option<CloseReason>,
    stats: ConnectionStats,
    time: timers::Timers,
    /// Calls the core ended on the client's behalf (CANCEL, deadline), for
    /// [`Event::Cancel`], oldest first.
    cancelled: std::collections::VecDeque<u8>,
    /// The queue of server-originated messages, once attached.
    outbox: Option<ordering::Attached>,
    /// Set when the peer went quiet (the keepalive ping): the next
    /// [`ServerConnection::read_buf`] with nothing buffered gives the large
    /// buffers back (never earlier: a driver may have a read in flight into
    /// the current one).
    release_buffers: bool,
    /// The last read filled the read buffer: the next one gets a larger one.
    filled: bool,
    /// The resume request, from the first message (see [`Self::take_resume`]).
    resume: ResumeSlot,
    /// Told of every call's outcome (metrics); none by default.
    observer: observe::Observer,
}

/// Where a connection is with its resume request.
#[derive(Debug, Default)]
enum ResumeSlot {
    /// No message yet.
    #[default]
    Waiting,
    /// The first message arrived: these positions (none if it was not a
    /// `RESUME`) are for the driver to take.
    Ready(crate::resume::ResumeRequest),
    /// Taken by the driver.
    Taken,
}

impl ServerConnection {
    /// A HardLight connection that has just been accepted at the TCP level.
    pub fn new(limits: Limits) -> Self {
        Self::with_mode(limits, Mode::Rpc)
    }

    /// A connection in the given mode; [`Mode::Echo`] for a plain WebSocket.
    pub fn with_mode(limits: Limits, mode: Mode) -> Self {
        // Every buffer starts small or empty and grows with use: a pending
        // handshake or an idle connection holds about IDLE_READ_BUFFER.
        let mut msg = AlignedBuf::new();
        msg.resize(MSG_PAD, 0);
        Self {
            limits,
            mode,
            phase: Phase::Handshake,
            inbuf: Vec::new(),
            in_start: 0,
            in_end: 0,
            msg,
            msg_opcode: None,
            utf8_valid: 0,
            data: None,
            calls: CallTable::new(),
            draining: false,
            out: Vec::new(),
            out_start: 0,
            scratch: AlignedBuf::new(),
            pending_close: None,
            stats: ConnectionStats::default(),
            time: timers::Timers::default(),
            cancelled: std::collections::VecDeque::new(),
            outbox: None,
            release_buffers: false,
            filled: false,
            resume: ResumeSlot::Waiting,
            observer: observe::Observer::default(),
        }
    }

    /// The client's resume positions, once its first message has arrived:
    /// those of its `RESUME` if that was the first message, none if it was a
    /// call. Returns `Some` exactly once per connection. A client that opted
    /// in to resume sends `RESUME` first, and the server holds its topic
    /// events until this is taken (see `hardlight_core::resume`).
    pub fn take_resume(&mut self) -> Option<crate::resume::ResumeRequest> {
        match std::mem::replace(&mut self.resume, ResumeSlot::Taken) {
            ResumeSlot::Ready(p) => Some(p),
            other => {
                self.resume = other;
                None
            }
        }
    }

    /// The limits this connection enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// What this connection carries.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Space to read socket bytes into. Never empty while the connection reads.
    ///
    /// The buffer starts at [`IDLE_READ_BUFFER`] bytes and grows when a read
    /// fills it: while handshaking, doubling up to `max_handshake_size`;
    /// once open, to `read_buffer_size` at once. After the peer has been
    /// quiet for a keepalive interval it shrinks back (as do the message,
    /// reply and outbound buffers, when empty), here and only here: a driver
    /// never has a read in flight into a buffer it has not just asked for.
    pub fn read_buf(&mut self) -> &mut [u8] {
        if self.in_start == self.in_end {
            self.in_start = 0;
            self.in_end = 0;
            if std::mem::take(&mut self.release_buffers) {
                self.release_idle_buffers();
            }
        } else if self.in_end == self.inbuf.len() && self.in_start > 0 {
            self.inbuf.copy_within(self.in_start..self.in_end, 0);
            self.in_end -= self.in_start;
            self.in_start = 0;
        }
        // Grow when the last read filled the buffer (the peer sends more
        // than it holds), or when there is no room left at all.
        if std::mem::take(&mut self.filled) || self.in_end == self.inbuf.len() {
            let len = self.inbuf.len();
            let grown = match self.phase {
                _ if len == 0 => IDLE_READ_BUFFER,
                Phase::Handshake => (len * 2).min(self.limits.max_handshake_size + 1),
                _ => self.limits.read_buffer_size.max(len),
            };
            if grown > len {
                self.inbuf.resize(grown, 0);
            }
        }
        &mut self.inbuf[self.in_end..]
    }

    /// Gives the large buffers back while the connection is quiet; they
    /// grow again with the next traffic (one allocation each).
    fn release_idle_buffers(&mut self) {
        if self.inbuf.len() > IDLE_READ_BUFFER {
            self.inbuf = vec![0; IDLE_READ_BUFFER];
        }
        if self.msg_opcode.is_none() && self.data.is_none() && self.msg.capacity() > IDLE_READ_BUFFER {
            let mut msg = AlignedBuf::new();
            msg.resize(MSG_PAD, 0);
            self.msg = msg;
        }
        if self.out_start == self.out.len() && self.out.capacity() > IDLE_READ_BUFFER {
            self.out = Vec::new();
            self.out_start = 0;
        }
        if self.scratch.capacity() > IDLE_READ_BUFFER {
            self.scratch = AlignedBuf::new();
        }
    }

    /// Records that `n` bytes were read into [`Self::read_buf`]; `n == 0` means
    /// the peer closed its side.
    pub fn on_read(&mut self, n: usize) {
        if n == 0 {
            if !matches!(self.phase, Phase::Closed) {
                let reason = match self.phase {
                    Phase::Closing(code) => CloseReason::ByUs(code),
                    _ => CloseReason::Eof,
                };
                self.phase = Phase::Closed;
                self.pending_close = Some(reason);
            }
            return;
        }
        debug_assert!(self.in_end + n <= self.inbuf.len());
        self.in_end = (self.in_end + n).min(self.inbuf.len());
        self.filled = self.in_end == self.inbuf.len();
        self.stats.bytes_read += n as u64;
        // Stamped by the next `handle_timeout`: no clock read per read.
        self.time.heard = true;
    }

    /// Whether the driver should read more from the socket now. False once
    /// closed, while the upgrade awaits a decision, or while the outbound
    /// queue is over its limit (back-pressure on a peer that does not read).
    pub fn wants_read(&self) -> bool {
        match self.phase {
            Phase::Closed | Phase::AwaitingAccept => false,
            Phase::Closing(_) => true,
            _ => self.outbound().len() < self.limits.max_outbound_bytes,
        }
    }

    /// Whether the connection is finished (only flushing remains).
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Whether the upgrade completed and the connection has not started closing.
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open)
    }

    /// Calls received and not yet answered.
    pub fn calls_in_flight(&self) -> usize {
        self.calls.len()
    }

    /// Counters since the connection opened.
    pub fn stats(&self) -> ConnectionStats {
        self.stats
    }

    /// Bytes this connection holds on the peer's account: the part of a
    /// message still arriving, plus output not yet written. A driver sums
    /// this over its connections to enforce a budget (the server closes the
    /// connection whose growth exceeds its shard's budget with
    /// [`CloseCode::OverBudget`]).
    pub fn held_bytes(&self) -> usize {
        let partial = if self.msg_opcode.is_some() { self.msg.len() - MSG_PAD } else { 0 };
        partial + self.outbound().len()
    }

    /// Bytes waiting to be written to the socket.
    pub fn outbound(&self) -> &[u8] {
        &self.out[self.out_start..]
    }

    /// Records that `n` bytes of [`Self::outbound`] were written.
    pub fn advance_outbound(&mut self, n: usize) {
        self.stats.bytes_written += n.min(self.out.len() - self.out_start) as u64;
        self.out_start = (self.out_start + n).min(self.out.len());
        if self.out_start == self.out.len() {
            self.out.clear();
            self.out_start = 0;
        } else if self.out_start > 64 * 1024 && self.out_start * 2 > self.out.len() {
            self.out.drain(..self.out_start);
            self.out_start = 0;
        }
    }

    /// Stops starting new calls: later call requests get `ShuttingDown`.
    /// Calls already running may still complete.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// Graceful shutdown: stops starting calls ([`Self::drain`]), and closes
    /// with 1001 as soon as no call is in flight, or when `grace` has passed
    /// (counted from the next [`Self::handle_timeout`]), whichever is first.
    /// When the grace period ends with calls in flight, `handle_timeout`
    /// returns [`TimerAction::Closing`] with [`CloseCode::GoingAway`], and
    /// the driver may drop those calls: their responses could no longer be
    /// sent.
    pub fn shutdown(&mut self, grace: Duration) {
        self.draining = true;
        if self.time.grace.is_none() {
            self.time.grace = Some(grace);
        }
        self.close_if_drained();
    }

    fn close_if_drained(&mut self) {
        if self.time.grace.is_some() && self.calls.is_empty() && self.phase == Phase::Open {
            self.close(CloseCode::GoingAway, "server shutting down");
        }
    }

    /// Starts the closing handshake with `code`. Responses to calls still in
    /// flight are dropped after this (no data may follow a Close frame).
    pub fn close(&mut self, code: CloseCode, reason: &str) {
        match self.phase {
            Phase::Open => {
                let (p, n) = frame::close_payload(code.as_u16(), reason);
                frame::write_frame(&mut self.out, Opcode::Close, &p[..n]);
                self.phase = Phase::Closing(code);
                // A message still arriving will never be delivered: let go
                // of it now (the rest of its frame is skipped as it comes).
                if let Some(df) = &mut self.data {
                    df.skip = true;
                }
                self.msg_opcode = None;
                self.msg.resize(MSG_PAD, 0);
            }
            Phase::Handshake | Phase::AwaitingAccept => {
                self.phase = Phase::Closed;
                self.pending_close = Some(CloseReason::ByUs(code));
            }
            Phase::Closing(_) | Phase::Closed => {}
        }
    }

    /// Appends already-framed server messages (from an [`crate::outbox::Outbox`]).
    /// Dropped once the connection is closing: nothing may follow a Close.
    pub fn send_framed(&mut self, frames: &[u8]) {
        if self.phase == Phase::Open {
            self.out.extend_from_slice(frames);
        }
    }

    /// Queues a ping (keepalive); the peer answers with a pong.
    pub fn ping(&mut self, payload: &[u8]) {
        if self.phase == Phase::Open {
            frame::write_frame(&mut self.out, Opcode::Ping, &payload[..payload.len().min(frame::MAX_CONTROL_PAYLOAD)]);
        }
    }

    /// Sends one whole message ([`Mode::Echo`]: the driver echoes each
    /// [`Event::Message`] with this). Dropped once the connection is closing.
    /// `text` payloads must be UTF-8 (an echoed text message is).
    pub fn send_message(&mut self, text: bool, payload: &[u8]) {
        debug_assert_eq!(self.mode, Mode::Echo, "HardLight connections send envelopes, not raw messages");
        debug_assert!(!text || std::str::from_utf8(payload).is_ok(), "text message is not UTF-8");
        if self.phase == Phase::Open {
            let opcode = if text { Opcode::Text } else { Opcode::Binary };
            frame::write_header(&mut self.out, true, opcode, payload.len(), None);
            self.out.extend_from_slice(payload);
        }
    }

    /// Answers call `id` with the handler's reply.
    pub fn complete<R: Reply + ?Sized>(&mut self, id: u8, reply: &R) {
        if !self.calls.finish(id) {
            debug_assert!(false, "complete() for call {id} that is not in flight");
            return;
        }
        self.time.forget_deadline(id);
        if self.phase != Phase::Open {
            self.observe_end(id, CallOutcome::Dropped);
            return;
        }
        // What the call queued (state, features) goes out before its answer.
        self.drain_outbox_all();
        match reply.encode(&mut self.scratch) {
            Ok(ok) => {
                frame::write_header(
                    &mut self.out,
                    true,
                    Opcode::Binary,
                    envelope::RESULT_HEADER_LEN + self.scratch.len(),
                    None,
                );
                self.out.extend_from_slice(&envelope::result_header(id, ok));
                self.out.extend_from_slice(&self.scratch);
                self.stats.calls_completed += 1;
                self.observe_end(id, if ok { CallOutcome::Ok } else { CallOutcome::AppError });
            }
            Err(_) => {
                // rkyv's serializer texts may name server types: not for the peer.
                self.write_call_error(id, CallErrorCode::EncodeFailed, "the server could not encode the output");
                self.observe_end(id, CallOutcome::Failed(CallErrorCode::EncodeFailed));
            }
        }
        self.close_if_drained();
    }

    /// Answers call `id` with a protocol-level error.
    pub fn fail(&mut self, id: u8, code: CallErrorCode, detail: &str) {
        if !self.calls.finish(id) {
            debug_assert!(false, "fail() for call {id} that is not in flight");
            return;
        }
        self.time.forget_deadline(id);
        if self.phase == Phase::Open {
            self.drain_outbox_all();
            self.write_call_error(id, code, detail);
        }
        self.observe_end(id, CallOutcome::Failed(code));
        self.close_if_drained();
    }

    /// The next call the core ended on the client's behalf (a deadline that
    /// passed, a CANCEL), whose handler the driver must drop: the same as
    /// [`Event::Cancel`], for a driver that cannot call
    /// [`Self::poll_event`] now because its read buffer is lent to the
    /// kernel (an io_uring receive in flight). Touches no buffer.
    pub fn poll_cancel(&mut self) -> Option<u8> {
        self.cancelled.pop_front()
    }

    /// Ends call `id` on the client's behalf: answers it with `code` and
    /// queues [`Event::Cancel`] so the driver drops its handler. Nothing
    /// happens for an id that is not live (its answer already went out: the
    /// client's CANCEL crossed it).
    fn cancel(&mut self, id: u8, code: CallErrorCode, detail: &str) {
        if self.calls.is_live(id) {
            self.fail(id, code, detail);
            self.cancelled.push_back(id);
        }
    }

    fn write_call_error(&mut self, id: u8, code: CallErrorCode, detail: &str) {
        // Detail is advisory; cap it so error replies stay small.
        let mut n = detail.len().min(256);
        while !detail.is_char_boundary(n) {
            n -= 1;
        }
        frame::write_header(&mut self.out, true, Opcode::Binary, envelope::CALL_ERROR_HEADER_LEN + n, None);
        self.out.extend_from_slice(&envelope::call_error_header(id, code));
        self.out.extend_from_slice(&detail.as_bytes()[..n]);
        self.stats.calls_failed += 1;
    }
}

mod observe;
mod ordering;
mod parse;
mod timers;
mod upgrade;

#[cfg(test)]
mod tests;
