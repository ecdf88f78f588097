//! The Prometheus endpoint (`ServerBuilder::metrics_listen`): a real server
//! and the real client on 127.0.0.1, scraped over plain HTTP while calls
//! run; the counts after known calls; the exposition's shape; and the
//! endpoint's answers to requests it does not serve.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use hardlight::client::{ClientConfig, ConnectError, Connection};
use hardlight::{CallError, CallErrorCode};

/// Sends `request` raw and returns (status, body).
fn http(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may answer (and close) before all of an oversized request is sent.
    let _ = s.write_all(request);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8(resp).expect("UTF-8 response");
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn scrape(addr: SocketAddr) -> Exposition {
    let (status, body) = http(addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(status, 200, "{body}");
    Exposition::parse(&body)
}

/// A parsed exposition: samples by `name{labels}` as written, and each
/// family's type.
struct Exposition {
    samples: HashMap<String, f64>,
    types: HashMap<String, String>,
}

impl Exposition {
    /// Parses the text format, checking that every sample belongs to a
    /// family announced with HELP and TYPE before it.
    fn parse(text: &str) -> Self {
        let (mut samples, mut types, mut helps) = (HashMap::new(), HashMap::new(), Vec::new());
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                helps.push(rest.split(' ').next().unwrap().to_string());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert_eq!(helps.last().map(String::as_str), Some(name), "TYPE {name} without HELP just before");
                assert!(types.insert(name.to_string(), kind.to_string()).is_none(), "{name} announced twice");
            } else {
                let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample {line:?}"));
                let name = key.split('{').next().unwrap();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|f| types.get(*f).is_some_and(|t| t == "histogram")))
                    .unwrap_or(name);
                assert!(types.contains_key(family), "sample {name} before its TYPE");
                assert!(name.starts_with("hardlight_"), "{name}");
                let v: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
                assert!(samples.insert(key.to_string(), v).is_none(), "{key} twice");
            }
        }
        Self { samples, types }
    }

    fn get(&self, key: &str) -> f64 {
        *self.samples.get(key).unwrap_or_else(|| panic!("no sample {key}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_while_calls_run_counts_them_by_method_and_outcome() {
    let (server, _) = start(builder().metrics_listen("127.0.0.1:0".parse().unwrap()));
    let maddr = server.metrics_addr().expect("metrics on");
    let client = ProbeClient::new(Connection::connect(&url(&server)).await.unwrap());

    // Calls keep running on another connection while we scrape.
    let busy = ProbeClient::new(Connection::connect(&url(&server)).await.unwrap());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let background = tokio::spawn(async move {
        let mut n = 0u64;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            busy.get().await.unwrap();
            n += 1;
        }
        n
    });
    for _ in 0..5 {
        let e = tokio::task::spawn_blocking(move || scrape(maddr)).await.unwrap();
        assert!(e.get("hardlight_connections_open") >= 2.0);
    }

    for i in 0..10 {
        client.increment(i).await.unwrap();
    }
    assert_eq!(client.divide(1, 0).await.unwrap(), Err(MathError::DivByZero));
    assert!(matches!(client.boom().await, Err(CallError::Rejected { code: CallErrorCode::HandlerPanicked, .. })));
    let unknown = client.caller().call(999, &[]).await;
    assert!(matches!(unknown, Err(CallError::Rejected { code: CallErrorCode::UnknownMethod, .. })), "{unknown:?}");
    let refused = Connection::connect_with(&url(&server), ClientConfig::default().header("x-refuse", "1")).await;
    assert!(matches!(refused, Err(ConnectError::Refused { status: 403, .. })));

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let gets = background.await.unwrap();
    let e = tokio::task::spawn_blocking(move || scrape(maddr)).await.unwrap();

    assert_eq!(e.get(r#"hardlight_calls_total{method="increment"}"#), 10.0);
    assert_eq!(e.get(r#"hardlight_calls_finished_total{method="increment",outcome="ok"}"#), 10.0);
    assert_eq!(e.get(r#"hardlight_calls_total{method="get"}"#), gets as f64);
    assert_eq!(e.get(r#"hardlight_calls_finished_total{method="divide",outcome="app_error"}"#), 1.0);
    assert_eq!(e.get(r#"hardlight_calls_finished_total{method="boom",outcome="handler_panicked"}"#), 1.0);
    assert_eq!(e.get(r#"hardlight_calls_total{method="unknown"}"#), 1.0);
    assert_eq!(e.get(r#"hardlight_calls_finished_total{method="unknown",outcome="unknown_method"}"#), 1.0);
    assert_eq!(e.get(r#"hardlight_calls_total{method="echo"}"#), 0.0);
    // Every finished call is in its method's histogram, +Inf equal to _count.
    for (m, n) in [("increment", 10.0), ("divide", 1.0), ("boom", 1.0), ("get", gets as f64)] {
        assert_eq!(e.get(&format!(r#"hardlight_call_duration_seconds_bucket{{method="{m}",le="+Inf"}}"#)), n, "{m}");
        assert_eq!(e.get(&format!(r#"hardlight_call_duration_seconds_count{{method="{m}"}}"#)), n, "{m}");
        let le_5s = e.get(&format!(r#"hardlight_call_duration_seconds_bucket{{method="{m}",le="5"}}"#));
        assert_eq!(le_5s, n, "{m}: no call took 5 s");
    }
    assert_eq!(e.types["hardlight_call_duration_seconds"], "histogram");
    assert_eq!(e.types["hardlight_calls_total"], "counter");
    assert_eq!(e.types["hardlight_connections_open"], "gauge");
    assert_eq!(e.get("hardlight_connections_upgraded_total"), 2.0);
    assert_eq!(e.get("hardlight_connections_accepted_total"), 3.0);
    assert_eq!(e.get(r#"hardlight_connections_refused_total{reason="factory"}"#), 1.0);
    assert_eq!(e.get(r#"hardlight_connections_refused_by_factory_total{status="403"}"#), 1.0);
    assert_eq!(e.get(r#"hardlight_connections_refused_total{reason="origin"}"#), 0.0);
    assert!(e.get("hardlight_received_bytes_total") > 0.0);
    assert!(e.get("hardlight_sent_bytes_total") > 0.0);
    assert_eq!(e.get("hardlight_events_emitted_total"), 0.0);
    assert_eq!(e.get("hardlight_shards"), 1.0);

    // Closes by the peer (both clients are gone now: `busy` went with its
    // task) are counted once the server has seen them.
    drop(client);
    for _ in 0..200 {
        let e = tokio::task::spawn_blocking(move || scrape(maddr)).await.unwrap();
        if e.get("hardlight_connections_open") == 0.0 {
            let closed = e.get(r#"hardlight_connections_closed_total{by="peer",code="any"}"#)
                + e.get(r#"hardlight_connections_closed_total{by="eof",code="none"}"#);
            assert_eq!(closed, 2.0);
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the closed connection was never counted");
}

#[test]
fn requests_the_endpoint_does_not_serve_get_typed_answers() {
    let (server, _) = start(builder().metrics_listen("127.0.0.1:0".parse().unwrap()));
    let addr = server.metrics_addr().unwrap();
    assert_eq!(http(addr, b"GET /other HTTP/1.1\r\n\r\n").0, 404);
    assert_eq!(http(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").0, 405);
    assert_eq!(http(addr, b"\x01\x02 nonsense\r\n\r\n").0, 400);
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(hardlight::server::DEFAULT_METRICS_REQUEST_LIMIT)
    );
    assert_eq!(http(addr, huge.as_bytes()).0, 431);
    // A client that connects and sends nothing does not stop the next
    // scrape for longer than the endpoint's I/O timeout.
    let _idle = TcpStream::connect(addr).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(http(addr, b"GET /metrics?x=1 HTTP/1.1\r\n\r\n").0, 200);
    assert!(started.elapsed() < hardlight::server::DEFAULT_METRICS_IO_TIMEOUT + Duration::from_secs(5));
}

#[test]
fn without_metrics_listen_there_is_no_endpoint() {
    let (server, _) = start(builder());
    assert_eq!(server.metrics_addr(), None);
}
