//! The server side of one HardLight connection as a state machine with no I/O.
//!
//! A driver (the glommio server, or a test) moves bytes: it reads from the
//! socket into [`ServerConnection::read_buf`], reports how many arrived with
//! [`ServerConnection::on_read`], pulls [`Event`]s, answers calls with
//! [`ServerConnection::complete`] / [`ServerConnection::fail`], and writes
//! [`ServerConnection::outbound`] to the socket. Everything the protocol
//! decides (framing rules, envelope parsing, call ids, close codes) happens
//! here, so it can be tested on byte buffers.

use crate::calls::CallTable;
use crate::envelope::{self, ClientMessage};
use crate::error::{CallErrorCode, CloseCode};
use crate::frame::{self, FrameError, FrameHeader, Opcode, Role};
use crate::handshake::{self, HandshakeError, UpgradeRequest};
use crate::limits::Limits;
use crate::service::Reply;
use crate::wire::{AlignedBuf, ARCHIVE_ALIGN};

/// Bytes of padding before a reassembled message in the aligned message
/// buffer, chosen so that a call's input archive (after the 4-byte call
/// header) starts on an [`ARCHIVE_ALIGN`] boundary.
const MSG_PAD: usize = ARCHIVE_ALIGN - envelope::CALL_HEADER_LEN;

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
}

/// One server-side connection's protocol state.
#[derive(Debug)]
pub struct ServerConnection {
    limits: Limits,
    phase: Phase,
    inbuf: Vec<u8>,
    in_start: usize,
    in_end: usize,
    /// Reassembled message payload, after `MSG_PAD` bytes of padding.
    msg: AlignedBuf,
    /// Opcode of the message being reassembled, if any.
    msg_opcode: Option<Opcode>,
    data: Option<DataFrame>,
    calls: CallTable,
    draining: bool,
    out: Vec<u8>,
    out_start: usize,
    scratch: AlignedBuf,
    pending_close: Option<CloseReason>,
    stats: ConnectionStats,
}

impl ServerConnection {
    /// A connection that has just been accepted at the TCP level.
    pub fn new(limits: Limits) -> Self {
        let size = limits.read_buffer_size.max(limits.max_handshake_size + 1).max(256);
        let mut msg = AlignedBuf::with_capacity(1024);
        msg.resize(MSG_PAD, 0);
        Self {
            limits,
            phase: Phase::Handshake,
            inbuf: vec![0; size],
            in_start: 0,
            in_end: 0,
            msg,
            msg_opcode: None,
            data: None,
            calls: CallTable::new(),
            draining: false,
            out: Vec::with_capacity(4096),
            out_start: 0,
            scratch: AlignedBuf::with_capacity(1024),
            pending_close: None,
            stats: ConnectionStats::default(),
        }
    }

