//! The HardLight envelope: the first bytes of every binary WebSocket message,
//! saying what the message is, followed by an rkyv archive.
//!
//! The envelope is a fixed little header rather than an archive of its own so
//! that routing a message (which call, which method) costs a few byte reads
//! and so that ports can parse it without rkyv. Byte layouts are in
//! `docs/PROTOCOL.md`; this module is their single implementation.

use crate::error::CallErrorCode;

/// Client to server: start a call. `[0x01, id, method_lo, method_hi, input...]`.
pub const KIND_CALL: u8 = 0x01;
/// Client to server: start a call that must finish within a time limit.
/// `[0x02, id, method_lo, method_hi, input..., timeout_ms u32 LE]`: a CALL
/// with the client's remaining time appended, so the input still starts at
/// offset 4 (aligned where the server reassembles). Only sent to a server
/// whose `LIMITS` sets [`FLAG_DEADLINE_AND_CANCEL`].
pub const KIND_CALL_DEADLINE: u8 = 0x02;
/// Client to server: the client gave up on a call. `[0x03, id]`. Only sent
/// to a server whose `LIMITS` sets [`FLAG_DEADLINE_AND_CANCEL`].
pub const KIND_CANCEL: u8 = 0x03;
/// Server to client: the call returned. `[0x10, id, output...]`.
pub const KIND_RESULT_OK: u8 = 0x10;
/// Server to client: the call returned the application's error type. `[0x11, id, error...]`.
pub const KIND_RESULT_ERR: u8 = 0x11;
/// Server to client: the call was refused or failed in the protocol layer.
/// `[0x12, id, code, detail utf-8...]`.
pub const KIND_CALL_ERROR: u8 = 0x12;
/// Server to client: a state change.
pub const KIND_STATE: u8 = 0x20;
/// Server to client: the connection's enabled methods changed.
pub const KIND_FEATURES: u8 = 0x21;
/// Server to client: the limits this server enforces on the connection,
/// sent first after the 101. `[0x22, max_message_size u32 LE, ...]`.
pub const KIND_LIMITS: u8 = 0x22;
/// Server to client: a pushed event. `[0x30, type u16 LE, archive...]`.
pub const KIND_EVENT: u8 = 0x30;
/// Server to client: this many events for this connection were dropped
/// (slow consumer) before the next one. `[0x31, count u32 LE]`.
pub const KIND_EVENTS_DROPPED: u8 = 0x31;

/// Length of the call envelope header before the input archive.
pub const CALL_HEADER_LEN: usize = 4;
/// Length of the timeout that ends a `CALL_DEADLINE` message.
pub const DEADLINE_TRAILER_LEN: usize = 4;
/// Length of a `CANCEL` message this version writes.
pub const CANCEL_LEN: usize = 2;
/// Length of the result envelope header before the output archive.
pub const RESULT_HEADER_LEN: usize = 2;
/// Length of the call-error envelope header before the detail text.
pub const CALL_ERROR_HEADER_LEN: usize = 3;

/// A message from client to server, borrowed from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMessage<'a> {
    /// Start call `id` of method `method` with the given input archive.
    Call {
        /// Call id, unique among this connection's calls in flight.
        id: u8,
        /// Index into the service's method table.
        method: u16,
        /// The input archive bytes.
        input: &'a [u8],
        /// The client's time limit for the call in milliseconds, counted from
        /// when the server reads it (`CALL_DEADLINE`); `None` for a plain
        /// `CALL`.
        timeout_ms: Option<u32>,
    },
    /// The client gave up on call `id`.
    Cancel {
        /// The call id.
        id: u8,
    },
}

/// A message from server to client, borrowed from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerMessage<'a> {
    /// Call `id` finished; `ok` says whether `payload` is the output (true)
    /// or the application's error (false).
    Result {
        /// Call id.
        id: u8,
        /// Output (true) or application error (false).
        ok: bool,
        /// Archive bytes.
        payload: &'a [u8],
    },
    /// Call `id` failed in the protocol layer.
    CallError {
        /// Call id.
        id: u8,
        /// Raw code; see [`CallErrorCode::from_u8`].
        code: u8,
        /// Human-readable detail, UTF-8 (lossy decoding is fine).
        detail: &'a [u8],
    },
    /// A message kind this build does not handle yet (state, features, events).
    Other {
        /// The kind byte.
        kind: u8,
        /// Everything after the kind byte.
        body: &'a [u8],
    },
}

