//! The client side of a connection at byte level, with no I/O: the upgrade
//! request and the check of the server's answer, WebSocket framing (masked
//! frames out, fragmented messages reassembled, ping, pong and the closing
//! handshake), around a [`ClientSession`] that owns the message-level rules.
//!
//! The driver's duties, in a loop:
//! 1. write [`ClientConnection::outbound`] to the socket and report what
//!    was written with [`ClientConnection::advance_outbound`];
//! 2. hand bytes read from the socket to [`ClientConnection::on_read`]
//!    (an empty slice means the socket ended);
//! 3. start calls through [`ClientConnection::session_mut`] and call
//!    [`ClientConnection::flush_calls`] to frame what the session queued;
//! 4. take [`ClientConnection::poll_event`] until `None`.
//!
//! The core has no random source: the driver passes the `Sec-WebSocket-Key`
//! bytes and a seed for the frame masks (RFC 6455 wants both unpredictable,
//! which matters to intermediaries in browsers; take them from the OS).

use std::collections::VecDeque;

use crate::frame::{self, Opcode, Role};
use crate::handshake::{self, SUBPROTOCOL};
use crate::session::{ClientSession, SessionEvent};

/// Largest upgrade response the client reads before giving up.
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// What the client asks for in the upgrade request.
#[derive(Debug, Clone)]
pub struct ClientRequest {
    /// The `Host` header (`host:port`).
    pub host: String,
    /// The request path (`/` unless the server is mounted elsewhere).
    pub path: String,
    /// Extra headers (cookies, tokens).
    pub headers: Vec<(String, String)>,
    /// The subprotocol offered (`hl/1`).
    pub subprotocol: String,
    /// Largest message accepted from the server.
    pub max_message_size: usize,
}

impl ClientRequest {
    /// A request for `/` on `host` with the current subprotocol and a
    /// 16 MiB message limit.
    pub fn new(host: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            path: "/".into(),
            headers: Vec::new(),
            subprotocol: SUBPROTOCOL.into(),
            max_message_size: 16 << 20,
        }
    }
}

/// What the client connection reports to its driver.
#[derive(Debug)]
pub enum ClientEvent {
    /// The server accepted the upgrade; calls may start.
    Connected,
    /// The server answered the upgrade with an HTTP error.
    Refused {
        /// The HTTP status.
        status: u16,
        /// The response body: the server's explanation.
        body: String,
    },
    /// A report of the session (replies, state, features, events, close).
    Session(SessionEvent),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshake,
    Open,
    /// We sent Close and wait for the server's.
    Closing,
    Closed,
}

/// The client side of one connection at byte level (see the module docs).
pub struct ClientConnection {
    phase: Phase,
    accept: String,
    offered: String,
    max_message: usize,
    inbound: Vec<u8>,
    message: Vec<u8>,
    in_message: bool,
    outbound: Vec<u8>,
    mask_state: u64,
    session: ClientSession,
    events: VecDeque<ClientEvent>,
}

