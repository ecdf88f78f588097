//! Untrusted input never panics the core, and always ends in a defined way.
//!
//! Random bytes go to the connection state machine (after a valid upgrade, in
//! both modes, and as a raw or mutated handshake) and to every parser a peer
//! can reach: envelopes, STATE and FEATURES bodies, and archives. Case counts
//! are bounded so this runs in a few seconds; `fuzz/` runs the same surfaces
//! for longer with coverage guidance.

use hardlight_core::connection::{CloseReason, Event, Mode, ServerConnection};
use hardlight_core::envelope;
use hardlight_core::error::{CallErrorCode, EncodeError};
use hardlight_core::feature_set::FeatureSet;
use hardlight_core::frame::{self, Opcode, Role};
use hardlight_core::limits::Limits;
use hardlight_core::rkyv::{self, Archive, Deserialize, Serialize};
use hardlight_core::state_diff::parse_state;
use hardlight_core::wire::{align_into, encode, AlignedBuf, Wire};
use hardlight_core::Reply;
use proptest::prelude::*;

const UPGRADE: &str = "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: hl/1\r\n\r\n";

/// Close codes this server sends on its own initiative.
const OUR_CODES: [u16; 6] = [1001, 1002, 1003, 1007, 1009, 4000];

struct U64(u64);
impl Reply for U64 {
    fn encode(&self, buf: &mut AlignedBuf) -> Result<bool, EncodeError> {
        self.0.encode_into(buf).map(|()| true)
    }
}

fn open(mode: Mode, limits: Limits) -> ServerConnection {
    let mut c = ServerConnection::with_mode(limits, mode);
    let up = UPGRADE.as_bytes();
    c.read_buf()[..up.len()].copy_from_slice(up);
    c.on_read(up.len());
    let Some(Event::Upgrade(req)) = c.poll_event() else { panic!("valid upgrade") };
    c.accept(&req);
    let n = c.outbound().len();
    c.advance_outbound(n);
    c
}

/// What a connection did with a byte stream.
#[derive(Debug, Default)]
struct Outcome {
    closed: Option<CloseReason>,
    out: Vec<u8>,
    events: usize,
}

/// Drives `c` as a socket would: feeds `bytes` in `chunk`-sized reads,
/// handles every event (calls answered or failed, messages echoed), and
/// collects everything written.
fn drive(c: &mut ServerConnection, mut bytes: &[u8], chunk: usize) -> Outcome {
    let mut o = Outcome::default();
    let mut echo = Vec::new();
    loop {
        while let Some(ev) = c.poll_event() {
            o.events += 1;
            match ev {
                Event::Call { id, method, input, .. } => {
                    assert_eq!(input.as_ptr() as usize % hardlight_core::wire::ARCHIVE_ALIGN, 0);
                    if method % 2 == 0 {
                        c.complete(id, &U64(method as u64));
                    } else {
                        c.fail(id, CallErrorCode::UnknownMethod, "no such method");
                    }
                }
                Event::Message { text, payload } => {
                    if text {
                        assert!(std::str::from_utf8(payload).is_ok(), "text messages are delivered valid");
                    }
                    echo.clear();
                    echo.extend_from_slice(payload);
                    c.send_message(text, &echo);
                }
                // Every call is answered as it arrives, so none is left
                // running for a CANCEL or a deadline to end.
                Event::Cancel { id } => panic!("cancel of call {id}, which was answered"),
                Event::Closed(reason) => {
                    assert!(o.closed.is_none(), "closed twice");
                    o.closed = Some(reason);
                }
                Event::Upgrade(_) | Event::HandshakeFailed(_) => panic!("handshake event after the upgrade"),
            }
        }
        // The socket takes everything written.
        o.out.extend_from_slice(c.outbound());
        let n = c.outbound().len();
        c.advance_outbound(n);
        if bytes.is_empty() || c.is_closed() || !c.wants_read() {
            return o;
        }
        let dst = c.read_buf();
        assert!(!dst.is_empty(), "a reading connection always has read space after polling");
        let n = dst.len().min(bytes.len()).min(chunk.max(1));
        dst[..n].copy_from_slice(&bytes[..n]);
        c.on_read(n);
        bytes = &bytes[n..];
    }
}

