//! Failover with a broker: a resuming client moved from one server to
//! another (their histories are per server) is told of the gap, never left
//! with a silent loss, and the topic's events then cross to it through the
//! broker. Needs a real Redis: `HARDLIGHT_TEST_REDIS`, else a
//! `redis-server` child on a free port.

mod common;
#[path = "support/feed.rs"]
mod feed;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use feed::{emit_ticks, serve_feed, FeedClient, Proxy, Tick};
use hardlight::client::{Backoff, ClientConfig, Connection, Status};
use hardlight::server::{BrokerConfig, ServerHandle};

/// A redis-server child, killed on drop (or none when the environment names one).
struct Redis {
    url: String,
    child: Option<Child>,
}

impl Redis {
    fn start() -> Self {
        if let Ok(url) = std::env::var("HARDLIGHT_TEST_REDIS") {
            return Self { url, child: None };
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (apt-get install redis-server) or HARDLIGHT_TEST_REDIS set");
        let end = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { url: format!("redis://127.0.0.1:{port}"), child: Some(child) }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn bridged(redis: &Redis, prefix: &str) -> ServerHandle {
    serve_feed(
        common::builder().broker_config(BrokerConfig::new(&redis.url).channel_prefix(prefix)),
        1,
        Default::default(),
    )
}

async fn tick(stream: &mut hardlight::client::EventStream<Tick>) -> u64 {
    tokio::time::timeout(Duration::from_secs(5), stream.recv()).await.expect("tick in time").unwrap().n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_moved_to_another_bridged_server_gets_a_gap_notice_then_the_topic() {
    let redis = Redis::start();
    let prefix = format!("hl-failover-{}:", std::process::id());
    let (a, b) = (bridged(&redis, &prefix), bridged(&redis, &prefix));
    let proxy = Proxy::start(a.local_addr()).await;
    let backoff = Backoff { initial: Duration::from_millis(5), max: Duration::from_millis(100), ..Backoff::default() };
    let config = ClientConfig::default().reconnect(backoff).on_connect(|conn: Connection| async move {
        let c = FeedClient::new(conn);
        c.login("secret".into()).await.map_err(|e| e.to_string())?;
        c.follow("t".into()).await.map_err(|e| e.to_string())
    });
    let conn = Connection::connect_with(&proxy.url(), config).await.unwrap();
    let (mut ticks, mut gaps) = (conn.events::<Tick>(), conn.gaps());
    emit_ticks(&a, 0, 5, Duration::ZERO);
    for n in 0..5 {
        assert_eq!(tick(&mut ticks).await, n);
    }

    // Server A goes away for this client: it lands on B.
    proxy.retarget(b.local_addr());
    proxy.cut();
    let mut status = conn.watch_status();
    tokio::time::timeout(Duration::from_secs(5), status.wait_for(|s| matches!(s, Status::Reconnecting { .. })))
        .await
        .unwrap()
        .unwrap();
    emit_ticks(&a, 5, 8, Duration::ZERO); // B has no subscriber of t yet: these never reach it
    tokio::time::timeout(Duration::from_secs(5), status.wait_for(|s| *s == Status::Connected)).await.unwrap().unwrap();
    let gap = tokio::time::timeout(Duration::from_secs(5), gaps.recv()).await.unwrap().expect("a gap notice");
    assert_eq!((gap.topic.as_deref(), gap.missed), (Some("t"), None), "another server's history: count unknown");

    // Events emitted on A now cross to the client on B through the broker.
    let end = Instant::now() + Duration::from_secs(10);
    let mut n = 100;
    let got = loop {
        emit_ticks(&a, n, n + 1, Duration::ZERO);
        if let Ok(Ok(t)) = tokio::time::timeout(Duration::from_millis(100), ticks.recv()).await {
            break t.n;
        }
        assert!(Instant::now() < end, "A's events never crossed to B");
        n += 1;
    };
    assert!(got >= 100, "no tick from before the move arrives late: {got}");
}
