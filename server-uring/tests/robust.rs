//! Limits, TLS, keepalive and hostile or vanishing peers, over real sockets.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hardlight::client::{ClientConfig, ConnectError, Connection};
use hardlight::server::Limits;
use hardlight::server::TlsConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const UPGRADE: &str = "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: hl/1\r\n";

/// Reads until the peer closes or `limit` passes; returns what arrived.
async fn read_all(tcp: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + limit;
    while let Ok(Ok(n)) = tokio::time::timeout_at(end.into(), tcp.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// A raw connection that completed the upgrade (and skipped the initial announcements).
async fn upgraded(server: &hardlight::server::ServerHandle) -> TcpStream {
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    tcp.write_all(format!("{UPGRADE}\r\n").as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut b).await.unwrap();
        buf.push(b[0]);
    }
    assert!(buf.starts_with(b"HTTP/1.1 101"));
    tcp
}

/// Server frames in `bytes`: (opcode, payload).
fn frames(mut bytes: &[u8]) -> Vec<(hardlight::protocol::frame::Opcode, Vec<u8>)> {
    let mut v = Vec::new();
    while let Ok(Some(h)) =
        hardlight::protocol::frame::parse_header(bytes, hardlight::protocol::frame::Role::Client, usize::MAX)
    {
        let end = h.header_len + h.payload_len as usize;
        if end > bytes.len() {
            break;
        }
        v.push((h.opcode, bytes[h.header_len..end].to_vec()));
        bytes = &bytes[end..];
    }
    v
}

fn close_code(fs: &[(hardlight::protocol::frame::Opcode, Vec<u8>)]) -> Option<u16> {
    fs.iter()
        .find(|(op, _)| *op == hardlight::protocol::frame::Opcode::Close)
        .map(|(_, p)| u16::from_be_bytes([p[0], p[1]]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_with_a_trusted_dev_certificate_and_never_an_untrusted_one() {
    let (tls, pem) = TlsConfig::self_signed(&["localhost", "127.0.0.1"]).unwrap();
    let (server, _) = start(builder().tls(tls));
    let url = format!("wss://localhost:{}", server.local_addr().port());
    let cfg = ClientConfig::default().trust_pem(&pem).unwrap();
    let c = ProbeClient::new(Connection::connect_with(&url, cfg).await.unwrap());
    assert_eq!(c.increment(3).await.unwrap(), 3);
    let (data, _) = (vec![9u8; 100_000], ());
    assert_eq!(c.echo(data.clone()).await.unwrap(), data, "large message over TLS");
    // Without being told to trust the certificate, the client refuses it.
    match Connection::connect(&url).await {
        Err(ConnectError::Tls(e)) => {
            assert!(e.to_lowercase().contains("certificate") || e.contains("UnknownIssuer"), "{e}")
        }
        other => panic!("an untrusted certificate must be refused: {other:?}"),
    }
    // Plain WebSocket against the TLS port fails too, and the server counts it.
    assert!(Connection::connect(&format!("ws://{}", server.local_addr())).await.is_err());
    let t0 = Instant::now();
    while server.stats().tls_failures.get() < 2 && t0.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(server.stats().tls_failures.get() >= 2);
    assert_eq!(c.get().await.unwrap(), 3, "the trusted connection is unaffected");
}

/// A client that fails the TLS handshake learns why: the server sends
/// rustls' fatal alert before it closes, on both backends, instead of
/// just dropping the connection (which a TLS client reports as a reset or
/// an unexpected end, with no reason).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_tls_handshake_gets_an_alert_before_the_close() {
    let (tls, _) = TlsConfig::self_signed(&["localhost"]).unwrap();
    let (server, _) = start(builder().tls(tls));
    // Plain HTTP to the TLS port: not a TLS record at all.
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    tcp.write_all(format!("{UPGRADE}\r\n").as_bytes()).await.unwrap();
    let got = read_all(&mut tcp, Duration::from_secs(5)).await;
    // An alert record: content type 21, version 3.x, a 2-byte length, then
    // level 2 (fatal) and a description.
    assert!(got.len() >= 7, "expected an alert record, got {got:?}");
    assert_eq!((got[0], got[1]), (21, 3), "{got:?}");
    assert_eq!(u16::from_be_bytes([got[3], got[4]]), 2, "{got:?}");
    assert_eq!(got[5], 2, "a fatal alert: {got:?}");
    // A ClientHello that offers nothing the server supports (TLS 1.2, one
    // unknown cipher suite): handshake_failure (40) or another fatal
    // alert, not silence.
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    tcp.write_all(&client_hello_with_no_common_suite()).await.unwrap();
    let got = read_all(&mut tcp, Duration::from_secs(5)).await;
    assert!(got.len() >= 7 && got[0] == 21 && got[5] == 2, "expected a fatal alert, got {got:?}");
    let t0 = Instant::now();
    while server.stats().tls_failures.get() < 2 && t0.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.stats().tls_failures.get(), 2);
}

/// A well-formed TLS 1.2 ClientHello whose only cipher suite is one no
/// server implements (0x0a0a, a GREASE value).
fn client_hello_with_no_common_suite() -> Vec<u8> {
    let mut hello = Vec::new();
    hello.extend_from_slice(&[3, 3]); // client_version TLS 1.2
    hello.extend_from_slice(&[7; 32]); // random
    hello.push(0); // session id
    hello.extend_from_slice(&[0, 2, 0x0a, 0x0a]); // cipher suites
    hello.extend_from_slice(&[1, 0]); // compression: null
    hello.extend_from_slice(&[0, 0]); // no extensions
    let mut handshake = vec![1, 0, 0, hello.len() as u8];
    handshake.extend_from_slice(&hello);
    let mut record = vec![22, 3, 1, 0, handshake.len() as u8];
    record.extend_from_slice(&handshake);
    record
}

/// Limits with keepalive and idle timeout pushed out of a test's reach, so
/// that no timer (a ping waking a stalled connection) can be what makes
/// progress.
fn timers_out_of_reach() -> Limits {
    Limits {
        keepalive_interval: Duration::from_secs(600),
        idle_timeout: Duration::from_secs(1200),
        ..Limits::default()
    }
}
/// `calls` calls in flight on one connection (each sleeping 0-6 ms before
/// echoing its number) while a 1 MB message (bytes offset by `seed`) goes
/// each way: every answer comes back right.
async fn pipelined_calls_and_a_megabyte(c: &ProbeClient<Connection>, calls: u64, seed: u32, what: &str) {
    let calls: Vec<_> = (0..calls)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { (i, c.sleep_echo((i % 7) as u32, i).await.unwrap()) })
        })
        .collect();
    let big: Vec<u8> = (0..1_000_000u32).map(|i| ((i + seed) % 251) as u8).collect();
    assert_eq!(c.echo(big.clone()).await.unwrap(), big, "1 MB each way {what}");
    for call in calls {
        let (i, got) = call.await.unwrap();
        assert_eq!(got, i);
    }
}

