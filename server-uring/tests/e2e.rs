//! End to end: the real server (on the default backend, the ring; tests/glommio.rs runs it again on glommio) on 127.0.0.1, the real tokio client.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::{SinkExt, StreamExt};
use hardlight::client::{ClientConfig, ConnectError, Connection};
use hardlight::{CallError, CallErrorCode};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

fn rejected(r: Result<impl std::fmt::Debug, CallError>) -> CallErrorCode {
    match r {
        Err(CallError::Rejected { code, .. }) => code,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_end_to_end_on_two_pinned_cores() {
    let (server, value) = start(builder().cores(vec![0, 1]));
    let mut shards_seen = std::collections::HashSet::new();
    let mut clients = Vec::new();
    for _ in 0..16 {
        let c = ProbeClient::new(Connection::connect(&url(&server)).await.unwrap());
        shards_seen.insert(c.whoami().await.unwrap().0);
        clients.push(c);
    }
    assert_eq!(shards_seen.len(), 2, "SO_REUSEPORT should spread 16 connections over both shards");
    let mut tasks = Vec::new();
    for c in clients {
        tasks.push(tokio::spawn(async move {
            for _ in 0..100 {
                c.increment(1).await.unwrap();
            }
            c
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.unwrap());
    }
    assert_eq!(clients[0].get().await.unwrap(), 1600);
    assert_eq!(value.load(std::sync::atomic::Ordering::SeqCst), 1600);
    assert_eq!(clients[3].divide(9, 3).await.unwrap(), Ok(3));
    assert_eq!(clients[3].divide(9, 0).await.unwrap(), Err(MathError::DivByZero));
    assert_eq!(server.stats().upgrades.get(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_calls_answered_to_their_own_callers_out_of_order() {
    let (server, _) = start(builder());
    let client = ProbeClient::new(Connection::connect(&url(&server)).await.unwrap());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let c = ProbeClient::new(client.caller().clone());
        // Later calls sleep less, so they finish first.
        let ms = (200 - i as u32) % 50 * 4;
        tasks.push(tokio::spawn(async move { (i, c.sleep_echo(ms, i * 7).await) }));
    }
    for t in tasks {
        let (i, r) = t.await.unwrap();
        assert_eq!(r.unwrap(), i * 7);
    }
    // Concurrent, not serial: 200 calls of up to 196 ms would take ~20 s serially.
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_256_calls_wait_for_free_ids_and_all_succeed() {
    let (server, _) = start(builder());
    let conn = Connection::connect(&url(&server)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..300u64 {
        let c = ProbeClient::new(conn.clone());
        tasks.push(tokio::spawn(async move { c.sleep_echo(50, i).await }));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(conn.calls_in_flight(), 256, "ids in flight are capped at 256");
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap().unwrap(), i as u64);
    }
    assert_eq!(conn.calls_in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_method_and_invalid_input_are_rejected_and_connection_survives() {
    let (server, _) = start(builder());
    let conn = Connection::connect(&url(&server)).await.unwrap();
    assert_eq!(rejected(conn.call(999, &[]).await), CallErrorCode::UnknownMethod);
    // Input that is not an archive of the method's input (increment takes a u64).
    let garbage = [0xffu8; 3];
    assert_eq!(rejected(conn.call(ProbeMethod::Increment.id(), &garbage).await), CallErrorCode::InvalidInput);
    let c = ProbeClient::new(conn);
    assert_eq!(c.increment(5).await.unwrap(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_handler_fails_only_its_call() {
    let (server, _) = start(builder());
    let c = ProbeClient::new(Connection::connect(&url(&server)).await.unwrap());
    let slow = {
        let c2 = ProbeClient::new(c.caller().clone());
        tokio::spawn(async move { c2.sleep_echo(100, 11).await })
    };
    assert_eq!(rejected(c.boom().await), CallErrorCode::HandlerPanicked);
    assert_eq!(c.increment(2).await.unwrap(), 2, "connection goes on");
    assert_eq!(slow.await.unwrap().unwrap(), 11, "concurrent call on the same connection unaffected");
    let other = ProbeClient::new(Connection::connect(&url(&server)).await.unwrap());
    assert_eq!(other.get().await.unwrap(), 2, "shard goes on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_version_is_refused_with_400_naming_hl1() {
    let (server, _) = start(builder());
    let cfg = ClientConfig { subprotocol: "hl/2".into(), ..ClientConfig::default() };
    match Connection::connect_with(&url(&server), cfg).await {
        Err(ConnectError::Refused { status, body }) => {
            assert_eq!(status, 400);
            assert!(body.contains("hl/1") && body.contains("hl/2"), "{body}");
        }
        other => panic!("{other:?}"),
    }
    // A plain WebSocket client offering no subprotocol at all.
    let req = url(&server).into_client_request().unwrap();
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 400);
            let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).to_string();
            assert!(body.contains("supports hl/1"), "{body}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.stats().handshake_failures.get(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn factory_sees_headers_and_can_refuse() {
    let (server, _) = start(builder());
    let cfg = ClientConfig::default().header("x-test", "hello");
    let c = ProbeClient::new(Connection::connect_with(&url(&server), cfg).await.unwrap());
    assert_eq!(c.whoami().await.unwrap().1, "hello");
    let cfg = ClientConfig::default().header("x-refuse", "1");
    match Connection::connect_with(&url(&server), cfg).await {
        Err(ConnectError::Refused { status: 403, body }) => {
            assert!(body.contains("refused on request"), "{body}")
        }
        other => panic!("{other:?}"),
    }
}

/// A raw WebSocket connection speaking hl/1, for sending what the typed client never would.
async fn raw(
    server: &hardlight::server::ServerHandle,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut req = url(server).into_client_request().unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", "hl/1".parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

fn call_msg(id: u8, method: ProbeMethod, input: &[u8]) -> Message {
    let mut m = Vec::new();
    hardlight::protocol::envelope::encode_call(&mut m, id, method.id(), input);
    Message::Binary(m.into())
}

async fn next_binary(
    ws: &mut (impl futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> Vec<u8> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("reply in time") {
            // Skip the connection's initial limits, feature set and state announcements.
            Some(Ok(Message::Binary(b)))
                if matches!(
                    b.first(),
                    Some(
                        &hardlight::protocol::envelope::KIND_LIMITS
                            | &hardlight::protocol::envelope::KIND_FEATURES
                            | &hardlight::protocol::envelope::KIND_STATE
                    )
                ) => {}
            Some(Ok(Message::Binary(b))) => return b.to_vec(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a binary message, got {other:?}"),
        }
    }
}

async fn expect_close(
    ws: &mut (impl futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
    code: u16,
) {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("close in time") {
            Some(Ok(Message::Close(Some(f)))) => {
                assert_eq!(u16::from(f.code), code, "reason: {}", f.reason);
                return;
            }
            Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected close {code}, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_live_id_gets_an_error_response_and_first_call_completes() {
    let (server, _) = start(builder());
    let mut ws = raw(&server).await;
    let input = hardlight::protocol::wire::encode(&ProbeSleepEchoInput { ms: 200, value: 77 }).unwrap();
    ws.send(call_msg(5, ProbeMethod::SleepEcho, &input)).await.unwrap();
    ws.send(call_msg(5, ProbeMethod::SleepEcho, &input)).await.unwrap();
    let first = next_binary(&mut ws).await;
    assert_eq!(&first[..3], &[hardlight::protocol::envelope::KIND_CALL_ERROR, 5, CallErrorCode::DuplicateCallId as u8]);
    let second = next_binary(&mut ws).await;
    assert_eq!(&second[..2], &[hardlight::protocol::envelope::KIND_RESULT_OK, 5]);
    let mut buf = hardlight::protocol::wire::AlignedBuf::new();
    let v = <u64 as hardlight::Wire>::decode(hardlight::protocol::wire::align_into(&mut buf, &second[2..])).unwrap();
    assert_eq!(v, 77);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_close_with_named_codes() {
    let (server, _) = start(builder());
    // Unknown envelope kind: 4000.
    let mut ws = raw(&server).await;
    ws.send(Message::Binary(vec![0x7f, 0, 0, 0].into())).await.unwrap();
    expect_close(&mut ws, 4000).await;
    // Truncated call header: 4000.
    let mut ws = raw(&server).await;
    ws.send(Message::Binary(vec![0x01, 0].into())).await.unwrap();
    expect_close(&mut ws, 4000).await;
    // Text frame: 1003.
    let mut ws = raw(&server).await;
    ws.send(Message::Text("hello".into())).await.unwrap();
    expect_close(&mut ws, 1003).await;
    // Oversized message: 1009.
    let mut ws = raw(&server).await;
    ws.send(Message::Binary(vec![1u8; hardlight::protocol::limits::DEFAULT_MAX_MESSAGE_SIZE + 1].into()))
        .await
        .unwrap();
    expect_close(&mut ws, 1009).await;
    // The server still serves.
    let c = ProbeClient::new(Connection::connect(&url(&server)).await.unwrap());
    assert_eq!(c.increment(1).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_on_the_socket_close_with_protocol_error() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (server, _) = start(builder());
    let ws = raw(&server).await;
    let mut tcp = match ws.into_inner() {
        tokio_tungstenite::MaybeTlsStream::Plain(s) => s,
        _ => unreachable!(),
    };
    // An unmasked frame with reserved bits: not something a client may send.
    tcp.write_all(&[0xF2, 0x05, 1, 2, 3, 4, 5]).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await.unwrap().unwrap();
    assert!(n >= 4, "a close frame");
    assert_eq!(buf[0], 0x88, "close opcode, FIN");
    assert_eq!(u16::from_be_bytes([buf[2], buf[3]]), 1002);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_calls_in_flight_finish_then_closes_1001() {
    let (server, _) = start(builder().shutdown_grace(Duration::from_secs(5)));
    let conn = Connection::connect(&url(&server)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..10u64 {
        let c = ProbeClient::new(conn.clone());
        tasks.push(tokio::spawn(async move { c.sleep_echo(300, i).await }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let addr = server.local_addr();
    let stopper = tokio::task::spawn_blocking(move || server.shutdown());
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap().unwrap(), i as u64, "in-flight call finished during shutdown");
    }
    stopper.await.unwrap();
    let reason = conn.close_reason().expect("closed after shutdown");
    assert!(reason.contains("1001"), "{reason}");
    assert!(Connection::connect(&format!("ws://{addr}")).await.is_err(), "no longer accepting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sees_the_server_go_away_pending_calls_fail_at_once() {
    let (server, _) = start(builder().shutdown_grace(Duration::from_millis(100)));
    let conn = Connection::connect(&url(&server)).await.unwrap();
    let c = ProbeClient::new(conn.clone());
    let pending = tokio::spawn(async move { c.sleep_echo(30_000, 1).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t0 = Instant::now();
    tokio::task::spawn_blocking(move || server.shutdown()).await.unwrap();
    match pending.await.unwrap() {
        Err(CallError::Disconnected(reason)) => assert!(reason.contains("1001"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(10));
    let c = ProbeClient::new(conn);
    assert!(matches!(c.get().await, Err(CallError::Disconnected(_))), "later calls fail at once too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_server_on_a_taken_port_fails_clearly() {
    let (server, _) = start(builder());
    let err = hardlight::server::Server::builder(server.local_addr())
        .unpinned(1)
        .serve(|_: &hardlight::server::ConnectContext<'_>| {
            Ok::<_, hardlight::server::Refusal>(ProbeService::new(ProbeHandler {
                value: Default::default(),
                shard: 0,
                header: String::new(),
            }))
        })
        .err()
        .expect("must not bind");
    assert!(matches!(err, hardlight::server::ServerError::AddressInUse(_)), "{err}");
    assert!(err.to_string().contains("already in use"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_is_backpressured_without_stalling_others() {
    use tokio::io::AsyncWriteExt;
    let (server, _) = start(builder());
    // A client that sends calls with 64 KiB replies and never reads them.
    let ws = raw(&server).await;
    let mut tcp = match ws.into_inner() {
        tokio_tungstenite::MaybeTlsStream::Plain(s) => s,
        _ => unreachable!(),
    };
    let input = hardlight::protocol::wire::encode(&ProbeEchoInput { data: vec![7u8; 64 * 1024] }).unwrap();
    let writer = tokio::spawn(async move {
        let mut sent = 0u64;
        for i in 0..2000u32 {
            let mut msg = Vec::new();
            hardlight::protocol::envelope::encode_call(&mut msg, (i % 200) as u8, ProbeMethod::Echo.id(), &input);
            let mut frame = Vec::new();
            hardlight::protocol::frame::write_masked_frame(
                &mut frame,
                true,
                hardlight::protocol::frame::Opcode::Binary,
                &msg,
                [1, 2, 3, 4],
            );
            match tokio::time::timeout(Duration::from_millis(500), tcp.write_all(&frame)).await {
                Ok(Ok(())) => sent += 1,
                _ => break, // the server stopped reading us: back-pressure reached the socket
            }
        }
        (sent, tcp)
    });
    let (sent, _tcp) = writer.await.unwrap();
    assert!(sent < 2000, "the server must stop reading a client that does not read ({sent} calls accepted)");
    // Meanwhile other clients are served normally.
    let c = ProbeClient::new(Connection::connect(&url(&server)).await.unwrap());
    for i in 0..50 {
        assert_eq!(c.increment(1).await.unwrap(), i + 1);
    }
}
