//! Micro-benchmarks of HardLight's per-message CPU paths, each next to a
//! baseline measured in the same run: a floor (the same bytes moved with no
//! protocol work, or rkyv without validation) or the peer path that
//! `baseline-tokio` takes through tungstenite for the same message.
//!
//! Run: `cargo bench -p hardlight-bench --bench hot_paths` (criterion's
//! options follow `--`). `HL_BENCH_CPU=N` pins the benchmark thread to CPU N.
//! See `bench/README.md` for what each group measures.

use std::future::Future;
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use hardlight::protocol::calls::CallTable;
use hardlight::protocol::connection::{Event, ServerConnection};
use hardlight::protocol::envelope::{self, ClientMessage};
use hardlight::protocol::frame::{self, Opcode, Role};
use hardlight::protocol::limits::{Limits, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_VALIDATION_DEPTH};
use hardlight::protocol::service::Reply;
use hardlight::protocol::wire::{self, AlignedBuf, Wire, ARCHIVE_ALIGN};
use hardlight::rkyv::{self, rancor};
use hardlight::{FeatureSet, Service};
use hardlight_bench::{
    BenchAddInput, BenchEcho64Input, BenchEchoInput, BenchHandler, BenchMethod, BenchReply, BenchService, Payload64,
    ECHO_SIZE,
};
use tungstenite::protocol::{Role as WsRole, WebSocket, WebSocketConfig};
use tungstenite::Message;

const DEPTH: usize = DEFAULT_MAX_VALIDATION_DEPTH;
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const UPGRADE: &str = "GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: hl/1\r\n\r\n";

fn payload() -> Payload64 {
    let mut bytes = [0u8; ECHO_SIZE];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31) ^ 0xa5;
    }
    Payload64 { bytes }
}

/// One call of each kind the benchmarks use: name, method, input archive.
fn calls() -> Vec<(&'static str, BenchMethod, AlignedBuf)> {
    vec![
        ("echo64", BenchMethod::Echo64, wire::encode(&BenchEcho64Input { payload: payload() }).unwrap()),
        ("add", BenchMethod::Add, wire::encode(&BenchAddInput { a: 40, b: 2 }).unwrap()),
        ("echo_vec64", BenchMethod::Echo, wire::encode(&BenchEchoInput { data: payload().bytes.to_vec() }).unwrap()),
    ]
}

/// The call message (envelope and input) for call `id`.
fn call_message(id: u8, method: BenchMethod, input: &[u8]) -> Vec<u8> {
    let mut msg = Vec::new();
    envelope::encode_call(&mut msg, id, method.id(), input);
    msg
}

/// The masked client frame carrying `msg`.
fn masked_frame(msg: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    frame::write_masked_frame(&mut f, true, Opcode::Binary, msg, MASK);
    f
}

// ---------------------------------------------------------------------------
// Envelope

fn envelope_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("envelope");
    let input = wire::encode(&BenchEcho64Input { payload: payload() }).unwrap();
    let msg = call_message(7, BenchMethod::Echo64, &input);
    let mut out = Vec::with_capacity(256);

    g.bench_function("encode_call/echo64", |b| {
        b.iter(|| {
            out.clear();
            envelope::encode_call(&mut out, black_box(7), black_box(BenchMethod::Echo64.id()), black_box(&input));
            black_box(&out);
        })
    });
    // Floor: the same bytes appended with no header to build.
    g.bench_function("baseline_copy_message/echo64", |b| {
        b.iter(|| {
            out.clear();
            out.extend_from_slice(black_box(&msg));
            black_box(&out);
        })
    });
    g.bench_function("decode_client/echo64", |b| {
        b.iter(|| match envelope::decode_client(black_box(&msg)) {
            Ok(ClientMessage::Call { id, method, input, .. }) => black_box((id, method, input)),
            other => panic!("{other:?}"),
        })
    });
    let mut result = envelope::result_header(7, true).to_vec();
    result.extend_from_slice(&input);
    g.bench_function("decode_server/result_echo64", |b| {
        b.iter(|| black_box(envelope::decode_server(black_box(&result))).unwrap())
    });
    g.finish();
}

