//! The server side of one HardLight connection as a state machine with no I/O.
//!
//! A driver (the glommio server, or a test) moves bytes: it reads from the
//! socket into [`ServerConnection::read_buf`], reports how many arrived with
//! [`ServerConnection::on_read`], pulls [`Event`]s, answers calls with
//! [`ServerConnection::complete`] / [`ServerConnection::fail`], and writes
//! [`ServerConnection::outbound`] to the socket. Everything the protocol
//! decides (framing rules, envelope parsing, call ids, close codes) happens
//! here, so it can be tested on byte buffers.
//!
//! A connection made with [`Mode::Echo`] is a plain WebSocket instead (the
//! endpoint the Autobahn conformance suite tests): no subprotocol, text and
//! binary messages delivered whole as [`Event::Message`], text validated as
//! UTF-8 as it arrives.

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
}

impl ServerConnection {
    /// A HardLight connection that has just been accepted at the TCP level.
    pub fn new(limits: Limits) -> Self {
        Self::with_mode(limits, Mode::Rpc)
    }

    /// A connection in the given mode; [`Mode::Echo`] for a plain WebSocket.
    pub fn with_mode(limits: Limits, mode: Mode) -> Self {
        let size = limits.read_buffer_size.max(limits.max_handshake_size + 1).max(256);
        let mut msg = AlignedBuf::with_capacity(1024);
        msg.resize(MSG_PAD, 0);
        Self {
            limits,
            mode,
            phase: Phase::Handshake,
            inbuf: vec![0; size],
            in_start: 0,
            in_end: 0,
            msg,
            msg_opcode: None,
            utf8_valid: 0,
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

    /// What this connection carries.
    pub fn mode(&self) -> Mode {
        self.mode
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

    /// Accepts the upgrade delivered by [`Event::Upgrade`]. In RPC mode the
    /// `LIMITS` message follows the 101 at once, before anything else.
    pub fn accept(&mut self, req: &UpgradeRequest) {
        if self.phase == Phase::AwaitingAccept {
            req.write_accept(&mut self.out);
            self.phase = Phase::Open;
            if self.mode == Mode::Rpc {
                let limits = envelope::AnnouncedLimits {
                    max_message_size: u32::try_from(self.limits.max_message_size).unwrap_or(u32::MAX),
                };
                frame::write_header(&mut self.out, true, Opcode::Binary, envelope::LIMITS_LEN, None);
                self.out.extend_from_slice(&limits.encode());
            }
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
        if self.phase != Phase::Open {
            return;
        }
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
            }
            Err(_) => {
                // rkyv's serializer texts may name server types: not for the peer.
                self.write_call_error(id, CallErrorCode::EncodeFailed, "the server could not encode the output");
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
                Step::Message { text } => match self.mode {
                    Mode::Rpc => {
                        // Borrow ends before the next loop iteration on every path that continues.
                        if let Some((id, method)) = self.take_call() {
                            let input = &self.msg[MSG_PAD + envelope::CALL_HEADER_LEN..];
                            return Some(Event::Call { id, method, input });
                        }
                    }
                    Mode::Echo => {
                        if self.phase == Phase::Open {
                            return Some(Event::Message { text, payload: &self.msg[MSG_PAD..] });
                        }
                    }
                },
            }
        }
    }

    fn poll_handshake(&mut self) -> Option<Event<'_>> {
        let data = &self.inbuf[self.in_start..self.in_end];
        let subprotocol = match self.mode {
            Mode::Rpc => Some(handshake::SUBPROTOCOL),
            Mode::Echo => None,
        };
        match handshake::parse_request_for(data, self.limits.max_handshake_size, self.limits.max_headers, subprotocol) {
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
                    self.write_call_error(
                        id,
                        CallErrorCode::DuplicateCallId,
                        "call id is already in flight; wait for its response before reusing it",
                    );
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
        let hdr = match frame::parse_header(avail, Role::Server, usize::MAX) {
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
            Opcode::Text if self.mode == Mode::Rpc => {
                self.protocol_close(CloseCode::UnsupportedData, "HardLight accepts binary messages only")
            }
            Opcode::Text | Opcode::Binary | Opcode::Continuation => {
                match (hdr.opcode, self.msg_opcode) {
                    (Opcode::Text | Opcode::Binary, Some(_)) => {
                        return self.protocol_close(
                            CloseCode::ProtocolError,
                            "new message started before the previous one finished",
                        )
                    }
                    (Opcode::Continuation, None) => {
                        return self.protocol_close(
                            CloseCode::ProtocolError,
                            "continuation frame without a message in progress",
                        )
                    }
                    _ => {}
                }
                if hdr.payload_len > room as u64 {
                    // Refused from the header alone. Skip the payload as it
                    // arrives (never buffer it) so that the peer's Close,
                    // which follows it, is still read.
                    self.in_start += hdr.header_len;
                    self.msg_opcode = None;
                    self.close(CloseCode::MessageTooBig, "message exceeds the size limit");
                    self.data =
                        Some(DataFrame { mask: [0; 4], remaining: hdr.payload_len, done: 0, fin: true, skip: true });
                    return Step::Continue;
                }
                if self.msg_opcode.is_none() {
                    self.msg.resize(MSG_PAD, 0);
                    self.msg_opcode = Some(hdr.opcode);
                    self.utf8_valid = 0;
                }
                self.in_start += hdr.header_len;
                let df = DataFrame {
                    mask: hdr.mask.unwrap_or([0; 4]),
                    remaining: hdr.payload_len,
                    done: 0,
                    fin: hdr.fin,
                    skip: false,
                };
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
            self.data =
                Some(DataFrame { mask: [0; 4], remaining: total - avail as u64, done: 0, fin: false, skip: true });
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
        // Fail fast: check text as it arrives, not when the message ends.
        if self.msg_opcode == Some(Opcode::Text) && !self.check_utf8(df.fin && df.remaining == 0) {
            return self.protocol_close(CloseCode::InvalidPayload, "text message is not valid UTF-8");
        }
        if df.remaining > 0 {
            self.data = Some(df);
            return Step::NeedMore;
        }
        self.data = None;
        if !df.fin {
            return Step::Continue;
        }
        // The message stays in `msg` until the next message starts.
        let text = self.msg_opcode.take() == Some(Opcode::Text);
        Step::Message { text }
    }

    /// Extends the validated prefix of the text message in `msg`. False if
    /// the bytes so far cannot begin valid UTF-8, or, once the message is
    /// `complete`, if it ends inside a character.
    fn check_utf8(&mut self, complete: bool) -> bool {
        let unchecked = &self.msg[MSG_PAD + self.utf8_valid..];
        match std::str::from_utf8(unchecked) {
            Ok(_) => {
                self.utf8_valid += unchecked.len();
                true
            }
            Err(e) => {
                self.utf8_valid += e.valid_up_to();
                // `error_len() == None`: the input ends inside a character
                // that more bytes may still complete.
                e.error_len().is_none() && !complete
            }
        }
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
                let (echo_code, text) =
                    echo.unwrap_or((CloseCode::from_u16(if code == 1005 { 1000 } else { code }), ""));
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
    /// A complete message is in `msg`.
    Message {
        text: bool,
    },
    Closed(CloseReason),
}

#[cfg(test)]
mod tests {
    //! The connection driven byte by byte, as a socket would, with no I/O.
    use super::*;
    use crate::envelope::{decode_server, ServerMessage};
    use crate::error::EncodeError;
    use crate::wire::Wire;

    const UPGRADE: &str = "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: hl/1\r\nCookie: token=t0k\r\n\r\n";

    /// A reply that encodes a u64 as output.
    struct U64(u64);
    impl Reply for U64 {
        fn encode(&self, buf: &mut AlignedBuf) -> Result<bool, EncodeError> {
            self.0.encode_into(buf).map(|()| true)
        }
    }

    fn feed(c: &mut ServerConnection, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let dst = c.read_buf();
            let n = dst.len().min(bytes.len());
            dst[..n].copy_from_slice(&bytes[..n]);
            c.on_read(n);
            bytes = &bytes[n..];
        }
    }

    fn take_out(c: &mut ServerConnection) -> Vec<u8> {
        let v = c.outbound().to_vec();
        c.advance_outbound(v.len());
        v
    }

    /// Splits server output into (opcode, payload) frames.
    fn frames(mut out: &[u8]) -> Vec<(Opcode, Vec<u8>)> {
        let mut v = Vec::new();
        while !out.is_empty() {
            let h = frame::parse_header(out, Role::Client, usize::MAX).unwrap().unwrap();
            let end = h.header_len + h.payload_len as usize;
            v.push((h.opcode, out[h.header_len..end].to_vec()));
            out = &out[end..];
        }
        v
    }

    fn open() -> ServerConnection {
        let mut c = ServerConnection::new(Limits::default());
        feed(&mut c, UPGRADE.as_bytes());
        let req = match c.poll_event() {
            Some(Event::Upgrade(r)) => r,
            other => panic!("expected upgrade, got {other:?}"),
        };
        assert_eq!(req.cookie("token").as_deref(), Some("t0k"));
        c.accept(&req);
        let out = take_out(&mut c);
        let end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert!(out.starts_with(b"HTTP/1.1 101"));
        // The LIMITS message follows the 101 at once, before anything else.
        assert_eq!(frames(&out[end..]), vec![(Opcode::Binary, vec![0x22, 0x00, 0x00, 0x10, 0x00])]);
        c
    }

    fn call_frame(id: u8, method: u16, input: &[u8]) -> Vec<u8> {
        let mut msg = Vec::new();
        envelope::encode_call(&mut msg, id, method, input);
        let mut f = Vec::new();
        frame::write_masked_frame(&mut f, true, Opcode::Binary, &msg, [0x11, 0x22, 0x33, 0x44]);
        f
    }

    fn expect_close(c: &mut ServerConnection, code: u16) {
        let out = take_out(c);
        let fs = frames(&out);
        let (op, p) = fs.last().expect("a close frame");
        assert_eq!(*op, Opcode::Close);
        assert_eq!(u16::from_be_bytes([p[0], p[1]]), code, "reason: {}", String::from_utf8_lossy(&p[2..]));
    }

    #[test]
    fn call_is_delivered_aligned_and_answered() {
        let mut c = open();
        let input = crate::wire::encode(&41u64).unwrap();
        feed(&mut c, &call_frame(7, 3, &input));
        match c.poll_event() {
            Some(Event::Call { id, method, input }) => {
                assert_eq!((id, method), (7, 3));
                assert_eq!(input.as_ptr() as usize % ARCHIVE_ALIGN, 0);
                assert_eq!(u64::decode(input).unwrap(), 41);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.calls_in_flight(), 1);
        c.complete(7, &U64(42));
        assert_eq!(c.calls_in_flight(), 0);
        let out = take_out(&mut c);
        let fs = frames(&out);
        assert_eq!(fs.len(), 1);
        match decode_server(&fs[0].1).unwrap() {
            ServerMessage::Result { id: 7, ok: true, payload } => {
                let mut b = AlignedBuf::new();
                assert_eq!(u64::decode(crate::wire::align_into(&mut b, payload)).unwrap(), 42);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn byte_at_a_time_and_fragmented_messages_reassemble() {
        let mut c = open();
        let input = crate::wire::encode(&5u64).unwrap();
        let mut msg = Vec::new();
        envelope::encode_call(&mut msg, 1, 0, &input);
        let mut wire = Vec::new();
        frame::write_masked_frame(&mut wire, false, Opcode::Binary, &msg[..3], [1, 2, 3, 4]);
        // A ping between fragments is legal and answered.
        frame::write_masked_frame(&mut wire, true, Opcode::Ping, b"p", [5, 6, 7, 8]);
        frame::write_masked_frame(&mut wire, true, Opcode::Continuation, &msg[3..], [9, 9, 9, 9]);
        for b in &wire {
            feed(&mut c, std::slice::from_ref(b));
            if let Some(Event::Call { id, input, .. }) = c.poll_event() {
                assert_eq!(id, 1);
                assert_eq!(u64::decode(input).unwrap(), 5);
                c.complete(1, &U64(6));
            }
        }
        let out = take_out(&mut c);
        let fs = frames(&out);
        assert_eq!(fs[0], (Opcode::Pong, b"p".to_vec()));
        assert_eq!(fs.len(), 2, "pong then the result");
    }

    #[test]
    fn duplicate_live_id_gets_an_error_response() {
        let mut c = open();
        feed(&mut c, &call_frame(9, 0, &[]));
        assert!(matches!(c.poll_event(), Some(Event::Call { id: 9, .. })));
        feed(&mut c, &call_frame(9, 0, &[]));
        assert!(c.poll_event().is_none());
        let fs = frames(&take_out(&mut c));
        assert_eq!(
            decode_server(&fs[0].1).unwrap(),
            ServerMessage::CallError {
                id: 9,
                code: CallErrorCode::DuplicateCallId as u8,
                detail: b"call id is already in flight; wait for its response before reusing it"
            }
        );
        // The first call is still live and can complete; then the id is free again.
        c.complete(9, &U64(1));
        feed(&mut c, &call_frame(9, 0, &[]));
        assert!(matches!(c.poll_event(), Some(Event::Call { id: 9, .. })));
    }

    #[test]
    fn all_256_ids_can_be_in_flight() {
        let mut c = open();
        for id in 0..=255u8 {
            feed(&mut c, &call_frame(id, 0, &[]));
            assert!(matches!(c.poll_event(), Some(Event::Call { .. })));
        }
        assert_eq!(c.calls_in_flight(), 256);
        // A 257th request necessarily reuses a live id.
        feed(&mut c, &call_frame(0, 0, &[]));
        assert!(c.poll_event().is_none());
        let fs = frames(&take_out(&mut c));
        assert!(matches!(decode_server(&fs[0].1), Ok(ServerMessage::CallError { id: 0, code: 3, .. })));
    }

    #[test]
    fn malformed_envelope_closes_4000() {
        let mut c = open();
        let mut f = Vec::new();
        frame::write_masked_frame(&mut f, true, Opcode::Binary, &[0x77, 1, 2, 3], [1, 2, 3, 4]);
        feed(&mut c, &f);
        assert!(c.poll_event().is_none());
        expect_close(&mut c, 4000);
        assert!(!c.is_open());
    }

    #[test]
    fn text_frame_closes_1003_and_unmasked_1002() {
        let mut c = open();
        let mut f = Vec::new();
        frame::write_masked_frame(&mut f, true, Opcode::Text, b"hi", [1, 2, 3, 4]);
        feed(&mut c, &f);
        assert!(c.poll_event().is_none());
        expect_close(&mut c, 1003);

        let mut c = open();
        feed(&mut c, &[0x82, 0x01, 0x00]);
        assert!(c.poll_event().is_none());
        expect_close(&mut c, 1002);
    }

    #[test]
    fn oversized_message_closes_1009_before_buffering() {
        let mut c = ServerConnection::new(Limits { max_message_size: 100, ..Limits::default() });
        feed(&mut c, UPGRADE.as_bytes());
        let Some(Event::Upgrade(req)) = c.poll_event() else { panic!() };
        c.accept(&req);
        take_out(&mut c);
        // Only the header of a 1 MiB frame is sent: the verdict needs no payload.
        let mut f = Vec::new();
        frame::write_header(&mut f, true, Opcode::Binary, 1 << 20, Some([0; 4]));
        feed(&mut c, &f);
        assert!(c.poll_event().is_none());
        expect_close(&mut c, 1009);
        // Fragments that add up past the limit are caught too.
        let mut c = ServerConnection::new(Limits { max_message_size: 100, ..Limits::default() });
        feed(&mut c, UPGRADE.as_bytes());
        let Some(Event::Upgrade(req)) = c.poll_event() else { panic!() };
        c.accept(&req);
        take_out(&mut c);
        let mut f = Vec::new();
        frame::write_masked_frame(&mut f, false, Opcode::Binary, &[1; 60], [0; 4]);
        frame::write_masked_frame(&mut f, true, Opcode::Continuation, &[1; 60], [0; 4]);
        feed(&mut c, &f);
        assert!(c.poll_event().is_none());
        expect_close(&mut c, 1009);
    }

    #[test]
    fn peer_close_is_echoed_and_reported() {
        let mut c = open();
        let mut f = Vec::new();
        frame::write_masked_frame(&mut f, true, Opcode::Close, &[0x03, 0xE8, b'b', b'y', b'e'], [1, 2, 3, 4]);
        feed(&mut c, &f);
        assert_eq!(c.poll_event(), Some(Event::Closed(CloseReason::ByPeer(1000))));
        expect_close(&mut c, 1000);
        assert!(c.is_closed());
    }

    #[test]
    fn our_close_waits_for_peer_and_drops_late_responses() {
        let mut c = open();
        feed(&mut c, &call_frame(1, 0, &[]));
        assert!(matches!(c.poll_event(), Some(Event::Call { .. })));
        c.close(CloseCode::GoingAway, "shutdown");
        expect_close(&mut c, 1001);
        c.complete(1, &U64(1));
        assert!(c.outbound().is_empty(), "nothing may follow a Close frame");
        // Data after our close is discarded; the peer's Close finishes it.
        feed(&mut c, &call_frame(2, 0, &[]));
        let mut f = Vec::new();
        frame::write_masked_frame(&mut f, true, Opcode::Close, &[0x03, 0xE9], [1, 2, 3, 4]);
        feed(&mut c, &f);
        assert_eq!(c.poll_event(), Some(Event::Closed(CloseReason::ByUs(CloseCode::GoingAway))));
        assert!(c.outbound().is_empty(), "a close is not echoed twice");
    }

    #[test]
    fn draining_refuses_new_calls() {
        let mut c = open();
        c.drain();
        feed(&mut c, &call_frame(4, 0, &[]));
        assert!(c.poll_event().is_none());
        let fs = frames(&take_out(&mut c));
        assert!(matches!(decode_server(&fs[0].1), Ok(ServerMessage::CallError { id: 4, code: 6, .. })));
    }

    #[test]
    fn bad_upgrade_is_refused_with_http() {
        let mut c = ServerConnection::new(Limits::default());
        feed(&mut c, UPGRADE.replace("hl/1", "hl/9").as_bytes());
        assert!(matches!(c.poll_event(), Some(Event::HandshakeFailed(HandshakeError::UnsupportedProtocol(_)))));
        assert_eq!(c.poll_event(), Some(Event::Closed(CloseReason::Refused)));
        let out = String::from_utf8(take_out(&mut c)).unwrap();
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        assert!(out.contains("hl/1"));
        assert!(!c.wants_read());
    }

    #[test]
    fn backpressure_stops_reading() {
        let mut c = ServerConnection::new(Limits { max_outbound_bytes: 64, ..Limits::default() });
        feed(&mut c, UPGRADE.as_bytes());
        let Some(Event::Upgrade(req)) = c.poll_event() else { panic!() };
        c.accept(&req);
        take_out(&mut c);
        assert!(c.wants_read());
        for id in 0..10u8 {
            feed(&mut c, &call_frame(id, 0, &[]));
            assert!(matches!(c.poll_event(), Some(Event::Call { .. })));
            c.complete(id, &U64(id as u64));
        }
        assert!(!c.wants_read(), "outbound over the limit must pause reads");
        take_out(&mut c);
        assert!(c.wants_read());
    }

    // ---- Echo mode (plain WebSocket, the Autobahn echo server) ----

    const PLAIN_UPGRADE: &str = "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

    fn echo_open_with(limits: Limits) -> ServerConnection {
        let mut c = ServerConnection::with_mode(limits, Mode::Echo);
        feed(&mut c, PLAIN_UPGRADE.as_bytes());
        let Some(Event::Upgrade(req)) = c.poll_event() else { panic!("upgrade without a subprotocol") };
        c.accept(&req);
        let out = String::from_utf8(take_out(&mut c)).unwrap();
        assert!(out.starts_with("HTTP/1.1 101"), "{out}");
        assert!(!out.contains("Sec-WebSocket-Protocol"), "no subprotocol is selected: {out}");
        c
    }

    fn echo_open() -> ServerConnection {
        echo_open_with(Limits::default())
    }

    fn masked(fin: bool, op: Opcode, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        frame::write_masked_frame(&mut f, fin, op, payload, [0x37, 0xfa, 0x21, 0x3d]);
        f
    }

    /// Feeds `bytes` a read buffer at a time and echoes every message, as
    /// the echo driver does.
    fn echo_all(c: &mut ServerConnection, mut bytes: &[u8]) -> Vec<(bool, Vec<u8>)> {
        let mut got = Vec::new();
        loop {
            while let Some(ev) = c.poll_event() {
                match ev {
                    Event::Message { text, payload } => {
                        let p = payload.to_vec();
                        c.send_message(text, &p);
                        got.push((text, p));
                    }
                    Event::Closed(_) => return got,
                    other => panic!("unexpected {other:?}"),
                }
            }
            if bytes.is_empty() || !c.wants_read() {
                return got;
            }
            let dst = c.read_buf();
            assert!(!dst.is_empty(), "the read buffer has room after polling");
            let n = dst.len().min(bytes.len());
            dst[..n].copy_from_slice(&bytes[..n]);
            c.on_read(n);
            bytes = &bytes[n..];
        }
    }

    #[test]
    fn echo_mode_delivers_and_echoes_text_and_binary() {
        let mut c = echo_open();
        let mut wire = masked(true, Opcode::Text, "héllo".as_bytes());
        wire.extend(masked(true, Opcode::Binary, &[0, 0xff, 1]));
        wire.extend(masked(true, Opcode::Text, b""));
        let got = echo_all(&mut c, &wire);
        assert_eq!(got, vec![(true, "héllo".as_bytes().to_vec()), (false, vec![0, 0xff, 1]), (true, Vec::new())]);
        let fs = frames(&take_out(&mut c));
        assert_eq!(
            fs,
            vec![
                (Opcode::Text, "héllo".as_bytes().to_vec()),
                (Opcode::Binary, vec![0, 0xff, 1]),
                (Opcode::Text, Vec::new())
            ]
        );
        assert!(c.is_open());
    }

    #[test]
    fn echo_mode_requires_no_subprotocol_but_rpc_mode_still_does() {
        let mut c = ServerConnection::new(Limits::default());
        feed(&mut c, PLAIN_UPGRADE.as_bytes());
        assert!(matches!(c.poll_event(), Some(Event::HandshakeFailed(HandshakeError::UnsupportedProtocol(None)))));
        // Echo mode with an hl/1 offer: accepted, nothing selected.
        let mut c = ServerConnection::with_mode(Limits::default(), Mode::Echo);
        feed(&mut c, UPGRADE.as_bytes());
        let Some(Event::Upgrade(req)) = c.poll_event() else { panic!() };
        assert_eq!(req.protocol(), None);
    }

    #[test]
    fn utf8_split_inside_a_character_across_fragments_and_reads() {
        // "€" is E2 82 AC; "𝄞" is F0 9D 84 9E. Split every way across fragments.
        let text = "a€𝄞z".as_bytes();
        for cut1 in 0..=text.len() {
            for cut2 in cut1..=text.len() {
                let mut c = echo_open();
                let mut wire = masked(false, Opcode::Text, &text[..cut1]);
                wire.extend(masked(false, Opcode::Continuation, &text[cut1..cut2]));
                wire.extend(masked(true, Opcode::Continuation, &text[cut2..]));
                let mut got = Vec::new();
                // Byte at a time, so a frame's payload also arrives in pieces.
                for b in &wire {
                    got.extend(echo_all(&mut c, std::slice::from_ref(b)));
                }
                assert_eq!(got, vec![(true, text.to_vec())], "cuts {cut1} {cut2}");
                assert!(c.is_open());
            }
        }
    }

    #[test]
    fn invalid_utf8_in_a_non_final_fragment_closes_1007_at_once() {
        let mut c = echo_open();
        // A valid first fragment, then one with a code point above U+10FFFF.
        let mut wire = masked(false, Opcode::Text, "κόσμε".as_bytes());
        wire.extend(masked(false, Opcode::Continuation, &[0xf4, 0x90, 0x80, 0x80]));
        assert!(echo_all(&mut c, &wire).is_empty());
        // The final fragment has not arrived; the verdict is already out.
        expect_close(&mut c, 1007);
        assert!(!c.is_open());
    }

    #[test]
    fn invalid_utf8_is_caught_inside_a_frame_still_arriving() {
        let mut c = echo_open();
        let mut payload = "κόσμε".as_bytes().to_vec();
        payload.extend_from_slice(&[0xce, 0xbc, 0xed, 0xa0, 0x80]); // a surrogate (ED A0 80)
        payload.extend_from_slice(b"more text that never arrives");
        let wire = masked(true, Opcode::Text, &payload);
        // Deliver only up to the first byte that cannot continue valid UTF-8 (0xA0).
        let bad_at = wire.len() - b"more text that never arrives".len() - 2;
        assert!(echo_all(&mut c, &wire[..bad_at]).is_empty());
        assert!(c.is_open(), "ED alone may still start a valid character");
        assert!(echo_all(&mut c, &wire[bad_at..bad_at + 1]).is_empty());
        expect_close(&mut c, 1007);
    }

    #[test]
    fn text_ending_inside_a_character_closes_1007() {
        for (first, last) in [(&b"ab\xe2\x82"[..], &b""[..]), (&b"ab"[..], &b"\xf0\x9d\x84"[..])] {
            let mut c = echo_open();
            let mut wire = masked(false, Opcode::Text, first);
            wire.extend(masked(true, Opcode::Continuation, last));
            assert!(echo_all(&mut c, &wire).is_empty());
            expect_close(&mut c, 1007);
        }
        // Single-frame forms: truncated, overlong, lone continuation byte.
        for bad in [&b"\xce"[..], &b"\xc0\xaf"[..], &b"\x80"[..], &b"\xed\xbf\xbf"[..]] {
            let mut c = echo_open();
            assert!(echo_all(&mut c, &masked(true, Opcode::Text, bad)).is_empty());
            expect_close(&mut c, 1007);
        }
        // Invalid bytes in a *binary* message are just bytes.
        let mut c = echo_open();
        assert_eq!(echo_all(&mut c, &masked(true, Opcode::Binary, b"\xc0\xaf")), vec![(false, b"\xc0\xaf".to_vec())]);
    }

    #[test]
    fn echo_mode_control_frames_interleave_and_fragment_rules_hold() {
        let mut c = echo_open();
        let mut wire = masked(false, Opcode::Text, b"frag");
        wire.extend(masked(true, Opcode::Ping, b"p1"));
        wire.extend(masked(true, Opcode::Pong, b"unsolicited"));
        wire.extend(masked(false, Opcode::Continuation, b"men"));
        wire.extend(masked(true, Opcode::Ping, b"p2"));
        wire.extend(masked(true, Opcode::Continuation, b"ted"));
        assert_eq!(echo_all(&mut c, &wire), vec![(true, b"fragmented".to_vec())]);
        let fs = frames(&take_out(&mut c));
        assert_eq!(
            fs,
            vec![
                (Opcode::Pong, b"p1".to_vec()),
                (Opcode::Pong, b"p2".to_vec()),
                (Opcode::Text, b"fragmented".to_vec())
            ]
        );
        // A new data message inside a fragmented one.
        for op in [Opcode::Text, Opcode::Binary] {
            let mut c = echo_open();
            let mut wire = masked(false, Opcode::Binary, b"a");
            wire.extend(masked(true, op, b"b"));
            assert!(echo_all(&mut c, &wire).is_empty());
            expect_close(&mut c, 1002);
        }
        // A continuation with nothing to continue.
        let mut c = echo_open();
        assert!(echo_all(&mut c, &masked(true, Opcode::Continuation, b"x")).is_empty());
        expect_close(&mut c, 1002);
        // A fragmented ping.
        let mut c = echo_open();
        assert!(echo_all(&mut c, &masked(false, Opcode::Ping, b"x")).is_empty());
        expect_close(&mut c, 1002);
        // Reserved bits and opcodes: an earlier message is echoed first.
        for bad in [[0x91u8, 0x80], [0x83, 0x80], [0x8b, 0x80]] {
            let mut c = echo_open();
            let mut wire = masked(true, Opcode::Text, b"Hello");
            wire.extend_from_slice(&bad);
            wire.extend_from_slice(&[0; 4]);
            assert_eq!(echo_all(&mut c, &wire), vec![(true, b"Hello".to_vec())]);
            let fs = frames(&take_out(&mut c));
            assert_eq!(fs[0], (Opcode::Text, b"Hello".to_vec()));
            assert_eq!(fs[1].0, Opcode::Close);
            assert_eq!(u16::from_be_bytes([fs[1].1[0], fs[1].1[1]]), 1002);
        }
    }

    #[test]
    fn echo_mode_close_rules() {
        let close = |payload: &[u8]| {
            let mut c = echo_open();
            feed(&mut c, &masked(true, Opcode::Close, payload));
            let ev = match c.poll_event() {
                Some(Event::Closed(r)) => Some(r),
                other => panic!("{other:?}"),
            };
            let out = take_out(&mut c);
            let fs = frames(&out);
            assert_eq!(fs.len(), 1, "exactly one Close back");
            assert!(c.is_closed());
            (ev, u16::from_be_bytes([fs[0].1[0], fs[0].1[1]]))
        };
        // Empty: normal closure back.
        assert_eq!(close(b""), (Some(CloseReason::ByPeer(1005)), 1000));
        // Valid codes are echoed.
        for code in [1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999] {
            assert_eq!(close(&code.to_be_bytes()).1, code, "code {code}");
        }
        // Invalid codes: protocol error.
        for code in [0u16, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999, 5000, 65535] {
            assert_eq!(close(&code.to_be_bytes()).1, 1002, "code {code}");
        }
        // One-byte payload: protocol error. Reason not UTF-8: 1007.
        assert_eq!(close(&[0x03]).1, 1002);
        assert_eq!(
            close(&[0x03, 0xe8, 0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80]).1,
            1007
        );
        // A 123-byte reason is fine; 124 makes the frame too long (1002).
        let mut ok = 1000u16.to_be_bytes().to_vec();
        ok.extend_from_slice(&[b'*'; 123]);
        assert_eq!(close(&ok).1, 1000);
        let mut c = echo_open();
        let mut long = vec![0x88, 0x80 | 126, 0, 126, 0, 0, 0, 0];
        long.extend_from_slice(&[0; 126]);
        feed(&mut c, &long);
        assert!(c.poll_event().is_none());
        expect_close(&mut c, 1002);
        // After the peer's Close nothing else is answered (7.1.3: a ping after close).
        let mut c = echo_open();
        let mut wire = masked(true, Opcode::Close, &1000u16.to_be_bytes());
        wire.extend(masked(true, Opcode::Ping, b"late"));
        wire.extend(masked(true, Opcode::Text, b"late"));
        assert!(echo_all(&mut c, &wire).is_empty());
        let fs = frames(&take_out(&mut c));
        assert_eq!(fs.len(), 1);
        assert_eq!(fs[0].0, Opcode::Close);
    }

    #[test]
    fn echo_mode_message_limit_is_configurable() {
        let mut c = echo_open_with(Limits { max_message_size: 1000, ..Limits::default() });
        let got = echo_all(&mut c, &masked(true, Opcode::Binary, &[7; 1000]));
        assert_eq!(got.len(), 1);
        take_out(&mut c);
        let mut wire = masked(false, Opcode::Text, &[b'a'; 600]);
        wire.extend(masked(true, Opcode::Continuation, &[b'a'; 401]));
        assert!(echo_all(&mut c, &wire).is_empty());
        expect_close(&mut c, 1009);
        // A large limit: a 3 MiB text message in 64 KiB fragments arrives whole.
        let mut c = echo_open_with(Limits { max_message_size: 64 << 20, ..Limits::default() });
        let text: Vec<u8> = "ℌ𝔞𝔯𝔡𝔏𝔦𝔤𝔥𝔱 ".bytes().cycle().take(3 << 20).collect();
        let text = &text[..std::str::from_utf8(&text).map(|_| text.len()).unwrap_or_else(|e| e.valid_up_to())];
        let mut wire = Vec::new();
        let chunks: Vec<&[u8]> = text.chunks(64 << 10).collect();
        for (i, ch) in chunks.iter().enumerate() {
            let op = if i == 0 { Opcode::Text } else { Opcode::Continuation };
            wire.extend(masked(i + 1 == chunks.len(), op, ch));
        }
        let got = echo_all(&mut c, &wire);
        assert_eq!(got.len(), 1);
        assert!(got[0].0 && got[0].1 == text);
    }

    #[test]
    fn eof_is_reported() {
        let mut c = open();
        c.on_read(0);
        assert_eq!(c.poll_event(), Some(Event::Closed(CloseReason::Eof)));
        assert!(c.is_closed());
    }
}
