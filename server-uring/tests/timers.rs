//! The core's time rules and the shard's held-bytes budget, through the real
//! real server (both backends: tests/glommio.rs runs this file on glommio) over real sockets, with short configured values.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hardlight::client::Connection;
use hardlight::protocol::frame::{self, Opcode, Role};
use hardlight::server::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const UPGRADE: &str = "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: hl/1\r\n\r\n";

/// A raw connection that completed the upgrade, with what followed the 101.
async fn upgraded(addr: std::net::SocketAddr, request: &str) -> (TcpStream, Vec<u8>) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed during the upgrade");
        got.extend_from_slice(&buf[..n]);
        if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            assert!(got.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&got));
            return (tcp, got.split_off(at + 4));
        }
    }
}

/// Server frames parsed off the front of `buf`, which keeps any partial rest.
fn take_frames(buf: &mut Vec<u8>) -> Vec<(Opcode, Vec<u8>)> {
    let mut v = Vec::new();
    while let Ok(Some(h)) = frame::parse_header(buf, Role::Client, usize::MAX) {
        let end = h.header_len + h.payload_len as usize;
        if end > buf.len() {
            break;
        }
        v.push((h.opcode, buf[h.header_len..end].to_vec()));
        buf.drain(..end);
    }
    v
}

/// Reads until a Close frame arrives (or `limit` passes): the frames before
/// it, the close code, and when it arrived.
async fn until_close(tcp: &mut TcpStream, mut buf: Vec<u8>, limit: Duration) -> (Vec<Opcode>, Option<u16>, Instant) {
    let end = Instant::now() + limit;
    let mut ops = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        for (op, p) in take_frames(&mut buf) {
            if op == Opcode::Close {
                return (ops, Some(u16::from_be_bytes([p[0], p[1]])), Instant::now());
            }
            ops.push(op);
        }
        match tokio::time::timeout_at(end.into(), tcp.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return (ops, None, Instant::now()),
        }
    }
}

fn masked(fin: bool, op: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    frame::write_masked_frame(&mut f, fin, op, payload, [0x5a, 0x11, 0x7e, 0x03]);
    f
}

