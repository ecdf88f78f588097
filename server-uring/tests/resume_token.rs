//! The browser's resume opt-in, over a raw socket on both backends: a
//! client that can set no header offers the subprotocol token
//! `hl-resume.1`; the server never selects it, and acknowledges it in the
//! stream (the initial RESUME_POINT before the initial state and feature
//! set), holds topic events until RESUME, then sends them as TOPIC_EVENT.
//! A client that does not offer the token gets no RESUME_POINT and plain
//! EVENTs. Byte layouts: docs/PROTOCOL.md sections 2, 4 and 9.1.
//!
//! On the ring this test failed before the replay was taken right after the
//! input that carried RESUME (`conn::replay_if_resumed`): the ring parked
//! and the replay waited for an unrelated wake-up (its 10 s timer).

mod common;
#[path = "support/feed.rs"]
mod feed;

use std::time::Duration;

use feed::serve_feed;
use hardlight::server::{Backend, Server, ServerHandle};
use hardlight_core::envelope::{
    KIND_EVENT, KIND_FEATURES, KIND_GAP, KIND_LIMITS, KIND_RESUME_POINT, KIND_STATE, KIND_TOPIC_EVENT,
};
use hardlight_core::resume::{encode_resume, parse_resume_point, parse_topic_event, RESUME_PROTOCOL};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one message may take to arrive before the test fails (not a
/// speed assertion: a bound so that a missing message fails the test).
const WAIT: Duration = Duration::from_secs(10);

/// A WebSocket client without a library: the upgrade as a browser sends it
/// (subprotocol tokens, no HardLight header), unmasked reads, masked writes.
struct Raw {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Upgrades with `protocols` offered; returns the client and the 101's head.
    async fn open(server: &ServerHandle, protocols: &str) -> (Self, String) {
        let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
        let req = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: {protocols}\r\nx-auto: 1\r\n\r\n"
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Self { tcp, buf: Vec::new() };
        let end = loop {
            if let Some(i) = raw.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            raw.fill().await;
        };
        let head = String::from_utf8_lossy(&raw.buf[..end]).into_owned();
        raw.buf.drain(..end);
        (raw, head)
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, self.tcp.read(&mut chunk)).await.expect("a message in time").unwrap();
        assert!(n > 0, "the server closed the connection");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// The next binary message's payload.
    async fn recv(&mut self) -> Vec<u8> {
        loop {
            if self.buf.len() >= 2 {
                assert_eq!(self.buf[0], 0x82, "a final binary frame");
                let (len, at) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4),
                    127 if self.buf.len() >= 10 => {
                        (u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize, 10)
                    }
                    n if n < 126 => (n as usize, 2),
                    _ => (usize::MAX, 0),
                };
                if len != usize::MAX && self.buf.len() >= at + len {
                    let msg = self.buf[at..at + len].to_vec();
                    self.buf.drain(..at + len);
                    return msg;
                }
            }
            self.fill().await;
        }
    }

    /// Sends one binary message, masked with a zero key (as RFC 6455 allows).
    async fn send(&mut self, msg: &[u8]) {
        assert!(msg.len() < 126);
        let mut frame = vec![0x82, 0x80 | msg.len() as u8, 0, 0, 0, 0];
        frame.extend_from_slice(msg);
        self.tcp.write_all(&frame).await.unwrap();
    }
}

fn start(backend: Backend) -> ServerHandle {
    common::init_tracing();
    serve_feed(Server::builder("127.0.0.1:0".parse().unwrap()).unpinned(1).backend(backend), 1, Default::default())
}

/// Emits one tick on topic "t" (the connections' factory subscribed them).
fn tick(server: &ServerHandle, n: u64) {
    feed::emit_ticks(server, n, n + 1, Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offered_resume_token_opts_in_and_is_acknowledged_by_the_first_resume_point() {
    for backend in [Backend::Glommio, Backend::Ring] {
        let server = start(backend);
        let (mut page, head) = Raw::open(&server, &format!("hl.1, {RESUME_PROTOCOL}")).await;
        assert!(head.starts_with("HTTP/1.1 101 "), "{backend:?}: {head}");
        assert!(head.contains("Sec-WebSocket-Protocol: hl.1\r\n"), "{backend:?}: only hl.1 is selected: {head}");
        assert!(!head.contains(RESUME_PROTOCOL), "{backend:?}: the token is never selected: {head}");

        // The acknowledgement: LIMITS, then the initial RESUME_POINT, then
        // the initial state and feature set.
        let kinds_until_features = {
            let mut kinds = Vec::new();
            let mut point = None;
            loop {
                let m = page.recv().await;
                kinds.push(m[0]);
                if m[0] == KIND_RESUME_POINT {
                    point = parse_resume_point(&m[1..]);
                }
                if m[0] == KIND_FEATURES {
                    break;
                }
            }
            let (_, initial) = point.unwrap_or_else(|| panic!("{backend:?}: no RESUME_POINT in {kinds:x?}"));
            assert!(initial, "{backend:?}: the first point is the initial one");
            kinds
        };
        assert_eq!(
            kinds_until_features,
            [KIND_LIMITS, KIND_RESUME_POINT, KIND_STATE, KIND_FEATURES],
            "{backend:?}: the order a page relies on"
        );

        // Live events are held until RESUME; after it, the replay ends with
        // a RESUME_POINT (flag 0), and the held tick comes as TOPIC_EVENT.
        tick(&server, 1);
        let mut resume = Vec::new();
        encode_resume(&mut resume, None, []);
        page.send(&resume).await;
        // The replay: tick 1, emitted while held, then the point after it.
        let mut replayed = Vec::new();
        loop {
            let m = page.recv().await;
            match m[0] {
                KIND_TOPIC_EVENT => {
                    let e = parse_topic_event(&m[1..]).unwrap();
                    replayed.push((e.topic.to_string(), e.position.offset));
                }
                KIND_RESUME_POINT => {
                    assert_eq!(parse_resume_point(&m[1..]).map(|p| p.1), Some(false), "{backend:?}");
                    break;
                }
                KIND_GAP => {}
                KIND_EVENT => panic!("{backend:?}: a resuming page got a plain EVENT"),
                other => panic!("{backend:?}: unexpected kind {other:#x}"),
            }
        }
        assert_eq!(replayed, [("t".to_string(), 1)], "{backend:?}: the held tick, once");

        // Without the token: no RESUME_POINT, nothing held, plain EVENTs.
        let (mut plain, head) = Raw::open(&server, "hl.1").await;
        assert!(head.contains("Sec-WebSocket-Protocol: hl.1\r\n"), "{head}");
        let mut kinds = Vec::new();
        loop {
            let m = plain.recv().await;
            kinds.push(m[0]);
            if m[0] == KIND_FEATURES {
                break;
            }
        }
        assert_eq!(kinds, [KIND_LIMITS, KIND_STATE, KIND_FEATURES], "{backend:?}: not opted in");
        tick(&server, 2);
        let m = plain.recv().await;
        assert_eq!(m[0], KIND_EVENT, "{backend:?}: sent at once, without a position");
        let m = page.recv().await;
        let e = parse_topic_event(&m[1..]).unwrap();
        assert_eq!(e.position.offset, 2, "{backend:?}: the resuming page gets the next one in order");
        // Closed first, so that the shutdown has no connection to drain.
        drop((page, plain));
        server.shutdown();
    }
}
