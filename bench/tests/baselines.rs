//! The baseline servers as separate processes on 127.0.0.1, driven by the
//! real HardLight client (`baseline-tokio`) and by tokio-tungstenite (the
//! plain echo peers `echo-tokio-tungstenite`, `echo-fastwebsockets` and
//! `echo-tokio-websockets`).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hardlight::client::{ClientConfig, ConnectError, Connection};
use hardlight::{CallError, CallErrorCode};
use hardlight_bench::{BenchClient, BenchMethod, Payload64, ECHO_SIZE};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

/// A server process, killed when dropped (also when a test panics).
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    /// Starts `bin` on a free port and waits for its `listening on ADDR` line.
    fn start(bin: &str) -> Self {
        Self::start_with(bin, &["--threads", "2"])
    }

    /// [`Server::start`] with extra arguments.
    fn start_with(bin: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        // Owned by the guard from here on, so that a failed start still kills it.
        let mut server = Server { child, addr: String::new() };
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        match line.trim().strip_prefix("listening on ") {
            Some(addr) => server.addr = addr.to_string(),
            None => {
                let _ = server.child.kill();
                let mut err = String::new();
                if let Some(mut e) = server.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("{bin} did not report its address (stdout {line:?}, stderr {err:?})");
            }
        }
        server
    }

    fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn baseline() -> Server {
    Server::start(env!("CARGO_BIN_EXE_baseline-tokio"))
}

/// Every plain echo peer `loadgen bench --peers` drives with `raw-echo`.
const ECHO_PEERS: [&str; 3] = [
    env!("CARGO_BIN_EXE_echo-tokio-tungstenite"),
    env!("CARGO_BIN_EXE_echo-fastwebsockets"),
    env!("CARGO_BIN_EXE_echo-tokio-websockets"),
];

type RawWs = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw WebSocket connection offering `protocol`, for what the typed client never sends.
async fn raw(server: &Server, protocol: Option<&str>) -> (RawWs, Option<String>) {
    let mut req = server.url().into_client_request().unwrap();
    if let Some(p) = protocol {
        req.headers_mut().insert("Sec-WebSocket-Protocol", p.parse().unwrap());
    }
    let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    let selected = resp.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap().to_string());
    (ws, selected)
}