fn assert_within(what: &str, got: Duration, want: Duration) {
    // The machine is shared and noisy: late by up to 600 ms is tolerated,
    // early never (beyond clock granularity).
    assert!(
        got + Duration::from_millis(50) >= want && got <= want + Duration::from_millis(600),
        "{what}: after {got:?}, expected {want:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_stopped_mid_frame_is_closed_4002_one_idle_timeout_after_its_last_byte() {
    let limits = Limits {
        keepalive_interval: Duration::from_millis(1000),
        idle_timeout: Duration::from_millis(2000),
        message_timeout: Duration::from_secs(60),
        ..Limits::default()
    };
    let (server, _) = start(builder().limits(limits));
    let (mut tcp, rest) = upgraded(server.local_addr(), UPGRADE).await;
    // Half a frame header and nothing more.
    tcp.write_all(&[0x82, 0xFE]).await.unwrap();
    let last_byte = Instant::now();
    let (ops, code, at) = until_close(&mut tcp, rest, Duration::from_secs(6)).await;
    assert_eq!(code, Some(4002));
    assert!(ops.contains(&Opcode::Ping), "pinged first: {ops:?}");
    assert_within("idle close", at - last_byte, Duration::from_millis(2000));
    assert!(server.stats().idle_closed.get() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_dies_after_answering_a_ping_is_closed_one_idle_timeout_after_its_pong() {
    let limits = Limits {
        keepalive_interval: Duration::from_millis(1000),
        idle_timeout: Duration::from_millis(2000),
        ..Limits::default()
    };
    let (server, _) = start(builder().limits(limits));
    let (mut tcp, mut buf) = upgraded(server.local_addr(), UPGRADE).await;
    let opened = Instant::now();
    // Wait for the first ping and answer it, then play dead.
    let mut chunk = [0u8; 4096];
    let pong_at = 'ping: loop {
        for (op, p) in take_frames(&mut buf) {
            assert_ne!(op, Opcode::Close, "closed before its first ping");
            if op == Opcode::Ping {
                tcp.write_all(&masked(true, Opcode::Pong, &p)).await.unwrap();
                break 'ping Instant::now();
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
    };
    assert_within("first ping", pong_at - opened, Duration::from_millis(1000));
    let (ops, code, at) = until_close(&mut tcp, buf, Duration::from_secs(6)).await;
    assert_eq!(code, Some(4002));
    assert_eq!(ops, vec![Opcode::Ping], "one more ping during the silence after the pong");
    assert_within("idle close after the pong", at - pong_at, Duration::from_millis(2000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_message_is_closed_4003_at_the_message_deadline_while_others_call() {
    let limits = Limits { message_timeout: Duration::from_millis(1000), ..Limits::default() };
    let (server, _) = start(builder().limits(limits));
    let steady = ProbeClient::new(Connection::connect(&url(&server)).await.unwrap());
    let (mut tcp, rest) = upgraded(server.local_addr(), UPGRADE).await;
    // A frame announcing 60,000 bytes, then a byte every 100 ms.
    tcp.write_all(&[0x82, 0xFE, 0xEA, 0x60, 1, 2, 3, 4]).await.unwrap();
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        let (mut rd, mut wr) = tcp.into_split();
        let writer = tokio::spawn(async move {
            while wr.write_all(&[0]).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let mut buf = rest;
        let mut chunk = [0u8; 4096];
        let end = Instant::now() + Duration::from_secs(5);
        let code = loop {
            if let Some((_, p)) = take_frames(&mut buf).into_iter().find(|(op, _)| *op == Opcode::Close) {
                break Some(u16::from_be_bytes([p[0], p[1]]));
            }
            match tokio::time::timeout_at(end.into(), rd.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => break None,
            }
        };
        writer.abort();
        (code, Instant::now())
    });
    for i in 1..=10u64 {
        assert_eq!(steady.increment(1).await.unwrap(), i);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, at) = trickle.await.unwrap();
    assert_eq!(code, Some(4003), "the trickler is closed with the documented code");
    assert_within("message deadline", at - started, Duration::from_millis(1000));
    assert_eq!(server.stats().message_timeouts.get(), 1);
    assert_eq!(steady.increment(1).await.unwrap(), 11, "the steady client is unaffected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_shard_budget_the_growing_connection_is_closed_4004_and_others_are_unaffected() {
    let (server, _) = start(builder().shard_held_bytes_budget(64 * 1024));
    let steady = ProbeClient::new(Connection::connect(&url(&server)).await.unwrap());
    // A: a real call (echo of 50,000 bytes), of which 40,000 bytes are sent.
    let input = hardlight::protocol::wire::encode(&ProbeEchoInput { data: vec![7; 50_000] }).unwrap();
    let mut msg = Vec::new();
    hardlight::protocol::envelope::encode_call(&mut msg, 9, ProbeMethod::Echo.id(), &input);
    let call = masked(true, Opcode::Binary, &msg);
    let (mut a, a_rest) = upgraded(server.local_addr(), UPGRADE).await;
    a.write_all(&call[..40_000]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(steady.increment(1).await.unwrap(), 1);
    // B: 30,000 bytes of a 60,000-byte message take the shard past 64 KiB.
    let (mut b, b_rest) = upgraded(server.local_addr(), UPGRADE).await;
    b.write_all(&[0x82, 0xFE, 0xEA, 0x60, 1, 2, 3, 4]).await.unwrap();
    b.write_all(&[0; 30_000]).await.unwrap();
    let (_, code, _) = until_close(&mut b, b_rest, Duration::from_secs(5)).await;
    assert_eq!(code, Some(4004), "the newest offender is closed with the documented code");
    assert_eq!(server.stats().over_budget.get(), 1);
    // A, which did not grow, finishes its call and gets its answer.
    a.write_all(&call[40_000..]).await.unwrap();
    let mut buf = a_rest;
    let mut chunk = [0u8; 65536];
    let end = Instant::now() + Duration::from_secs(5);
    let reply = 'reply: loop {
        for (op, p) in take_frames(&mut buf) {
            assert_ne!(op, Opcode::Close, "A must not be closed");
            if op == Opcode::Binary && p[0] == 0x10 && p[1] == 9 {
                break 'reply p;
            }
        }
        let n = tokio::time::timeout_at(end.into(), a.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "A was disconnected");
        buf.extend_from_slice(&chunk[..n]);
    };
    assert!(reply.len() > 50_000, "the echo came back whole");
    for i in 2..=5u64 {
        assert_eq!(steady.increment(1).await.unwrap(), i, "the steady client keeps making calls");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_driver_runs_the_same_time_rules() {
    init_tracing();
    let limits = Limits {
        keepalive_interval: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(800),
        ..Limits::default()
    };
    let server = hardlight::server::echo::EchoServer::builder("127.0.0.1:0".parse().unwrap())
        .unpinned(1)
        .limits(Limits { max_message_size: 1 << 20, ..limits })
        .serve_echo()
        .unwrap();
    let plain = UPGRADE.replace("Sec-WebSocket-Protocol: hl/1\r\n", "");
    let (mut tcp, rest) = upgraded(server.local_addr(), &plain).await;
    let opened = Instant::now();
    let (ops, code, at) = until_close(&mut tcp, rest, Duration::from_secs(5)).await;
    assert_eq!(ops, vec![Opcode::Ping]);
    assert_eq!(code, Some(4002));
    assert_within("echo idle close", at - opened, Duration::from_millis(800));
    assert_eq!(server.stats().idle_closed.get(), 1);
}