/// The server's output is whole, unmasked frames; at most one Close, last,
/// with a code a peer may legitimately receive; and our own closes use our codes.
fn check_output(o: &Outcome) {
    let mut rest = &o.out[..];
    let mut closes = 0;
    while !rest.is_empty() {
        let h = frame::parse_header(rest, Role::Client, usize::MAX)
            .expect("server frames follow the rules")
            .expect("server frames are written whole");
        let end = h.header_len + h.payload_len as usize;
        assert!(rest.len() >= end, "frame written whole");
        let payload = &rest[h.header_len..end];
        assert_eq!(closes, 0, "nothing follows a Close frame");
        match h.opcode {
            Opcode::Close => {
                closes += 1;
                assert!(payload.len() >= 2);
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                assert!(frame::is_valid_received_close_code(code), "close code {code}");
                assert!(std::str::from_utf8(&payload[2..]).is_ok());
            }
            Opcode::Text => assert!(std::str::from_utf8(payload).is_ok()),
            _ => {}
        }
        rest = &rest[end..];
    }
    if let Some(CloseReason::ByUs(code)) = &o.closed {
        assert!(OUR_CODES.contains(&code.as_u16()), "our close code {code:?}");
    }
}

/// Byte streams that are mostly frames: random frames with random header
/// bits (masked or not, any opcode), random lengths and payloads, and raw noise.
fn frame_stream() -> impl Strategy<Value = Vec<u8>> {
    let frame = (any::<u8>(), any::<bool>(), 0usize..300, any::<[u8; 4]>(), prop::collection::vec(any::<u8>(), 0..300))
        .prop_map(|(b0, masked, len, mask, mut payload)| {
            payload.resize(len, b'a');
            let mut f = vec![b0];
            let mbit = if masked { 0x80 } else { 0 };
            if len < 126 {
                f.push(mbit | len as u8);
            } else {
                f.push(mbit | 126);
                f.extend_from_slice(&(len as u16).to_be_bytes());
            }
            if masked {
                f.extend_from_slice(&mask);
                frame::apply_mask(&mut payload, mask);
            }
            f.extend_from_slice(&payload);
            f
        });
    // Well-formed frames of the kinds a peer sends, to get past the framing layer.
    let good = (0u8..6, any::<bool>(), prop::collection::vec(any::<u8>(), 0..200), any::<[u8; 4]>()).prop_map(
        |(kind, fin, payload, mask)| {
            let (op, fin, payload) = match kind {
                0 => (Opcode::Binary, fin, payload),
                1 => (Opcode::Text, fin, payload),
                2 => (Opcode::Continuation, fin, payload),
                3 => (Opcode::Ping, true, payload[..payload.len().min(125)].to_vec()),
                4 => (Opcode::Close, true, payload[..payload.len().min(125)].to_vec()),
                _ => {
                    let mut m = Vec::new();
                    envelope::encode_call(&mut m, payload.first().copied().unwrap_or(0), 2, &payload);
                    (Opcode::Binary, true, m)
                }
            };
            let mut f = Vec::new();
            frame::write_masked_frame(&mut f, fin, op, &payload, mask);
            f
        },
    );
    let noise = prop::collection::vec(any::<u8>(), 0..64);
    prop::collection::vec(prop_oneof![3 => good, 2 => frame, 1 => noise], 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_after_upgrade_never_panic(
        stream in frame_stream(),
        echo in any::<bool>(),
        chunk in 1usize..200,
        small_limit in any::<bool>(),
    ) {
        let limits = if small_limit { Limits { max_message_size: 100, ..Limits::default() } } else { Limits::default() };
        let mut c = open(if echo { Mode::Echo } else { Mode::Rpc }, limits);
        let o = drive(&mut c, &stream, chunk);
        check_output(&o);
        // Either the connection is still open and waiting for more bytes, or it
        // is closing/closed with a defined code.
        if c.is_open() {
            prop_assert!(o.closed.is_none());
            prop_assert!(c.poll_event().is_none(), "everything buffered was processed");
        } else if !c.is_closed() {
            // We sent Close and wait for the peer's (it may still be skipping
            // a long frame, so this need not finish the handshake).
            let mut close = Vec::new();
            frame::write_masked_frame(&mut close, true, Opcode::Close, &1000u16.to_be_bytes(), [1, 2, 3, 4]);
            let o2 = drive(&mut c, &close, 1000);
            prop_assert!(o2.out.is_empty(), "a close is not echoed twice");
        }
        // The end of the stream yields exactly one final event, unless one came already.
        let was_closed = c.is_closed();
        c.on_read(0);
        let mut finals = 0;
        while let Some(ev) = c.poll_event() {
            prop_assert!(matches!(ev, Event::Closed(_)));
            finals += 1;
        }
        prop_assert_eq!(finals, usize::from(!was_closed));
        prop_assert!(c.is_closed());
    }

    #[test]
    fn random_bytes_as_a_handshake_get_an_upgrade_or_an_http_refusal(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        echo in any::<bool>(),
    ) {
        handshake_outcome(&bytes, if echo { Mode::Echo } else { Mode::Rpc })?;
    }

    #[test]
    fn mutated_handshakes_get_an_upgrade_or_an_http_refusal(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        echo in any::<bool>(),
    ) {
        let mut bytes = UPGRADE.as_bytes().to_vec();
        for (at, b) in edits {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        if cut.index(4) == 0 {
            bytes.truncate(cut.index(bytes.len()));
        }
        handshake_outcome(&bytes, if echo { Mode::Echo } else { Mode::Rpc })?;
    }

    #[test]
    fn envelope_state_and_features_parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = envelope::decode_client(&bytes);
        let _ = envelope::decode_server(&bytes);
        if let Ok(fields) = parse_state(&bytes) {
            // Framing that parsed accounts for every byte.
            let used: usize = fields.iter().map(|(_, a)| 5 + a.len()).sum();
            prop_assert_eq!(used + 1, bytes.len());
        }
        if let Ok(set) = FeatureSet::decode(&bytes) {
            // Only canonical encodings decode: re-encoding gives the same bytes.
            let mut out = Vec::new();
            set.encode(&mut out);
            prop_assert_eq!(&out[1..], &bytes[..]);
        }
    }

    #[test]
    fn archives_from_the_network_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let mut buf = AlignedBuf::new();
        let _ = Sample::decode(align_into(&mut buf, &bytes));
        let _ = Node::decode(align_into(&mut buf, &bytes));
        // Corruptions of a valid archive reach deeper into validation.
        let mut valid = encode(&Sample::example()).unwrap().to_vec();
        for (at, b) in flips {
            let i = at.index(valid.len());
            valid[i] = b;
        }
        if let Ok(s) = Sample::decode(align_into(&mut buf, &valid)) {
            let _ = format!("{s:?}");
        }
    }
}