// ---------------------------------------------------------------------------
// Framing

/// Parses a masked frame's header and unmasks its payload into `buf` after
/// `pad` bytes, as `ServerConnection` does with a whole frame in its buffer.
fn parse_unmask_into(buf: &mut AlignedBuf, pad: usize, f: &[u8]) -> usize {
    let h = frame::parse_header(f, Role::Server, DEFAULT_MAX_MESSAGE_SIZE).unwrap().unwrap();
    let payload = &f[h.header_len..h.header_len + h.payload_len as usize];
    buf.resize(pad, 0);
    buf.extend_from_slice(payload);
    frame::apply_mask_at(&mut buf[pad..], h.mask.unwrap(), 0);
    buf.len()
}

/// A reference unmask that XORs 8 bytes at a time, to compare core's
/// 4-byte loop against.
fn unmask_u64(buf: &mut [u8], mask: [u8; 4]) {
    let m = u32::from_ne_bytes(mask) as u64;
    let word = m | (m << 32);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes(c.try_into().unwrap()) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// An in-memory socket for tungstenite: reads `input` from `pos`, then
/// reports WouldBlock; writes are counted and dropped.
struct MemStream {
    input: Vec<u8>,
    pos: usize,
    written: usize,
}

impl Read for MemStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = &self.input[self.pos..];
        if rest.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for MemStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A server-side tungstenite connection over a [`MemStream`] holding `input`.
fn tungstenite_server(input: Vec<u8>) -> WebSocket<MemStream> {
    WebSocket::from_raw_socket(MemStream { input, pos: 0, written: 0 }, WsRole::Server, None)
}

/// [`tungstenite_server`] with a 4 KiB read buffer instead of the default
/// 128 KiB: tungstenite zero-fills the buffer's free capacity before every
/// read from the socket, so its default costs about a 128 KiB memset per read.
fn tungstenite_server_small_buffer(input: Vec<u8>) -> WebSocket<MemStream> {
    let config = WebSocketConfig::default().read_buffer_size(4096);
    WebSocket::from_raw_socket(MemStream { input, pos: 0, written: 0 }, WsRole::Server, Some(config))
}

/// Reads the one message in the stream again.
fn tungstenite_read_again(ws: &mut WebSocket<MemStream>) -> Message {
    ws.get_mut().pos = 0;
    ws.read().unwrap()
}

fn frame_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame");
    let mut buf = AlignedBuf::with_capacity(DEFAULT_MAX_MESSAGE_SIZE + 64);
    let pad = ARCHIVE_ALIGN - envelope::CALL_HEADER_LEN;
    let input = wire::encode(&BenchEcho64Input { payload: payload() }).unwrap();
    let call = call_message(7, BenchMethod::Echo64, &input);
    let sizes: [(&str, Vec<u8>); 3] =
        [("call_echo64_68B", call.clone()), ("1KiB", vec![0x5a; 1024]), ("64KiB", vec![0x5a; 64 * 1024])];
    for (name, msg) in &sizes {
        let f = masked_frame(msg);
        g.throughput(Throughput::Bytes(msg.len() as u64));
        g.bench_with_input(BenchmarkId::new("parse_unmask_aligned", name), &f, |b, f| {
            b.iter(|| black_box(parse_unmask_into(&mut buf, pad, black_box(f))))
        });
        // Floor: the payload copied into the aligned buffer, no header, no mask.
        let payload = &f[f.len() - msg.len()..];
        g.bench_with_input(BenchmarkId::new("baseline_copy_aligned", name), payload, |b, p| {
            b.iter(|| {
                buf.resize(pad, 0);
                buf.extend_from_slice(black_box(p));
                black_box(buf.len())
            })
        });
        // Unmask alone: core's 4-byte loop against an 8-byte reference loop.
        let mut work = msg.clone();
        g.bench_function(BenchmarkId::new("apply_mask_core", name), |b| {
            b.iter(|| frame::apply_mask(black_box(&mut work), black_box(MASK)))
        });
        g.bench_function(BenchmarkId::new("baseline_unmask_u64", name), |b| {
            b.iter(|| unmask_u64(black_box(&mut work), black_box(MASK)))
        });
        // Peer: tungstenite reading the same frame as a Message (what baseline-tokio does).
        let mut ws = tungstenite_server(f.clone());
        g.bench_function(BenchmarkId::new("baseline_tungstenite_read", name), |b| {
            b.iter(|| black_box(tungstenite_read_again(&mut ws)))
        });
        let mut ws = tungstenite_server_small_buffer(f.clone());
        g.bench_function(BenchmarkId::new("baseline_tungstenite_read_4KiB_buffer", name), |b| {
            b.iter(|| black_box(tungstenite_read_again(&mut ws)))
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------
// Validation and decoding of call inputs

fn wire_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("wire");
    let echo64 = wire::encode(&BenchEcho64Input { payload: payload() }).unwrap();
    g.bench_function("access_validated/echo64", |b| {
        b.iter(|| black_box(wire::access::<BenchEcho64Input>(black_box(&echo64), DEPTH).unwrap()))
    });
    g.bench_function("baseline_access_unchecked/echo64", |b| {
        // SAFETY: the bytes are the archive of a BenchEcho64Input, encoded above, aligned.
        b.iter(|| black_box(unsafe { rkyv::access_unchecked::<rkyv::Archived<BenchEcho64Input>>(black_box(&echo64)) }))
    });
    g.bench_function("decode/echo64", |b| {
        b.iter(|| black_box(BenchEcho64Input::decode(black_box(&echo64)).unwrap().payload))
    });
    g.bench_function("baseline_unchecked_deserialize/echo64", |b| {
        b.iter(|| {
            // SAFETY: as above.
            let a = unsafe { rkyv::access_unchecked::<rkyv::Archived<BenchEcho64Input>>(black_box(&echo64)) };
            black_box(rkyv::deserialize::<BenchEcho64Input, rancor::Error>(a).unwrap().payload)
        })
    });

    let add = wire::encode(&BenchAddInput { a: 40, b: 2 }).unwrap();
    g.bench_function("access_validated/add", |b| {
        b.iter(|| black_box(wire::access::<BenchAddInput>(black_box(&add), DEPTH).unwrap()))
    });
    g.bench_function("baseline_access_unchecked/add", |b| {
        // SAFETY: the archive of a BenchAddInput, aligned.
        b.iter(|| black_box(unsafe { rkyv::access_unchecked::<rkyv::Archived<BenchAddInput>>(black_box(&add)) }))
    });
    g.bench_function("decode/add", |b| {
        b.iter(|| {
            let i = BenchAddInput::decode(black_box(&add)).unwrap();
            black_box((i.a, i.b))
        })
    });

    let echo = wire::encode(&BenchEchoInput { data: payload().bytes.to_vec() }).unwrap();
    g.bench_function("access_validated/echo_vec64", |b| {
        b.iter(|| black_box(wire::access::<BenchEchoInput>(black_box(&echo), DEPTH).unwrap()))
    });
    g.bench_function("baseline_access_unchecked/echo_vec64", |b| {
        // SAFETY: the archive of a BenchEchoInput, aligned.
        b.iter(|| black_box(unsafe { rkyv::access_unchecked::<rkyv::Archived<BenchEchoInput>>(black_box(&echo)) }))
    });
    g.bench_function("decode/echo_vec64", |b| {
        b.iter(|| black_box(BenchEchoInput::decode(black_box(&echo)).unwrap().data))
    });
    g.finish();
}

// ---------------------------------------------------------------------------
// Full dispatch: the whole per-call server CPU path without sockets

/// An upgraded connection with nothing buffered either way.
fn open_connection() -> ServerConnection {
    let mut conn = ServerConnection::new(Limits::default());
    feed(&mut conn, UPGRADE.as_bytes());
    let req = match conn.poll_event() {
        Some(Event::Upgrade(req)) => req,
        other => panic!("expected the upgrade, got {other:?}"),
    };
    conn.accept(&req);
    let n = conn.outbound().len();
    conn.advance_outbound(n);
    conn
}

fn feed(conn: &mut ServerConnection, bytes: &[u8]) {
    let buf = conn.read_buf();
    buf[..bytes.len()].copy_from_slice(bytes);
    conn.on_read(bytes.len());
}

/// Takes everything queued for the socket; returns its length.
fn drain_outbound(conn: &mut ServerConnection) -> usize {
    let n = black_box(conn.outbound()).len();
    conn.advance_outbound(n);
    n
}

/// One call through HardLight's server path: read, parse, unmask, envelope,
/// validate and decode, run the handler (polled once), encode, frame.
/// The feature-set check is the one the server driver makes before decoding.
fn hardlight_call<S: Service>(
    conn: &mut ServerConnection,
    features: &FeatureSet,
    service: &S,
    frame: &[u8],
    cx: &mut Context<'_>,
) -> usize {
    feed(conn, frame);
    let Some(Event::Call { id, method, input, .. }) = conn.poll_event() else { panic!("expected a call") };
    assert!(features.is_enabled(method));
    let fut = service.call(method, input, DEPTH).unwrap_or_else(|r| panic!("{}", r.detail()));
    let Poll::Ready(reply) = pin!(fut).poll(cx) else { panic!("bench handlers finish at once") };
    conn.complete(id, &reply);
    drain_outbound(conn)
}

/// What `baseline-tokio` keeps per connection besides the socket.
struct PeerConn {
    live: CallTable,
    features: FeatureSet,
    aligned: AlignedBuf,
    scratch: AlignedBuf,
}

/// The same call through `baseline-tokio`'s path: tungstenite reads the
/// frame into a message, the call id and feature set are checked, the input
/// is copied aligned, the same service runs, and the reply is a fresh `Vec`
/// written through tungstenite.
fn tungstenite_call<S: Service>(
    ws: &mut WebSocket<MemStream>,
    peer: &mut PeerConn,
    service: &S,
    cx: &mut Context<'_>,
) -> usize {
    let Message::Binary(msg) = tungstenite_read_again(ws) else { panic!("expected binary") };
    let Ok(ClientMessage::Call { id, method, input, .. }) = envelope::decode_client(&msg) else {
        panic!("expected a call")
    };
    assert!(peer.live.begin(id) && peer.features.is_enabled(method));
    let (aligned, scratch) = (&mut peer.aligned, &mut peer.scratch);
    let input = wire::align_into(aligned, input);
    let fut = service.call(method, input, DEPTH).unwrap_or_else(|r| panic!("{}", r.detail()));
    let Poll::Ready(reply) = pin!(fut).poll(cx) else { panic!("bench handlers finish at once") };
    let ok = reply.encode(scratch).unwrap();
    let mut out = Vec::with_capacity(envelope::RESULT_HEADER_LEN + scratch.len());
    out.extend_from_slice(&envelope::result_header(id, ok));
    out.extend_from_slice(scratch);
    peer.live.finish(id);
    ws.write(Message::binary(out)).unwrap();
    ws.flush().unwrap();
    std::mem::take(&mut ws.get_mut().written)
}

fn dispatch_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("dispatch");
    let service = BenchService::new(BenchHandler);
    let mut cx = Context::from_waker(Waker::noop());
    let features = FeatureSet::all(BenchMethod::NAMES.len());
    let mut peer = PeerConn {
        live: CallTable::new(),
        features: features.clone(),
        aligned: AlignedBuf::new(),
        scratch: AlignedBuf::new(),
    };

    for (name, method, input) in calls() {
        let f = masked_frame(&call_message(7, method, &input));
        let mut conn = open_connection();
        g.bench_function(BenchmarkId::new("hardlight_full_call", name), |b| {
            b.iter(|| black_box(hardlight_call(&mut conn, &features, &service, black_box(&f), &mut cx)))
        });
        let mut ws = tungstenite_server(f.clone());
        g.bench_function(BenchmarkId::new("baseline_tungstenite_full_call", name), |b| {
            b.iter(|| black_box(tungstenite_call(&mut ws, &mut peer, &service, &mut cx)))
        });
        let mut ws = tungstenite_server_small_buffer(f.clone());
        g.bench_function(BenchmarkId::new("baseline_tungstenite_4KiB_buffer_full_call", name), |b| {
            b.iter(|| black_box(tungstenite_call(&mut ws, &mut peer, &service, &mut cx)))
        });
    }

    // Floor: the connection alone, answering with a ready-made reply (no
    // validation, no decode, no handler).
    let (_, method, input) = calls().swap_remove(1);
    let f = masked_frame(&call_message(7, method, &input));
    let reply = BenchReply::Add(42);
    let mut conn = open_connection();
    g.bench_function("baseline_protocol_only/add", |b| {
        b.iter(|| {
            feed(&mut conn, black_box(&f));
            let Some(Event::Call { id, .. }) = conn.poll_event() else { panic!("expected a call") };
            conn.complete(id, &reply);
            black_box(drain_outbound(&mut conn))
        })
    });
    g.finish();
}

// ---------------------------------------------------------------------------
// Reply encoding

/// What `ServerConnection::complete` appends for a reply: frame header,
/// result envelope, output archive.
fn frame_reply(out: &mut Vec<u8>, scratch: &mut AlignedBuf, id: u8, reply: &BenchReply) {
    let ok = reply.encode(scratch).unwrap();
    frame::write_header(out, true, Opcode::Binary, envelope::RESULT_HEADER_LEN + scratch.len(), None);
    out.extend_from_slice(&envelope::result_header(id, ok));
    out.extend_from_slice(scratch);
}

fn reply_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("reply");
    let mut scratch = AlignedBuf::with_capacity(1024);
    let mut out = Vec::with_capacity(1024);
    let replies = [
        ("echo64", BenchReply::Echo64(payload())),
        ("add", BenchReply::Add(42)),
        ("echo_vec64", BenchReply::Echo(payload().bytes.to_vec())),
    ];
    for (name, reply) in &replies {
        g.bench_with_input(BenchmarkId::new("encode", name), reply, |b, r| {
            b.iter(|| black_box(black_box(r).encode(&mut scratch).unwrap()))
        });
        g.bench_with_input(BenchmarkId::new("encode_and_frame", name), reply, |b, r| {
            b.iter(|| {
                out.clear();
                frame_reply(&mut out, &mut scratch, 7, black_box(r));
                black_box(out.len())
            })
        });
    }
    // Floor: a 64-byte payload framed by hand, no archive.
    let raw = payload().bytes;
    g.bench_function("baseline_frame_raw_bytes/echo64", |b| {
        b.iter(|| {
            out.clear();
            frame::write_header(&mut out, true, Opcode::Binary, envelope::RESULT_HEADER_LEN + raw.len(), None);
            out.extend_from_slice(&envelope::result_header(7, true));
            out.extend_from_slice(black_box(&raw));
            black_box(out.len())
        })
    });
    g.finish();
}

// ---------------------------------------------------------------------------
// TODO(issue 5): state-diff and event-envelope benchmarks go here, added by
// the engineers who own those features (connection state diffs in
// `hardlight::protocol::state`, STATE envelope 0x20; typed server push, EVENT envelope
// 0x30). Add `state_benches` / `event_benches` functions with a baseline
// each, and list them in `criterion_group!` below.

criterion_group!(benches, envelope_benches, frame_benches, wire_benches, dispatch_benches, reply_benches);

fn main() {
    // On this shared 2-core machine, pinning keeps the figures steadier.
    if let Some(cpu) = std::env::var("HL_BENCH_CPU").ok().and_then(|v| v.parse::<usize>().ok()) {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
            eprintln!("warning: could not pin to CPU {cpu}");
        }
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
