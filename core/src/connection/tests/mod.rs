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
    assert_eq!(frames(&out[end..]), vec![(Opcode::Binary, vec![0x22, 0x00, 0x00, 0x10, 0x00, 0x01, 0, 0, 0])]);
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
        Some(Event::Call { id, method, input, .. }) => {
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

#[test]
fn eof_is_reported() {
    let mut c = open();
    c.on_read(0);
    assert_eq!(c.poll_event(), Some(Event::Closed(CloseReason::Eof)));
    assert!(c.is_closed());
}

mod echo;
mod time;