async fn next_message(ws: &mut RawWs) -> Message {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("a message in time") {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(m)) => return m,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

async fn expect_close(ws: &mut RawWs, code: u16) {
    loop {
        match next_message(ws).await {
            // FEATURES, or a reply sent before the close.
            Message::Binary(_) => continue,
            Message::Close(Some(f)) => {
                return assert_eq!(u16::from(f.code), code, "reason: {}", f.reason);
            }
            other => panic!("expected close {code}, got {other:?}"),
        }
    }
}

fn rejected<T: std::fmt::Debug>(r: Result<T, CallError>) -> CallErrorCode {
    match r {
        Err(CallError::Rejected { code, .. }) => code,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn baseline_answers_every_bench_method() {
    let server = baseline();
    let conn = Connection::connect(&server.url()).await.unwrap();
    assert_eq!(conn.features(), Some(hardlight::FeatureSet::all(BenchMethod::NAMES.len())));
    let client = BenchClient::new(conn);
    let mut bytes = [0u8; ECHO_SIZE];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = i as u8 ^ 0x5a;
    }
    assert_eq!(client.echo64(Payload64 { bytes }).await.unwrap(), Payload64 { bytes });
    assert_eq!(client.add(40, 2).await.unwrap(), 42);
    assert_eq!(client.add(u64::MAX, 2).await.unwrap(), 1, "add wraps like the handler");
    for len in [0usize, 1, 64, 100_000] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        assert_eq!(client.echo(data.clone()).await.unwrap(), data, "echo of {len} bytes");
    }
}

#[tokio::test]
async fn unknown_method_and_invalid_input_are_rejected_and_the_connection_survives() {
    let server = baseline();
    let conn = Connection::connect(&server.url()).await.unwrap();
    assert_eq!(rejected(conn.call(999, &[]).await), CallErrorCode::UnknownMethod);
    match conn.call(999, &[]).await {
        Err(CallError::Rejected { detail, .. }) => assert_eq!(detail, "no method with id 999"),
        other => panic!("{other:?}"),
    }
    // Three bytes are no archive of two u64s.
    assert_eq!(rejected(conn.call(BenchMethod::Add.id(), &[1, 2, 3]).await), CallErrorCode::InvalidInput);
    let client = BenchClient::new(conn);
    assert_eq!(client.add(1, 2).await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_calls_each_get_their_own_answer() {
    let server = baseline();
    let conn = Connection::connect(&server.url()).await.unwrap();
    // More than the 256 ids: the client queues the rest; every caller must
    // get its own result back.
    let calls = (0..600u64).map(|i| {
        let client = BenchClient::new(conn.clone());
        async move { (i, client.add(i, 1000).await) }
    });
    let results = futures::future::join_all(calls).await;
    assert_eq!(results.len(), 600);
    for (i, r) in results {
        assert_eq!(r.unwrap(), i + 1000);
    }
    assert_eq!(conn.calls_in_flight(), 0);
}

#[tokio::test]
async fn other_subprotocols_are_refused_with_400_naming_hl1() {
    let server = baseline();
    let config = ClientConfig { subprotocol: "hl/9".into(), ..ClientConfig::default() };
    match Connection::connect_with(&server.url(), config).await {
        Err(ConnectError::Refused { status, body }) => {
            assert_eq!(status, 400);
            assert!(body.contains("hl/9") && body.contains("supports hl/1"), "{body}");
        }
        other => panic!("expected a 400 refusal, got {other:?}"),
    }
    // No subprotocol at all: refused as well.
    let req = server.url().into_client_request().unwrap();
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 400)
        }
        other => panic!("expected a 400 refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn baseline_closes_malformed_connections_with_the_real_servers_codes() {
    let server = baseline();
    // Unknown envelope kind and truncated call header: 4000.
    for msg in [vec![0x7f, 0, 0, 0], vec![0x01, 0]] {
        let (mut ws, selected) = raw(&server, Some("hl/1")).await;
        assert_eq!(selected.as_deref(), Some("hl/1"));
        ws.send(Message::Binary(msg.into())).await.unwrap();
        expect_close(&mut ws, 4000).await;
    }
    // Text: 1003.
    let (mut ws, _) = raw(&server, Some("hl/1")).await;
    ws.send(Message::Text("hello".into())).await.unwrap();
    expect_close(&mut ws, 1003).await;
    // Larger than the 1 MiB message limit: 1009.
    let (mut ws, _) = raw(&server, Some("hl/1")).await;
    ws.send(Message::Binary(vec![1u8; hardlight::protocol::limits::DEFAULT_MAX_MESSAGE_SIZE + 1].into()))
        .await
        .unwrap();
    expect_close(&mut ws, 1009).await;
    // A raw connection first gets LIMITS (1 MiB; flags 0: the baseline does
    // not take deadlines or CANCEL), then FEATURES (3 methods, all
    // enabled), then its call's result envelope.
    let (mut ws, _) = raw(&server, Some("hl/1")).await;
    assert_eq!(
        next_message(&mut ws).await,
        Message::Binary(vec![hardlight::protocol::envelope::KIND_LIMITS, 0x00, 0x00, 0x10, 0x00, 0, 0, 0, 0].into())
    );
    assert_eq!(
        next_message(&mut ws).await,
        Message::Binary(vec![hardlight::protocol::envelope::KIND_FEATURES, 3, 0, 0b111].into())
    );
    let input = hardlight::protocol::wire::encode(&hardlight_bench::BenchAddInput { a: 5, b: 6 }).unwrap();
    let mut msg = Vec::new();
    hardlight::protocol::envelope::encode_call(&mut msg, 77, BenchMethod::Add.id(), &input);
    ws.send(Message::Binary(msg.into())).await.unwrap();
    let Message::Binary(reply) = next_message(&mut ws).await else { panic!("expected a binary reply") };
    assert_eq!(&reply[..2], &[hardlight::protocol::envelope::KIND_RESULT_OK, 77]);
    let mut buf = hardlight::protocol::wire::AlignedBuf::new();
    let sum = <u64 as hardlight::Wire>::decode(hardlight::protocol::wire::align_into(&mut buf, &reply[2..])).unwrap();
    assert_eq!(sum, 11);
}

/// One message, then pipelined messages of sizes around every frame-length
/// encoding (7-bit, 16-bit, 64-bit), must come back unchanged and in order;
/// a ping is answered with its payload.
async fn check_echo(bin: &str) {
    let server = Server::start(bin);
    let (mut ws, selected) = raw(&server, None).await;
    assert_eq!(selected, None, "{bin}");
    let payload: Vec<u8> = (0..64u8).collect();
    ws.send(Message::Binary(payload.clone().into())).await.unwrap();
    match next_message(&mut ws).await {
        Message::Binary(b) => assert_eq!(&b[..], &payload[..], "{bin}"),
        other => panic!("{bin}: {other:?}"),
    }
    let sizes = [0usize, 1, 125, 126, 65_535, 65_536, 200_000];
    for &n in &sizes {
        ws.feed(Message::Binary(vec![n as u8; n].into())).await.unwrap();
    }
    ws.flush().await.unwrap();
    for &n in &sizes {
        match next_message(&mut ws).await {
            Message::Binary(b) => assert_eq!(&b[..], &vec![n as u8; n][..], "{bin}: message of {n} bytes"),
            other => panic!("{bin}: {other:?}"),
        }
    }
    ws.send(Message::Ping(b"are you there".to_vec().into())).await.unwrap();
    let pong = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("a pong in time");
    match pong {
        Some(Ok(Message::Pong(p))) => assert_eq!(&p[..], b"are you there", "{bin}"),
        other => panic!("{bin}: expected a pong, got {other:?}"),
    }
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn tokio_tungstenite_peer_returns_binary_messages_unchanged() {
    check_echo(ECHO_PEERS[0]).await;
}

#[tokio::test]
async fn fastwebsockets_peer_returns_binary_messages_unchanged() {
    check_echo(ECHO_PEERS[1]).await;
}

#[tokio::test]
async fn tokio_websockets_peer_returns_binary_messages_unchanged() {
    check_echo(ECHO_PEERS[2]).await;
}

#[tokio::test]
async fn echo_peers_serve_many_connections_at_once() {
    // 32 connections, each with 50 messages in flight at once: the
    // per-connection tasks must not mix up or lose messages.
    for bin in ECHO_PEERS {
        let server = Server::start(bin);
        let conns = (0..32u8).map(|c| {
            let server = &server;
            async move {
                let (mut ws, _) = raw(server, None).await;
                for i in 0..50u8 {
                    ws.feed(Message::Binary(vec![c, i, 7, 7].into())).await.unwrap();
                }
                ws.flush().await.unwrap();
                for i in 0..50u8 {
                    assert_eq!(next_message(&mut ws).await, Message::Binary(vec![c, i, 7, 7].into()), "{bin}");
                }
            }
        });
        futures::future::join_all(conns).await;
    }
}

#[tokio::test]
async fn echo_servers_select_an_offered_subprotocol() {
    // tokio-websockets' builder has no hook to select one, so it is not in
    // this list (loadgen's raw-echo offers none).
    for bin in [ECHO_PEERS[0], ECHO_PEERS[1]] {
        let server = Server::start(bin);
        let (mut ws, selected) = raw(&server, Some("hl/1")).await;
        assert_eq!(selected.as_deref(), Some("hl/1"), "{bin}");
        ws.send(Message::Binary(vec![9u8; 64].into())).await.unwrap();
        assert_eq!(next_message(&mut ws).await, Message::Binary(vec![9u8; 64].into()), "{bin}");
    }
}

#[test]
fn servers_refuse_a_bad_command_line() {
    for bin in std::iter::once(env!("CARGO_BIN_EXE_baseline-tokio")).chain(ECHO_PEERS) {
        let out = Command::new(bin).args(["--cpu", "0"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bin}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--listen is required"));
    }
}

#[tokio::test]
async fn pinned_server_runs_every_thread_on_its_cpu() {
    let server = Server::start_with(env!("CARGO_BIN_EXE_baseline-tokio"), &["--cpu", "0", "--threads", "2"]);
    let client = BenchClient::new(Connection::connect(&server.url()).await.unwrap());
    assert_eq!(client.add(2, 2).await.unwrap(), 4);
    let tasks = format!("/proc/{}/task", server.child.id());
    let mut threads = 0;
    for task in std::fs::read_dir(&tasks).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let allowed = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap().trim().to_string();
        assert_eq!(allowed, "0", "every thread pinned to CPU 0");
        threads += 1;
    }
    // The main thread and two workers at least.
    assert!(threads >= 3, "{threads} threads");
}