impl ClientConnection {
    /// Starts a connection: the upgrade request is in
    /// [`Self::outbound`] at once. `key` is the 16 random bytes of the
    /// `Sec-WebSocket-Key`; `mask_seed` seeds the frame masks.
    pub fn new(request: &ClientRequest, key: [u8; 16], mask_seed: u64, session: ClientSession) -> Self {
        let key = base64(&key);
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(format!("GET {} HTTP/1.1\r\nHost: {}\r\n", request.path, request.host).as_bytes());
        out.extend_from_slice(b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n");
        out.extend_from_slice(format!("Sec-WebSocket-Key: {key}\r\n").as_bytes());
        out.extend_from_slice(format!("Sec-WebSocket-Protocol: {}\r\n", request.subprotocol).as_bytes());
        for (k, v) in &request.headers {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        Self {
            phase: Phase::Handshake,
            accept: tungstenite::handshake::derive_accept_key(key.as_bytes()),
            offered: request.subprotocol.clone(),
            max_message: request.max_message_size,
            inbound: Vec::new(),
            message: Vec::new(),
            in_message: false,
            outbound: out,
            mask_state: mask_seed | 1,
            session,
            events: VecDeque::new(),
        }
    }

    /// Bytes to write to the socket.
    pub fn outbound(&self) -> &[u8] {
        &self.outbound
    }

    /// Reports that the first `n` bytes of [`Self::outbound`] were written.
    pub fn advance_outbound(&mut self, n: usize) {
        self.outbound.drain(..n.min(self.outbound.len()));
    }

    /// The message-level session, to start and abandon calls and read the
    /// state mirror. Call [`Self::flush_calls`] after starting calls.
    pub fn session_mut(&mut self) -> &mut ClientSession {
        &mut self.session
    }

    /// The message-level session.
    pub fn session(&self) -> &ClientSession {
        &self.session
    }

    /// Whether the upgrade succeeded and the connection has not closed.
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Whether the connection has ended (Close exchanged, refused, or lost).
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Frames every message the session queued (calls) into
    /// [`Self::outbound`]. Before the upgrade completes they stay queued.
    pub fn flush_calls(&mut self) {
        if self.phase != Phase::Open {
            return;
        }
        while let Some(msg) = self.session.poll_transmit() {
            let mask = self.next_mask();
            frame::write_masked_frame(&mut self.outbound, true, Opcode::Binary, &msg, mask);
        }
    }

    /// Starts the closing handshake with `code`. Open calls fail once the
    /// server's Close arrives (or the socket ends).
    pub fn close(&mut self, code: u16, reason: &str) {
        if self.phase == Phase::Open {
            self.write_close(code, reason);
            self.phase = Phase::Closing;
        }
    }

    /// The next thing the driver should act on.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        self.session.poll_event().map(ClientEvent::Session)
    }

    /// Feeds bytes read from the socket; an empty slice is the end of the
    /// stream.
    pub fn on_read(&mut self, bytes: &[u8]) {
        if self.phase == Phase::Closed {
            return;
        }
        if bytes.is_empty() {
            self.end("connection closed by the server");
            return;
        }
        self.inbound.extend_from_slice(bytes);
        if self.phase == Phase::Handshake {
            self.read_response();
        }
        while matches!(self.phase, Phase::Open | Phase::Closing) {
            if !self.read_frame() {
                break;
            }
        }
        self.flush_calls();
    }

    fn read_response(&mut self) {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        let head_len = match resp.parse(&self.inbound) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if self.inbound.len() <= MAX_RESPONSE_HEAD => return,
            Ok(httparse::Status::Partial) => return self.fail_handshake(0, "upgrade response too large"),
            Err(e) => return self.fail_handshake(0, &format!("malformed upgrade response: {e}")),
        };
        let status = resp.code.unwrap_or(0);
        let header = |name: &str| {
            resp.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .map(str::trim)
        };
        if status != 101 {
            let len = header("content-length").and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
            if self.inbound.len() < head_len + len && self.inbound.len() <= MAX_RESPONSE_HEAD {
                return; // the body explains the refusal: wait for it
            }
            let end = (head_len + len).min(self.inbound.len());
            let body = String::from_utf8_lossy(&self.inbound[head_len..end]).trim().to_string();
            return self.fail_handshake(status, &body);
        }
        let accept_ok = header("sec-websocket-accept") == Some(self.accept.as_str());
        let upgrade_ok = header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        let selected = header("sec-websocket-protocol");
        if !accept_ok || !upgrade_ok {
            return self.fail_handshake(101, "server's 101 is not a valid WebSocket accept");
        }
        if selected != Some(self.offered.as_str()) {
            if let Err(e) = handshake::check_selected_protocol(selected) {
                return self.fail_handshake(101, &e.to_string());
            }
        }
        self.inbound.drain(..head_len);
        self.phase = Phase::Open;
        self.events.push_back(ClientEvent::Connected);
    }

    fn fail_handshake(&mut self, status: u16, body: &str) {
        self.events.push_back(ClientEvent::Refused { status, body: body.to_string() });
        self.phase = Phase::Closed;
        self.session.handle_close(format!("upgrade refused: {status} {body}"));
    }

    /// Parses one frame from `inbound`; returns false when more bytes are
    /// needed or the connection ended.
    fn read_frame(&mut self) -> bool {
        let header = match frame::parse_header(&self.inbound, Role::Client, self.max_message) {
            Ok(Some(h)) => h,
            Ok(None) => return false,
            Err(frame::FrameError::TooBig(n)) => {
                self.protocol_close(1009, &format!("message of {n} bytes over the client's limit"));
                return false;
            }
            Err(e) => {
                self.protocol_close(1002, &e.to_string());
                return false;
            }
        };
        let total = header.header_len + header.payload_len as usize;
        if self.inbound.len() < total {
            return false;
        }
        let payload = self.inbound[header.header_len..total].to_vec();
        self.inbound.drain(..total);
        match header.opcode {
            Opcode::Binary | Opcode::Continuation => {
                let continuation = header.opcode == Opcode::Continuation;
                if continuation != self.in_message {
                    self.protocol_close(1002, "unexpected continuation or missing one");
                    return false;
                }
                if self.message.len() + payload.len() > self.max_message {
                    self.protocol_close(1009, "message over the client's limit");
                    return false;
                }
                self.message.extend_from_slice(&payload);
                self.in_message = !header.fin;
                if header.fin && self.phase == Phase::Open {
                    let msg = std::mem::take(&mut self.message);
                    // A malformed message is the server's bug; the session
                    // ignores it and the connection stays usable.
                    let _ = self.session.handle_message(&msg);
                }
            }
            Opcode::Text => {
                self.protocol_close(1003, "HardLight is binary only");
                return false;
            }
            Opcode::Ping => {
                if self.phase == Phase::Open {
                    let mask = self.next_mask();
                    frame::write_masked_frame(&mut self.outbound, true, Opcode::Pong, &payload, mask);
                }
            }
            Opcode::Pong => {}
            Opcode::Close => {
                let code = (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                let reason = payload.get(2..).map(String::from_utf8_lossy).unwrap_or_default();
                if self.phase == Phase::Open {
                    self.write_close(code.unwrap_or(1000), "");
                }
                let why = match code {
                    Some(c) => format!("server closed the connection: {c} {reason}"),
                    None => "server closed the connection".into(),
                };
                self.end(&why);
                return false;
            }
        }
        true
    }

    /// Closes because the server broke the protocol.
    fn protocol_close(&mut self, code: u16, why: &str) {
        if self.phase == Phase::Open {
            self.write_close(code, why);
        }
        self.end(&format!("protocol error from the server ({code}): {why}"));
    }

    fn end(&mut self, reason: &str) {
        self.phase = Phase::Closed;
        self.session.handle_close(reason);
    }

    fn write_close(&mut self, code: u16, reason: &str) {
        let (payload, len) = frame::close_payload(code, reason);
        let mask = self.next_mask();
        frame::write_masked_frame(&mut self.outbound, true, Opcode::Close, &payload[..len], mask);
    }

    /// xorshift64: cheap, and unpredictable enough given an unpredictable
    /// seed (the masks only defeat cache poisoning by intermediaries).
    fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.mask_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.mask_state = x;
        (x as u32).to_le_bytes()
    }
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection() -> ClientConnection {
        ClientConnection::new(&ClientRequest::new("example.test:80"), [7; 16], 42, ClientSession::new())
    }

