//! Echo mode (plain WebSocket, the Autobahn echo server).
use super::*;

// ---- Echo mode (plain WebSocket, the Autobahn echo server) ----

const PLAIN_UPGRADE: &str = "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

pub(super) fn echo_open_with(limits: Limits) -> ServerConnection {
    let mut c = ServerConnection::with_mode(limits, Mode::Echo);
    feed(&mut c, PLAIN_UPGRADE.as_bytes());
    let Some(Event::Upgrade(req)) = c.poll_event() else { panic!("upgrade without a subprotocol") };
    c.accept(&req);
    let out = String::from_utf8(take_out(&mut c)).unwrap();
    assert!(out.starts_with("HTTP/1.1 101"), "{out}");
    assert!(!out.contains("Sec-WebSocket-Protocol"), "no subprotocol is selected: {out}");
    c
}

pub(super) fn echo_open() -> ServerConnection {
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
        vec![(Opcode::Pong, b"p1".to_vec()), (Opcode::Pong, b"p2".to_vec()), (Opcode::Text, b"fragmented".to_vec())]
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