    /// The limits this connection enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Space to read socket bytes into. Never empty while the connection reads.
    pub fn read_buf(&mut self) -> &mut [u8] {
        if self.in_start == self.in_end {
            self.in_start = 0;
            self.in_end = 0;
        } else if self.in_end == self.inbuf.len() && self.in_start > 0 {
            self.inbuf.copy_within(self.in_start..self.in_end, 0);
            self.in_end -= self.in_start;
            self.in_start = 0;
        }
        &mut self.inbuf[self.in_end..]
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

    /// Bytes waiting to be written to the socket.
    pub fn outbound(&self) -> &[u8] {
        &self.out[self.out_start..]
    }

    /// Records that `n` bytes of [`Self::outbound`] were written.
    pub fn advance_outbound(&mut self, n: usize) {
        self.out_start = (self.out_start + n).min(self.out.len());
        if self.out_start == self.out.len() {
            self.out.clear();
            self.out_start = 0;
        } else if self.out_start > 64 * 1024 && self.out_start * 2 > self.out.len() {
            self.out.drain(..self.out_start);
            self.out_start = 0;
        }
    }

    /// Accepts the upgrade delivered by [`Event::Upgrade`].
    pub fn accept(&mut self, req: &UpgradeRequest) {
        if self.phase == Phase::AwaitingAccept {
            req.write_accept(&mut self.out);
            self.phase = Phase::Open;
        }
    }

    /// Refuses the upgrade delivered by [`Event::Upgrade`] with an HTTP status.
    pub fn refuse(&mut self, status: u16, reason: &str) {
        if self.phase == Phase::AwaitingAccept {
            HandshakeError::Refused(status, reason.to_string()).write_response(&mut self.out);
            self.phase = Phase::Closed;
            self.pending_close = Some(CloseReason::Refused);
        }
    }

    /// Stops starting new calls: later call requests get `ShuttingDown`.
    /// Calls already running may still complete.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// Starts the closing handshake with `code`. Responses to calls still in
    /// flight are dropped after this (no data may follow a Close frame).
    pub fn close(&mut self, code: CloseCode, reason: &str) {
        match self.phase {
            Phase::Open => {
                let (p, n) = frame::close_payload(code.as_u16(), reason);
                frame::write_frame(&mut self.out, Opcode::Close, &p[..n]);
                self.phase = Phase::Closing(code);
            }
            Phase::Handshake | Phase::AwaitingAccept => {
                self.phase = Phase::Closed;
                self.pending_close = Some(CloseReason::ByUs(code));
            }
            Phase::Closing(_) | Phase::Closed => {}
        }
    }

    /// Queues a ping (keepalive); the peer answers with a pong.
    pub fn ping(&mut self, payload: &[u8]) {
        if self.phase == Phase::Open {
            frame::write_frame(&mut self.out, Opcode::Ping, &payload[..payload.len().min(frame::MAX_CONTROL_PAYLOAD)]);
        }
    }

    /// Answers call `id` with the handler's reply.
    pub fn complete<R: Reply + ?Sized>(&mut self, id: u8, reply: &R) {
        if !self.calls.finish(id) {
            debug_assert!(false, "complete() for call {id} that is not in flight");
            return;
        }
        if self.phase != Phase::Open {
            return;
        }
        match reply.encode(&mut self.scratch) {
            Ok(ok) => {
                frame::write_header(&mut self.out, true, Opcode::Binary, envelope::RESULT_HEADER_LEN + self.scratch.len(), None);
                self.out.extend_from_slice(&envelope::result_header(id, ok));
                self.out.extend_from_slice(&self.scratch);
                self.stats.calls_completed += 1;
            }
            Err(e) => {
                self.write_call_error(id, CallErrorCode::EncodeFailed, &e.0);
            }
        }
    }

    /// Answers call `id` with a protocol-level error.
    pub fn fail(&mut self, id: u8, code: CallErrorCode, detail: &str) {
        if !self.calls.finish(id) {
            debug_assert!(false, "fail() for call {id} that is not in flight");
            return;
        }
        if self.phase == Phase::Open {
            self.write_call_error(id, code, detail);
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

    /// Processes buffered input until something needs the driver.
    pub fn poll_event(&mut self) -> Option<Event<'_>> {
        if let Some(reason) = self.pending_close.take() {
            return Some(Event::Closed(reason));
        }
        loop {
            match self.phase {
                Phase::Closed | Phase::AwaitingAccept => return None,
                Phase::Handshake => return self.poll_handshake(),
                Phase::Open | Phase::Closing(_) => {}
            }
            match self.step() {
                Step::NeedMore => return None,
                Step::Continue => continue,
                Step::Closed(reason) => return Some(Event::Closed(reason)),
                Step::Message => {
                    // Borrow ends before the next loop iteration on every path that continues.
                    if let Some((id, method)) = self.take_call() {
                        let input = &self.msg[MSG_PAD + envelope::CALL_HEADER_LEN..];
                        return Some(Event::Call { id, method, input });
                    }
                }
            }
        }
    }

    fn poll_handshake(&mut self) -> Option<Event<'_>> {
        let data = &self.inbuf[self.in_start..self.in_end];
        match handshake::parse_request(data, self.limits.max_handshake_size, self.limits.max_headers) {
            Ok(None) => None,
            Ok(Some((req, used))) => {
                self.in_start += used;
                self.phase = Phase::AwaitingAccept;
                Some(Event::Upgrade(req))
            }
            Err(e) => {
                e.write_response(&mut self.out);
                self.phase = Phase::Closed;
                self.pending_close = Some(CloseReason::Refused);
                Some(Event::HandshakeFailed(e))
            }
        }
    }

    /// Examines the message in `msg` (a complete binary message). Returns the
    /// call to deliver, or `None` if it was answered here or dropped.
    fn take_call(&mut self) -> Option<(u8, u16)> {
        let closing = !matches!(self.phase, Phase::Open);
        let body = &self.msg[MSG_PAD..];
        match envelope::decode_client(body) {
            Ok(ClientMessage::Call { id, method, .. }) => {
                if closing {
                    return None;
                }
                self.stats.calls_received += 1;
                if !self.calls.begin(id) {
                    self.write_call_error(id, CallErrorCode::DuplicateCallId, "call id is already in flight; wait for its response before reusing it");
                    return None;
                }
                if self.draining {
                    self.fail(id, CallErrorCode::ShuttingDown, "server is shutting down");
                    return None;
                }
                Some((id, method))
            }
            Err(e) => {
                if !closing {
                    let reason = e.to_string();
                    self.close(CloseCode::MalformedEnvelope, &reason);
                }
                None
            }
        }
    }

    fn protocol_close(&mut self, code: CloseCode, reason: &str) -> Step {
        self.close(code, reason);
        // Nothing more from this peer is trusted; stop parsing but keep
        // reading so the peer gets a clean closing handshake.
        self.in_start = self.in_end;
        self.data = None;
        self.msg_opcode = None;
        self.msg.resize(MSG_PAD, 0);
        Step::Continue
    }

    fn step(&mut self) -> Step {
        if let Some(df) = self.data {
            return self.step_data(df);
        }
        let avail = &self.inbuf[self.in_start..self.in_end];
        let current = if self.msg_opcode.is_some() { self.msg.len() - MSG_PAD } else { 0 };
        let room = self.limits.max_message_size.saturating_sub(current);
        let hdr = match frame::parse_header(avail, Role::Server, room.max(frame::MAX_CONTROL_PAYLOAD)) {
            Ok(Some(h)) => h,
            Ok(None) => return Step::NeedMore,
            Err(e) => return self.frame_error(e),
        };
        if matches!(self.phase, Phase::Closing(_)) && !hdr.opcode.is_control() {
            // Discard data after our Close, but parse it to find the peer's Close.
            return self.skip_frame(hdr);
        }
        match hdr.opcode {
            Opcode::Close | Opcode::Ping | Opcode::Pong => self.step_control(hdr),
            Opcode::Text => self.protocol_close(CloseCode::UnsupportedData, "HardLight accepts binary messages only"),
            Opcode::Binary | Opcode::Continuation => {
                match (hdr.opcode, self.msg_opcode) {
                    (Opcode::Binary, Some(_)) => {
                        return self.protocol_close(CloseCode::ProtocolError, "new message started before the previous one finished")
                    }
                    (Opcode::Continuation, None) => {
                        return self.protocol_close(CloseCode::ProtocolError, "continuation frame without a message in progress")
                    }
                    _ => {}
                }
                if hdr.payload_len > room as u64 {
                    return self.protocol_close(CloseCode::MessageTooBig, "message exceeds the size limit");
                }
                if self.msg_opcode.is_none() {
                    self.msg.resize(MSG_PAD, 0);
                    self.msg_opcode = Some(Opcode::Binary);
                }
                self.in_start += hdr.header_len;
                let df = DataFrame { mask: hdr.mask.unwrap_or([0; 4]), remaining: hdr.payload_len, done: 0, fin: hdr.fin, skip: false };
                self.data = Some(df);
                self.step_data(df)
            }
        }
    }

    fn skip_frame(&mut self, hdr: FrameHeader) -> Step {
        let avail = self.in_end - self.in_start;
        let total = hdr.header_len as u64 + hdr.payload_len;
        if (avail as u64) < total {
            // Drop what we have of it; remember how much is left to skip.
            self.in_start = self.in_end;
            self.data = Some(DataFrame { mask: [0; 4], remaining: total - avail as u64, done: 0, fin: false, skip: true });
            return Step::NeedMore;
        }
        self.in_start += total as usize;
        Step::Continue
    }

    fn step_data(&mut self, mut df: DataFrame) -> Step {
        let avail = self.in_end - self.in_start;
        let take = (df.remaining.min(avail as u64)) as usize;
        if df.skip {
            self.in_start += take;
            df.remaining -= take as u64;
            self.data = if df.remaining == 0 { None } else { Some(df) };
            return if df.remaining == 0 { Step::Continue } else { Step::NeedMore };
        }
        let src = &self.inbuf[self.in_start..self.in_start + take];
        let at = self.msg.len();
        self.msg.extend_from_slice(src);
        frame::apply_mask_at(&mut self.msg[at..], df.mask, df.done);
        self.in_start += take;
        df.done += take;
        df.remaining -= take as u64;
        if df.remaining > 0 {
            self.data = Some(df);
            return Step::NeedMore;
        }
        self.data = None;
        if !df.fin {
            return Step::Continue;
        }
        // The message stays in `msg` until the next message starts.
        self.msg_opcode = None;
        Step::Message
    }

    fn step_control(&mut self, hdr: FrameHeader) -> Step {
        let total = hdr.header_len + hdr.payload_len as usize;
        if self.in_end - self.in_start < total {
            return Step::NeedMore;
        }
        let mut payload = [0u8; frame::MAX_CONTROL_PAYLOAD];
        let n = hdr.payload_len as usize;
        payload[..n].copy_from_slice(&self.inbuf[self.in_start + hdr.header_len..self.in_start + total]);
        frame::apply_mask(&mut payload[..n], hdr.mask.unwrap_or([0; 4]));
        self.in_start += total;
        let payload = &payload[..n];
        match hdr.opcode {
            Opcode::Ping => {
                if self.phase == Phase::Open {
                    frame::write_frame(&mut self.out, Opcode::Pong, payload);
                }
                Step::Continue
            }
            Opcode::Pong => Step::Continue,
            _ => self.on_close_frame(payload),
        }
    }

    fn on_close_frame(&mut self, payload: &[u8]) -> Step {
        let (code, echo) = match payload.len() {
            0 => (1005, None),
            1 => (1002, Some((CloseCode::ProtocolError, "close frame with a 1-byte payload"))),
            _ => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                if !frame::is_valid_received_close_code(code) {
                    (code, Some((CloseCode::ProtocolError, "invalid close code")))
                } else if std::str::from_utf8(&payload[2..]).is_err() {
                    (code, Some((CloseCode::InvalidPayload, "close reason is not UTF-8")))
                } else {
                    (code, None)
                }
            }
        };
        let reason = match self.phase {
            Phase::Closing(ours) => CloseReason::ByUs(ours),
            _ => {
                let (echo_code, text) = echo.unwrap_or((CloseCode::from_u16(if code == 1005 { 1000 } else { code }), ""));
                let (p, n) = frame::close_payload(echo_code.as_u16(), text);
                frame::write_frame(&mut self.out, Opcode::Close, &p[..n]);
                CloseReason::ByPeer(code)
            }
        };
        self.phase = Phase::Closed;
        self.in_start = self.in_end;
        Step::Closed(reason)
    }

    fn frame_error(&mut self, e: FrameError) -> Step {
        let code = match e {
            FrameError::TooBig(_) => CloseCode::MessageTooBig,
            _ => CloseCode::ProtocolError,
        };
        if matches!(self.phase, Phase::Closing(_)) {
            // Already closing: give up on the peer.
            self.phase = Phase::Closed;
            self.in_start = self.in_end;
            return Step::Closed(CloseReason::ByUs(code));
        }
        let reason = e.to_string();
        self.protocol_close(code, &reason)
    }
}

enum Step {
    NeedMore,
    Continue,
    Message,
    Closed(CloseReason),
}