/// A message that is not a well-formed envelope. The receiver closes the
/// connection with close code 4000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The message was empty.
    #[error("empty message")]
    Empty,
    /// The kind byte is not one this side accepts.
    #[error("unknown message kind {0:#04x}")]
    UnknownKind(u8),
    /// The message ended inside its header.
    #[error("message of kind {kind:#04x} truncated: {len} bytes, header needs {need}")]
    Truncated {
        /// The kind byte.
        kind: u8,
        /// Bytes present.
        len: usize,
        /// Bytes the header needs.
        need: usize,
    },
}

/// Parses a client-to-server message.
pub fn decode_client(msg: &[u8]) -> Result<ClientMessage<'_>, EnvelopeError> {
    let kind = *msg.first().ok_or(EnvelopeError::Empty)?;
    match kind {
        KIND_CALL => {
            if msg.len() < CALL_HEADER_LEN {
                return Err(EnvelopeError::Truncated { kind, len: msg.len(), need: CALL_HEADER_LEN });
            }
            Ok(ClientMessage::Call {
                id: msg[1],
                method: u16::from_le_bytes([msg[2], msg[3]]),
                input: &msg[CALL_HEADER_LEN..],
                timeout_ms: None,
            })
        }
        KIND_CALL_DEADLINE => {
            let need = CALL_HEADER_LEN + DEADLINE_TRAILER_LEN;
            if msg.len() < need {
                return Err(EnvelopeError::Truncated { kind, len: msg.len(), need });
            }
            let end = msg.len() - DEADLINE_TRAILER_LEN;
            let t = &msg[end..];
            Ok(ClientMessage::Call {
                id: msg[1],
                method: u16::from_le_bytes([msg[2], msg[3]]),
                input: &msg[CALL_HEADER_LEN..end],
                timeout_ms: Some(u32::from_le_bytes([t[0], t[1], t[2], t[3]])),
            })
        }
        KIND_CANCEL => {
            // Bytes after the id are reserved for later versions and ignored.
            if msg.len() < CANCEL_LEN {
                return Err(EnvelopeError::Truncated { kind, len: msg.len(), need: CANCEL_LEN });
            }
            Ok(ClientMessage::Cancel { id: msg[1] })
        }
        other => Err(EnvelopeError::UnknownKind(other)),
    }
}

/// Parses a server-to-client message.
pub fn decode_server(msg: &[u8]) -> Result<ServerMessage<'_>, EnvelopeError> {
    let kind = *msg.first().ok_or(EnvelopeError::Empty)?;
    match kind {
        KIND_RESULT_OK | KIND_RESULT_ERR => {
            if msg.len() < RESULT_HEADER_LEN {
                return Err(EnvelopeError::Truncated { kind, len: msg.len(), need: RESULT_HEADER_LEN });
            }
            Ok(ServerMessage::Result { id: msg[1], ok: kind == KIND_RESULT_OK, payload: &msg[RESULT_HEADER_LEN..] })
        }
        KIND_CALL_ERROR => {
            if msg.len() < CALL_ERROR_HEADER_LEN {
                return Err(EnvelopeError::Truncated { kind, len: msg.len(), need: CALL_ERROR_HEADER_LEN });
            }
            Ok(ServerMessage::CallError { id: msg[1], code: msg[2], detail: &msg[CALL_ERROR_HEADER_LEN..] })
        }
        KIND_STATE | KIND_FEATURES | KIND_LIMITS | KIND_EVENT | KIND_EVENTS_DROPPED => {
            Ok(ServerMessage::Other { kind, body: &msg[1..] })
        }
        other => Err(EnvelopeError::UnknownKind(other)),
    }
}