/// TLS under load: 200 calls in flight on one connection, megabyte
/// messages both ways (more plaintext than the connection's read buffer
/// holds, so the server must hold records back and resume), a client that
/// closes, and one that vanishes mid-record: every answer is right and no
/// connection is left open. Nothing may wait for a timer to make progress:
/// keepalive pings (which would wake a stalled connection) are pushed out
/// of the test's reach and every call must finish within 10 s. (On the
/// ring, plaintext moved into the core while the next receive was armed
/// once sat unparsed until the 20 s keepalive woke the connection.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_pipelined_calls_large_messages_and_closes_leave_nothing_open() {
    let (tls, pem) = TlsConfig::self_signed(&["localhost"]).unwrap();
    let limits = timers_out_of_reach();
    let (server, _) = start(builder().tls(tls).limits(limits));
    let url = format!("wss://localhost:{}", server.local_addr().port());
    let cfg = ClientConfig::default().trust_pem(&pem).unwrap().call_timeout(Duration::from_secs(10));
    let conn = Connection::connect_with(&url, cfg.clone()).await.unwrap();
    pipelined_calls_and_a_megabyte(&ProbeClient::new(conn.clone()), 200, 0, "over TLS").await;
    conn.close();
    wait_open(&server, 0).await;

    // A client that sends half a TLS record and vanishes.
    let second = ProbeClient::new(Connection::connect_with(&url, cfg).await.unwrap());
    assert_eq!(second.increment(1).await.unwrap(), 1);
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]).await.unwrap();
    drop(tcp);
    wait_open(&server, 1).await;
    assert_eq!(second.get().await.unwrap(), 1, "the other connection is unaffected");
}

