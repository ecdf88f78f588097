//! Types and helpers shared by the fuzz targets and the seed generator.

use hardlight_core::connection::{CloseReason, Event, Mode, ServerConnection};
use hardlight_core::error::{CallErrorCode, EncodeError};
use hardlight_core::frame::{self, Opcode, Role};
use hardlight_core::limits::Limits;
use hardlight_core::rkyv::{self, Archive, Deserialize, Serialize};
use hardlight_core::wire::{AlignedBuf, Wire, ARCHIVE_ALIGN};
use hardlight_core::Reply;

/// A valid upgrade request offering `hl/1` (accepted in both modes).
pub const UPGRADE: &str = "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: hl/1\r\n\r\n";

/// A representative method input: scalars, strings, vectors, an enum, an
/// option, nested structs.
#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
#[rkyv(crate = rkyv)]
pub struct Sample {
    pub id: u64,
    pub name: String,
    pub tags: Vec<String>,
    pub scores: Vec<u32>,
    pub kind: Kind,
    pub parent: Option<Inner>,
    pub raw: [u8; 8],
    pub ratio: f64,
}

/// An enum with unit, tuple and struct variants.
#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
#[rkyv(crate = rkyv)]
pub enum Kind {
    A,
    B(u16),
    C { text: String },
}

/// A nested struct.
#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
#[rkyv(crate = rkyv)]
pub struct Inner {
    pub flag: bool,
    pub items: Vec<(u8, String)>,
}

impl Sample {
    pub fn example() -> Self {
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
pub struct Node {
    pub value: u32,
    #[rkyv(omit_bounds)]
    pub next: Option<Box<Node>>,
}

/// A chain of `depth` nodes.
pub fn chain(depth: usize) -> Node {
    let mut node = Node { value: 0, next: None };
    for i in 1..depth {
        node = Node { value: i as u32, next: Some(Box::new(node)) };
    }
    node
}

struct U64(u64);
impl Reply for U64 {
    fn encode(&self, buf: &mut AlignedBuf) -> Result<bool, EncodeError> {
        self.0.encode_into(buf).map(|()| true)
    }
}

/// A connection in `mode` that has accepted [`UPGRADE`], its 101 taken.
pub fn open(mode: Mode, limits: Limits) -> ServerConnection {
    let mut c = ServerConnection::with_mode(limits, mode);
    let up = UPGRADE.as_bytes();
    c.read_buf()[..up.len()].copy_from_slice(up);
    c.on_read(up.len());
    let Some(Event::Upgrade(req)) = c.poll_event() else { panic!("valid upgrade refused") };
    c.accept(&req);
    let n = c.outbound().len();
    c.advance_outbound(n);
    c
}

/// Feeds `bytes` in reads of at most `chunk` bytes, answering every call
/// and echoing every message, and returns everything written and the close.
pub fn drive(c: &mut ServerConnection, mut bytes: &[u8], chunk: usize) -> (Vec<u8>, Option<CloseReason>) {
    let mut out = Vec::new();
    let mut closed = None;
    let mut echo = Vec::new();
    loop {
        while let Some(ev) = c.poll_event() {
            match ev {
                Event::Call { id, method, input, .. } => {
                    assert_eq!(input.as_ptr() as usize % ARCHIVE_ALIGN, 0, "call input aligned");
                    if method % 2 == 0 {
                        c.complete(id, &U64(method as u64));
                    } else {
                        c.fail(id, CallErrorCode::UnknownMethod, "no such method");
                    }
                }
                Event::Message { text, payload } => {
                    assert!(!text || std::str::from_utf8(payload).is_ok(), "text delivered valid");
                    echo.clear();
                    echo.extend_from_slice(payload);
                    c.send_message(text, &echo);
                }
                // Every call is answered as it arrives, so none is left
                // running for a CANCEL or a deadline to end.
                Event::Cancel { id } => panic!("cancel of call {id}, which was answered"),
                Event::Closed(reason) => {
                    assert!(closed.is_none(), "closed twice");
                    closed = Some(reason);
                }
                Event::Upgrade(_) | Event::HandshakeFailed(_) => panic!("handshake event after the upgrade"),
            }
        }
        out.extend_from_slice(c.outbound());
        let n = c.outbound().len();
        c.advance_outbound(n);
        if bytes.is_empty() || c.is_closed() || !c.wants_read() {
            return (out, closed);
        }
        let dst = c.read_buf();
        assert!(!dst.is_empty(), "no read space after polling");
        let n = dst.len().min(bytes.len()).min(chunk.max(1));
        dst[..n].copy_from_slice(&bytes[..n]);
        c.on_read(n);
        bytes = &bytes[n..];
    }
}

/// Server output is whole unmasked frames; at most one Close, last, with a
/// code a peer may receive and a UTF-8 reason; text is UTF-8.
pub fn check_output(mut out: &[u8]) {
    let mut closes = 0;
    while !out.is_empty() {
        let h = frame::parse_header(out, Role::Client, usize::MAX)
            .expect("server frame breaks the rules")
            .expect("server frame written in part");
        let end = h.header_len + h.payload_len as usize;
        assert!(out.len() >= end, "server frame written in part");
        let payload = &out[h.header_len..end];
        assert_eq!(closes, 0, "data after a Close frame");
        match h.opcode {
            Opcode::Close => {
                closes += 1;
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                assert!(frame::is_valid_received_close_code(code), "sent close code {code}");
                assert!(std::str::from_utf8(&payload[2..]).is_ok());
            }
            Opcode::Text => assert!(std::str::from_utf8(payload).is_ok(), "sent invalid text"),
            _ => {}
        }
        out = &out[end..];
    }
}