/// Writes a call envelope header; the input archive follows it.
pub fn call_header(id: u8, method: u16) -> [u8; CALL_HEADER_LEN] {
    let m = method.to_le_bytes();
    [KIND_CALL, id, m[0], m[1]]
}

/// Writes a result envelope header; the output (or application error) archive follows it.
pub fn result_header(id: u8, ok: bool) -> [u8; RESULT_HEADER_LEN] {
    [if ok { KIND_RESULT_OK } else { KIND_RESULT_ERR }, id]
}

/// Writes a call-error envelope header; the detail text follows it.
pub fn call_error_header(id: u8, code: CallErrorCode) -> [u8; CALL_ERROR_HEADER_LEN] {
    [KIND_CALL_ERROR, id, code as u8]
}

/// Encodes a whole call message (header and input) into `out`. For clients.
pub fn encode_call(out: &mut Vec<u8>, id: u8, method: u16, input: &[u8]) {
    out.extend_from_slice(&call_header(id, method));
    out.extend_from_slice(input);
}

/// Encodes a whole `CALL_DEADLINE` message: header, input, then the time
/// limit in milliseconds. For clients, to servers that accept it.
pub fn encode_call_deadline(out: &mut Vec<u8>, id: u8, method: u16, input: &[u8], timeout_ms: u32) {
    let m = method.to_le_bytes();
    out.extend_from_slice(&[KIND_CALL_DEADLINE, id, m[0], m[1]]);
    out.extend_from_slice(input);
    out.extend_from_slice(&timeout_ms.to_le_bytes());
}

/// A whole `CANCEL` message for call `id`.
pub fn encode_cancel(id: u8) -> [u8; CANCEL_LEN] {
    [KIND_CANCEL, id]
}

/// `LIMITS` flag: the server accepts `CALL_DEADLINE` (0x02) and `CANCEL`
/// (0x03). A client sends them only when this bit is set: a server that
/// predates them closes the connection with 4000 on a kind it does not know.
pub const FLAG_DEADLINE_AND_CANCEL: u32 = 1;

/// The limits a server announces in its `LIMITS` message, so that a client
/// can refuse a call the server would answer by closing the connection, and
/// the optional messages it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnouncedLimits {
    /// The largest WebSocket message (after reassembly) the server accepts;
    /// a larger one closes the connection with 1009. Saturates at `u32::MAX`.
    pub max_message_size: u32,
    /// Optional client-to-server messages the server accepts
    /// ([`FLAG_DEADLINE_AND_CANCEL`]); 0 from a server that predates flags.
    pub flags: u32,
}

/// Length of a `LIMITS` message this version writes.
pub const LIMITS_LEN: usize = 9;

impl AnnouncedLimits {
    /// The whole `LIMITS` message: kind, then each field little-endian.
    pub fn encode(&self) -> [u8; LIMITS_LEN] {
        let m = self.max_message_size.to_le_bytes();
        let f = self.flags.to_le_bytes();
        [KIND_LIMITS, m[0], m[1], m[2], m[3], f[0], f[1], f[2], f[3]]
    }

    /// Parses a `LIMITS` body (after the kind byte). A body of 4 bytes (a
    /// server that predates flags) has no flags; bytes after the fields this
    /// version knows are ignored: newer servers append fields there.
    pub fn parse(body: &[u8]) -> Option<Self> {
        let m = body.get(..4)?;
        let flags = body.get(4..8).map_or(0, |f| u32::from_le_bytes([f[0], f[1], f[2], f[3]]));
        Some(Self { max_message_size: u32::from_le_bytes([m[0], m[1], m[2], m[3]]), flags })
    }