/// The same traffic on plain sockets, several connections at once: on the
/// ring each arrives through a multishot receive in 4 KiB pool buffers, so
/// a megabyte outruns the core's read buffer and waits in the connection's
/// spill while its receive is cancelled and armed again. Every byte must
/// arrive in order, with keepalive out of reach (no timer may be what
/// makes progress).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_pipelined_calls_and_megabyte_messages_on_four_connections_arrive_whole() {
    let limits = timers_out_of_reach();
    let (server, _) = start(builder().limits(limits));
    let url = format!("ws://127.0.0.1:{}", server.local_addr().port());
    let cfg = ClientConfig::default().call_timeout(Duration::from_secs(10));
    let mut tasks = Vec::new();
    for k in 0..4u32 {
        let conn = Connection::connect_with(&url, cfg.clone()).await.unwrap();
        tasks.push(tokio::spawn(async move {
            let on = format!("on connection {k}");
            pipelined_calls_and_a_megabyte(&ProbeClient::new(conn.clone()), 100, k, &on).await;
            conn.close();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    wait_open(&server, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_or_overlong_upgrade_requests_get_431() {
    let (server, _) = start(builder());
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    let big = format!("{UPGRADE}X-Big: {}\r\n\r\n", "a".repeat(9000));
    let _ = tcp.write_all(big.as_bytes()).await;
    let reply = String::from_utf8_lossy(&read_all(&mut tcp, Duration::from_secs(5)).await).to_string();
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    let many: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
    tcp.write_all(format!("{UPGRADE}{many}\r\n").as_bytes()).await.unwrap();
    let reply = String::from_utf8_lossy(&read_all(&mut tcp, Duration::from_secs(5)).await).to_string();
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slowloris_handshakes_time_out_while_clients_are_served() {
    let limits = Limits { handshake_timeout: Duration::from_millis(500), ..Limits::default() };
    let (server, _) = start(builder().limits(limits));
    let client = ProbeClient::new(Connection::connect(&url(&server)).await.unwrap());
    // 200 half-open handshakes: some silent, some dribbling a byte every 100 ms.
    let mut lorises = Vec::new();
    for i in 0..200 {
        let addr = server.local_addr();
        lorises.push(tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            let start = Instant::now();
            if i % 2 == 0 {
                for b in b"GET / HTTP/1.1\r\nX-Slow: ".iter().chain(std::iter::repeat_n(&b'a', 50)) {
                    if tcp.write_all(&[*b]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            let rest = read_all(&mut tcp, Duration::from_secs(10)).await;
            (start.elapsed(), rest)
        }));
    }
    // Established clients keep being served meanwhile.
    for i in 0..200 {
        assert_eq!(client.increment(1).await.unwrap(), i + 1);
    }
    for l in lorises {
        let (elapsed, rest) = l.await.unwrap();
        assert!(rest.is_empty(), "no upgrade for an unfinished request");
        assert!(
            elapsed < Duration::from_secs(8),
            "closed by the handshake timeout, not by the test's limit: {elapsed:?}"
        );
    }
    assert!(server.stats().handshake_timeouts.get() >= 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_shard_are_capped() {
    let (server, _) = start(builder().max_connections_per_shard(5));
    let mut conns = Vec::new();
    for _ in 0..5 {
        conns.push(Connection::connect(&url(&server)).await.unwrap());
    }
    assert!(Connection::connect(&url(&server)).await.is_err(), "the 6th connection is refused");
    assert_eq!(server.stats().over_capacity.get(), 1);
    drop(conns.pop());
    let t0 = Instant::now();
    loop {
        if Connection::connect(&url(&server)).await.is_ok() {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "a freed slot is reusable");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_pings_keep_live_clients_and_idle_peers_are_closed_4002() {
    let limits = Limits {
        keepalive_interval: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let (server, _) = start(builder().limits(limits));
    // The real client answers pings, so it survives long silences.
    let live = ProbeClient::new(Connection::connect(&url(&server)).await.unwrap());
    // A raw peer that never sends a byte after the upgrade.
    let mut silent = upgraded(&server).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(live.increment(1).await.unwrap(), 1, "pongs count as activity");
    let fs = frames(&read_all(&mut silent, Duration::from_secs(5)).await);
    assert!(fs.iter().any(|(op, _)| *op == hardlight::protocol::frame::Opcode::Ping), "pinged before being dropped");
    assert_eq!(close_code(&fs), Some(4002));
    assert!(server.stats().idle_closed.get() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_allow_list_refuses_other_browsers() {
    let (server, _) = start(builder().allowed_origins(["https://app.example"]));
    let bad = ClientConfig::default().header("origin", "https://evil.example");
    match Connection::connect_with(&url(&server), bad).await {
        Err(ConnectError::Refused { status: 403, body }) => assert!(body.contains("origin"), "{body}"),
        other => panic!("{other:?}"),
    }
    let good = ClientConfig::default().header("origin", "https://app.example");
    assert!(Connection::connect_with(&url(&server), good).await.is_ok());
    assert!(Connection::connect(&url(&server)).await.is_ok(), "non-browser clients send no Origin");
}

async fn wait_open(server: &hardlight::server::ServerHandle, n: u64) {
    let t0 = Instant::now();
    while server.stats().open.get() != n {
        assert!(t0.elapsed() < Duration::from_secs(10), "open connections stuck at {}", server.stats().open.get());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_vanishing_mid_handshake_mid_message_and_mid_call_leave_nothing_behind() {
    let (server, _) = start(builder().unpinned(2));
    let steady = ProbeClient::new(Connection::connect(&url(&server)).await.unwrap());
    wait_open(&server, 1).await;
    for round in 0..20 {
        // Mid-handshake.
        let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
        tcp.write_all(&UPGRADE.as_bytes()[..40]).await.unwrap();
        drop(tcp);
        // Mid-message: a frame header promising 1000 bytes, then 10, then gone.
        let mut tcp = upgraded(&server).await;
        tcp.write_all(&[0x82, 0xFE, 0x03, 0xE8, 1, 2, 3, 4]).await.unwrap();
        tcp.write_all(&[0u8; 10]).await.unwrap();
        drop(tcp);
        // Mid-call: a call that sleeps 200 ms, and the client leaves at once.
        let mut tcp = upgraded(&server).await;
        let input = hardlight::protocol::wire::encode(&ProbeSleepEchoInput { ms: 200, value: round }).unwrap();
        let mut msg = Vec::new();
        hardlight::protocol::envelope::encode_call(&mut msg, 1, ProbeMethod::SleepEcho.id(), &input);
        let mut frame = Vec::new();
        hardlight::protocol::frame::write_masked_frame(
            &mut frame,
            true,
            hardlight::protocol::frame::Opcode::Binary,
            &msg,
            [7, 7, 7, 7],
        );
        tcp.write_all(&frame).await.unwrap();
        drop(tcp);
    }
    wait_open(&server, 1).await;
    assert_eq!(steady.increment(1).await.unwrap(), 1, "shards keep serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_load_loses_no_acknowledged_call() {
    let (server, value) = start(builder().unpinned(2).shutdown_grace(Duration::from_secs(5)));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let c = ProbeClient::new(Connection::connect(&url(&server)).await.unwrap());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            loop {
                match c.increment(1).await {
                    Ok(v) => acked.push(v),
                    Err(hardlight::CallError::Disconnected(_))
                    | Err(hardlight::CallError::Rejected { code: hardlight::CallErrorCode::ShuttingDown, .. }) => {
                        return acked
                    }
                    Err(e) => panic!("unexpected error during shutdown: {e}"),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::spawn_blocking(move || server.shutdown()).await.unwrap();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let final_value = value.load(std::sync::atomic::Ordering::SeqCst);
    assert!(!all.is_empty());
    let acked = all.len() as u64;
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len() as u64, acked, "every acknowledged value is distinct: no reply was duplicated");
    assert!(*all.last().unwrap() <= final_value, "an acknowledged increment is in the server's state");
    assert!(acked <= final_value);
}

/// The server announces its message size limit; the client refuses an
/// oversized call locally, and the connection stays open (it used to be
/// sent and close the whole connection with 1009).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_call_is_refused_by_the_client_and_the_connection_stays_open() {
    let limits = Limits { max_message_size: 4096, ..Limits::default() };
    let (server, _) = start(builder().limits(limits));
    let conn = Connection::connect(&url(&server)).await.unwrap();
    assert_eq!(conn.server_limits().map(|l| l.max_message_size), Some(4096));
    let client = ProbeClient::new(conn.clone());
    match client.echo(vec![7u8; 5000]).await {
        Err(hardlight::CallError::TooLarge { size, limit: 4096 }) => assert!(size > 5000, "{size}"),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(!conn.is_closed(), "the connection stays open");
    assert_eq!(client.echo(vec![7u8; 3000]).await.unwrap().len(), 3000, "calls under the limit still work");
    assert_eq!(client.increment(2).await.unwrap(), 2);
}