fn handshake_outcome(bytes: &[u8], mode: Mode) -> Result<(), TestCaseError> {
    let mut c = ServerConnection::with_mode(Limits::default(), mode);
    let n = bytes.len().min(c.read_buf().len());
    c.read_buf()[..n].copy_from_slice(&bytes[..n]);
    if n > 0 {
        c.on_read(n); // 0 would mean end of stream
    }
    let refused = match c.poll_event() {
        // Incomplete and within limits: the driver reads more.
        None => {
            prop_assert!(c.outbound().is_empty());
            None
        }
        Some(Event::Upgrade(req)) => {
            c.accept(&req);
            prop_assert!(c.outbound().starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
            None
        }
        Some(Event::HandshakeFailed(e)) => Some(e.status()),
        Some(other) => return Err(TestCaseError::fail(format!("unexpected {other:?}"))),
    };
    if let Some(status) = refused {
        prop_assert!([400, 405, 426, 431].contains(&status), "status {}", status);
        let head = format!("HTTP/1.1 {status} ");
        prop_assert!(c.outbound().starts_with(head.as_bytes()));
        prop_assert_eq!(c.poll_event(), Some(Event::Closed(CloseReason::Refused)));
        prop_assert!(!c.wants_read());
    }
    Ok(())
}

/// A representative method input: scalars, strings, vectors, an enum, an
/// option, nested structs.
#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
#[rkyv(crate = rkyv)]
struct Sample {
    id: u64,
    name: String,
    tags: Vec<String>,
    scores: Vec<u32>,
    kind: Kind,
    parent: Option<Inner>,
    raw: [u8; 8],
    ratio: f64,
}

#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
#[rkyv(crate = rkyv)]
enum Kind {
    A,
    B(u16),
    C { text: String },
}

#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
#[rkyv(crate = rkyv)]
struct Inner {
    flag: bool,
    items: Vec<(u8, String)>,
}

impl Sample {
    fn example() -> Self {
        Self {
            id: 7,
            name: "seven".into(),
            tags: vec!["a".into(), "longer tag".into()],
            scores: vec![1, 2, 3],
            kind: Kind::C { text: "κόσμε".into() },
            parent: Some(Inner { flag: true, items: vec![(1, "one".into()), (2, "two".into())] }),
            raw: [9; 8],
            ratio: 0.5,
        }
    }
}

/// A recursive type: each `Some(Box<Node>)` is one level of validation depth.
#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
#[rkyv(crate = rkyv)]
#[rkyv(serialize_bounds(
    __S: rkyv::ser::Writer + rkyv::ser::Allocator,
    __S::Error: rkyv::rancor::Source,
))]
#[rkyv(deserialize_bounds(__D::Error: rkyv::rancor::Source))]
#[rkyv(bytecheck(bounds(__C: rkyv::validation::ArchiveContext, __C::Error: rkyv::rancor::Source)))]
struct Node {
    value: u32,
    #[rkyv(omit_bounds)]
    next: Option<Box<Node>>,
}