    /// Whether the server accepts `CALL_DEADLINE` and `CANCEL`.
    pub fn accepts_deadline_and_cancel(&self) -> bool {
        self.flags & FLAG_DEADLINE_AND_CANCEL != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_round_trip() {
        let mut out = Vec::new();
        encode_call(&mut out, 200, 0x1234, b"abc");
        assert_eq!(out, [0x01, 200, 0x34, 0x12, b'a', b'b', b'c']);
        assert_eq!(
            decode_client(&out),
            Ok(ClientMessage::Call { id: 200, method: 0x1234, input: b"abc", timeout_ms: None })
        );
    }

    #[test]
    fn deadline_call_and_cancel_bytes() {
        let mut out = Vec::new();
        encode_call_deadline(&mut out, 200, 0x1234, b"abc", 1500);
        // The PROTOCOL.md example: input at offset 4, 1500 ms at the end.
        assert_eq!(out, [0x02, 200, 0x34, 0x12, b'a', b'b', b'c', 0xDC, 0x05, 0, 0]);
        assert_eq!(
            decode_client(&out),
            Ok(ClientMessage::Call { id: 200, method: 0x1234, input: b"abc", timeout_ms: Some(1500) })
        );
        assert_eq!(
            decode_client(&[0x02, 1, 0, 0, 0, 0, 0]),
            Err(EnvelopeError::Truncated { kind: 2, len: 7, need: 8 })
        );
        assert_eq!(encode_cancel(9), [0x03, 9]);
        assert_eq!(decode_client(&[0x03, 9]), Ok(ClientMessage::Cancel { id: 9 }));
        assert_eq!(decode_client(&[0x03, 9, 7]), Ok(ClientMessage::Cancel { id: 9 }), "reserved bytes ignored");
        assert_eq!(decode_client(&[0x03]), Err(EnvelopeError::Truncated { kind: 3, len: 1, need: 2 }));
    }

    #[test]
    fn malformed_client_messages() {
        assert_eq!(decode_client(&[]), Err(EnvelopeError::Empty));
        assert_eq!(decode_client(&[0x01, 1, 2]), Err(EnvelopeError::Truncated { kind: 1, len: 3, need: 4 }));
        assert_eq!(decode_client(&[0x10, 1, 2, 3]), Err(EnvelopeError::UnknownKind(0x10)));
    }

    #[test]
    fn server_messages() {
        let mut m = result_header(7, true).to_vec();
        m.extend_from_slice(b"xyz");
        assert_eq!(decode_server(&m), Ok(ServerMessage::Result { id: 7, ok: true, payload: b"xyz" }));
        let m = result_header(8, false);
        assert_eq!(decode_server(&m), Ok(ServerMessage::Result { id: 8, ok: false, payload: b"" }));
        let mut m = call_error_header(9, CallErrorCode::UnknownMethod).to_vec();
        m.extend_from_slice(b"no such method 7");
        assert_eq!(decode_server(&m), Ok(ServerMessage::CallError { id: 9, code: 1, detail: b"no such method 7" }));
        assert_eq!(decode_server(&[0x12, 1]), Err(EnvelopeError::Truncated { kind: 0x12, len: 2, need: 3 }));
        assert_eq!(decode_server(&[0x01, 1, 0, 0]), Err(EnvelopeError::UnknownKind(0x01)));
    }

    #[test]
    fn limits_message_bytes_and_forward_compatible_parse() {
        let l = AnnouncedLimits { max_message_size: 1 << 20, flags: FLAG_DEADLINE_AND_CANCEL };
        assert_eq!(l.encode(), [0x22, 0x00, 0x00, 0x10, 0x00, 0x01, 0, 0, 0]);
        let msg = l.encode();
        assert_eq!(decode_server(&msg), Ok(ServerMessage::Other { kind: KIND_LIMITS, body: &msg[1..] }));
        assert_eq!(AnnouncedLimits::parse(&msg[1..]), Some(l));
        assert!(l.accepts_deadline_and_cancel());
        // A server that predates flags sent 4 bytes: no optional messages.
        let old = AnnouncedLimits::parse(&[0, 0, 0x10, 0]).unwrap();
        assert_eq!(old, AnnouncedLimits { max_message_size: 1 << 20, flags: 0 });
        assert!(!old.accepts_deadline_and_cancel());
        // A newer server's extra fields are ignored; a truncated body is not a limit.
        assert_eq!(AnnouncedLimits::parse(&[0, 0, 0x10, 0, 1, 0, 0, 0, 9, 9]), Some(l));
        assert_eq!(AnnouncedLimits::parse(&[0, 0, 0x10]), None);
    }
}
