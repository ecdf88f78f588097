//! The plain WebSocket echo server (the Autobahn target) over real sockets,
//! with tokio-tungstenite as an ordinary WebSocket client: no subprotocol.

mod common;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hardlight::server::echo::EchoServer;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

fn start() -> hardlight::server::ServerHandle {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
    EchoServer::builder("127.0.0.1:0".parse().unwrap())
        .unpinned(1)
        .backend(common::backend())
        .serve_echo()
        .expect("echo server starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoes_text_and_binary_without_a_subprotocol() {
    let server = start();
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/", server.local_addr())).await.unwrap();
    assert!(resp.headers().get("sec-websocket-protocol").is_none());
    let big: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
    for msg in [Message::text("héllo"), Message::binary(vec![0u8, 255, 7]), Message::binary(big), Message::text("")] {
        ws.send(msg.clone()).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(got, msg);
    }
    ws.send(Message::Close(Some(CloseFrame { code: CloseCode::Library(3000), reason: "bye".into() }))).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap() {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(u16::from(f.code), 3000),
        other => panic!("expected the close echoed, got {other:?}"),
    }
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_text_closes_1007() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start();
    let mut s = tokio::net::TcpStream::connect(server.local_addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .unwrap();
    // A non-final text fragment whose bytes cannot start valid UTF-8 (mask 0).
    s.write_all(&[0x01, 0x82, 0, 0, 0, 0, 0xc0, 0xaf]).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    let header_end = |b: &[u8]| b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    // Read the 101 and the first 4 bytes of the frame after it.
    while header_end(&got).is_none_or(|at| got.len() < at + 4) {
        let n = tokio::time::timeout_at(end, s.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let at = header_end(&got).unwrap();
    assert!(got.starts_with(b"HTTP/1.1 101 "));
    let frame = &got[at..];
    assert_eq!(frame[0], 0x88, "a Close frame");
    assert_eq!(u16::from_be_bytes([frame[2], frame[3]]), 1007);
    server.shutdown();
}