fn chain(depth: usize) -> Node {
    let mut node = Node { value: 0, next: None };
    for i in 1..depth {
        node = Node { value: i as u32, next: Some(Box::new(node)) };
    }
    node
}

#[test]
fn archives_nested_deeper_than_the_limit_are_rejected() {
    let limit = Limits::default().max_validation_depth;
    let shallow = encode(&chain(limit / 2)).unwrap();
    assert_eq!(Node::decode(&shallow).unwrap(), chain(limit / 2));
    let deep = encode(&chain(limit * 2)).unwrap();
    let err = Node::decode(&deep).unwrap_err();
    assert!(!err.0.is_empty());
    // The depth limit is what refuses it: a larger limit accepts the same bytes.
    assert_eq!(Node::decode_with_depth(&deep, limit * 4).unwrap(), chain(limit * 2));
    // And a smaller one refuses the shallow archive.
    assert!(Node::decode_with_depth(&shallow, limit / 4).is_err());
}

#[test]
fn a_close_we_start_is_defined_for_every_rule() {
    // Spot checks that each rule maps to its documented code (the proptest
    // above only checks that codes come from the defined set).
    let cases: [(&[u8], Mode, u16); 5] = [
        (&[0x81, 0x80, 0, 0, 0, 0], Mode::Rpc, 1003),
        (&[0x82, 0x00], Mode::Rpc, 1002),
        (&[0x82, 0x81, 0, 0, 0, 0, 0x77], Mode::Rpc, 4000),
        (&[0x81, 0x81, 0, 0, 0, 0, 0xff], Mode::Echo, 1007),
        (&[0xf2, 0x80, 0, 0, 0, 0], Mode::Echo, 1002),
    ];
    for (bytes, mode, code) in cases {
        let mut c = open(mode, Limits::default());
        let o = drive(&mut c, bytes, 100);
        check_output(&o);
        let h = frame::parse_header(&o.out, Role::Client, usize::MAX).unwrap().unwrap();
        assert_eq!(h.opcode, Opcode::Close);
        let p = &o.out[h.header_len..];
        assert_eq!(u16::from_be_bytes([p[0], p[1]]), code, "{bytes:?} in {mode:?}");
        assert!(!c.is_open());
    }
}