    #[test]
    fn base64_matches_the_rfc_examples() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
    }

    #[test]
    fn the_request_offers_the_subprotocol_and_a_refusal_keeps_its_body() {
        let mut c = connection();
        let req = String::from_utf8(c.outbound().to_vec()).unwrap();
        assert!(req.starts_with("GET / HTTP/1.1\r\nHost: example.test:80\r\n"), "{req}");
        assert!(req.contains("Sec-WebSocket-Protocol: hl/1\r\n") && req.ends_with("\r\n\r\n"));
        let call = c.session_mut().start_call(0, b"x").unwrap();
        c.on_read(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 20\r\n\r\nspeaks hl/1 or hl/9");
        assert!(c.poll_event().is_none(), "the body is not complete yet");
        c.on_read(b"!");
        match c.poll_event() {
            Some(ClientEvent::Refused { status: 400, body }) => assert_eq!(body, "speaks hl/1 or hl/9!"),
            other => panic!("{other:?}"),
        }
        assert!(c.is_closed());
        match c.poll_event() {
            Some(ClientEvent::Session(SessionEvent::Reply { call: c2, result: Err(_) })) => assert_eq!(c2, call),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_101_with_a_wrong_accept_key_is_refused() {
        let mut c = connection();
        c.on_read(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: nope\r\nSec-WebSocket-Protocol: hl/1\r\n\r\n");
        assert!(matches!(c.poll_event(), Some(ClientEvent::Refused { status: 101, .. })));
    }

    #[test]
    fn frames_after_the_101_reach_the_session_and_pings_are_answered() {
        let mut c = connection();
        let accept = c.accept.clone();
        let mut bytes = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: hl/1\r\n\r\n"
        )
        .into_bytes();
        let mut features = Vec::new();
        crate::FeatureSet::all(2).encode(&mut features);
        // The FEATURES message in two fragments, a ping between them.
        frame::write_header(&mut bytes, false, Opcode::Binary, 2, None);
        bytes.extend_from_slice(&features[..2]);
        frame::write_frame(&mut bytes, Opcode::Ping, b"hi");
        frame::write_header(&mut bytes, true, Opcode::Continuation, features.len() - 2, None);
        bytes.extend_from_slice(&features[2..]);
        c.advance_outbound(c.outbound().len());
        // Byte by byte: framing must not depend on read boundaries.
        for b in &bytes {
            c.on_read(std::slice::from_ref(b));
        }
        assert!(matches!(c.poll_event(), Some(ClientEvent::Connected)));
        assert!(matches!(c.poll_event(), Some(ClientEvent::Session(SessionEvent::FeaturesChanged))));
        assert!(c.session().is_ready());
        let pong = frame::parse_header(c.outbound(), Role::Server, 125).unwrap().unwrap();
        assert_eq!((pong.opcode, pong.payload_len), (Opcode::Pong, 2));
    }

    #[test]
    fn a_text_frame_closes_with_1003_and_fails_open_calls() {
        let mut c = connection();
        let accept = c.accept.clone();
        c.on_read(format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: hl/1\r\n\r\n").as_bytes());
        let _ = c.poll_event();
        c.session_mut().start_call(1, b"").unwrap();
        c.flush_calls();
        c.advance_outbound(c.outbound().len());
        let mut text = Vec::new();
        frame::write_frame(&mut text, Opcode::Text, b"hello");
        c.on_read(&text);
        assert!(c.is_closed());
        let close = frame::parse_header(c.outbound(), Role::Server, 125).unwrap().unwrap();
        assert_eq!(close.opcode, Opcode::Close);
        assert!(matches!(
            c.poll_event(),
            Some(ClientEvent::Session(SessionEvent::Reply { result: Err(crate::CallError::Disconnected(_)), .. }))
        ));
    }
}
