//! Failover with a broker: the broker numbers and keeps each topic's events
//! (a capped Redis stream), so a resuming client moved from one server to
//! another resumes there without loss or duplicates; where Redis no longer
//! has what it missed, it gets a gap notice, never silence. Needs a real
//! Redis: `HARDLIGHT_TEST_REDIS`, else a `redis-server` child on a free
//! port (tests that kill Redis always start their own child).

mod common;
#[path = "support/feed.rs"]
mod feed;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::time::{Duration, Instant};

use feed::{emit_ticks, serve_feed, FeedClient, FeedMethod, Proxy, Session, Tick};
use hardlight::client::{Backoff, ClientConfig, Connection, EventStream, GapNotice, Status};
use hardlight::server::{BrokerConfig, HistoryLimits, ServerBuilder, ServerHandle};
use redis_server::Redis;
use tokio::sync::mpsc::UnboundedReceiver;

const WAIT: Duration = Duration::from_secs(10);

fn bridged_with(url: &str, prefix: &str, builder: ServerBuilder) -> ServerHandle {
    serve_feed(builder.broker_config(BrokerConfig::new(url).channel_prefix(prefix)), 1, Default::default())
}

fn bridged(redis: &Redis, prefix: &str) -> ServerHandle {
    bridged_with(&redis.url, prefix, common::builder())
}

fn prefix(test: &str) -> String {
    format!("hl-failover-{}-{test}:", std::process::id())
}

/// A resuming client that logs in and follows "t" on every (re)connection.
async fn follower(url: &str) -> (Connection, EventStream<Tick>, UnboundedReceiver<GapNotice>) {
    let backoff = Backoff { initial: Duration::from_millis(5), max: Duration::from_millis(100), ..Backoff::default() };
    let config = ClientConfig::default().reconnect(backoff).on_connect(|conn: Connection| async move {
        let c = FeedClient::new(conn);
        c.login("secret".into()).await.map_err(|e| e.to_string())?;
        c.follow("t".into()).await.map_err(|e| e.to_string())
    });
    let conn = Connection::connect_with(url, config).await.unwrap();
    let (ticks, gaps) = (conn.events::<Tick>(), conn.gaps());
    (conn, ticks, gaps)
}

async fn tick(stream: &mut EventStream<Tick>) -> u64 {
    tokio::time::timeout(WAIT, stream.recv()).await.expect("tick in time").unwrap().n
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < end, "timed out after {WAIT:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn published(s: &ServerHandle) -> u64 {
    s.broker_stats().expect("bridged").published.get()
}

/// Waits until the client is connected again after `cut`.
async fn reconnected(conn: &Connection) {
    let mut status = conn.watch_status();
    tokio::time::timeout(WAIT, status.wait_for(|s| *s == Status::Connected)).await.unwrap().unwrap();
}

async fn reconnecting(conn: &Connection) {
    let mut status = conn.watch_status();
    tokio::time::timeout(WAIT, status.wait_for(|s| matches!(s, Status::Reconnecting { .. }))).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_moved_to_another_bridged_server_while_events_flow_resumes_there_once_in_order_without_a_gap() {
    let redis = Redis::start();
    let prefix = prefix("move");
    let (a, b) = (bridged(&redis, &prefix), bridged(&redis, &prefix));
    let proxy = Proxy::start(a.local_addr()).await;
    let (conn, mut ticks, mut gaps) = follower(&proxy.url()).await;
    emit_ticks(&a, 0, 5, Duration::ZERO);
    for n in 0..5 {
        assert_eq!(tick(&mut ticks).await, n);
    }

    // Events keep flowing from A while the client is moved to B, which had
    // no subscriber of "t" (so none of them passed through B).
    let emitter = std::thread::spawn({
        let a_emitter = a.emitter();
        move || {
            for n in 5..60 {
                while a_emitter.to_topic("t", &Tick { n }).is_err() {
                    std::thread::sleep(Duration::from_micros(200));
                }
                std::thread::sleep(Duration::from_millis(3));
            }
        }
    });
    std::thread::sleep(Duration::from_millis(30));
    proxy.retarget(b.local_addr());
    proxy.cut();
    reconnecting(&conn).await;
    reconnected(&conn).await;
    for n in 5..60 {
        assert_eq!(tick(&mut ticks).await, n, "every event once, in order, across the move");
    }
    emitter.join().unwrap();
    emit_ticks(&b, 60, 63, Duration::ZERO);
    for n in 60..63 {
        assert_eq!(tick(&mut ticks).await, n, "and B's own events after them");
    }
    assert!(ticks.try_recv().is_none(), "no duplicates");
    assert!(gaps.try_recv().is_err(), "nothing was lost: no gap notice");
    assert_eq!(conn.gaps_reported(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_away_longer_than_the_broker_keeps_gets_a_counted_gap_then_the_rest() {
    let redis = Redis::start();
    let prefix = prefix("trimmed");
    // The broker keeps the last 5 events of a topic (the history bound).
    let small = || common::builder().history_limits(HistoryLimits { max_events: 5, ..HistoryLimits::default() });
    let (a, b) = (bridged_with(&redis.url, &prefix, small()), bridged_with(&redis.url, &prefix, small()));
    let proxy = Proxy::start(a.local_addr()).await;
    let (conn, mut ticks, mut gaps) = follower(&proxy.url()).await;
    emit_ticks(&a, 0, 5, Duration::ZERO);
    for n in 0..5 {
        assert_eq!(tick(&mut ticks).await, n);
    }
    // Away: the proxy refuses it while A emits 16 more (offsets 6..=21).
    send_away(&proxy, &b, &conn).await;
    emit_ticks(&a, 5, 21, Duration::ZERO);
    wait_for("A's events to reach the broker", || published(&a) == 21).await;
    let_back(&proxy, &conn).await;

    let gap = tokio::time::timeout(WAIT, gaps.recv()).await.unwrap().expect("a gap notice");
    // Offsets 6..=16 (ticks 5..=15) were trimmed; the broker keeps 17..=21.
    assert_eq!((gap.topic.as_deref(), gap.missed), (Some("t"), Some(11)), "counted: the epoch is the client's");
    for n in 16..21 {
        assert_eq!(tick(&mut ticks).await, n, "then what the broker kept, in order");
    }
    emit_ticks(&a, 21, 23, Duration::ZERO);
    for n in 21..23 {
        assert_eq!(tick(&mut ticks).await, n, "then live events");
    }
    assert!(gaps.try_recv().is_err(), "one notice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_without_persistence_while_a_client_is_away_is_a_gap_of_unknown_size_then_live_events() {
    let mut redis = Redis::child();
    let prefix = prefix("redis-restart");
    let (a, b) = (bridged(&redis, &prefix), bridged(&redis, &prefix));
    let proxy = Proxy::start(a.local_addr()).await;
    let (conn, mut ticks, mut gaps) = follower(&proxy.url()).await;
    emit_ticks(&a, 0, 5, Duration::ZERO);
    for n in 0..5 {
        assert_eq!(tick(&mut ticks).await, n);
    }
    send_away(&proxy, &b, &conn).await;
    // Missed while away, then lost with Redis.
    emit_ticks(&a, 5, 9, Duration::ZERO);
    wait_for("A's events to reach the broker", || published(&a) == 9).await;
    redis.kill();
    redis.restart();
    let bridged_again =
        |s: &ServerHandle| s.broker_stats().is_some_and(|st| st.is_connected() && st.reconnects.get() == 1);
    wait_for("both bridges to reconnect", || bridged_again(&a) && bridged_again(&b)).await;
    emit_ticks(&a, 100, 103, Duration::ZERO);
    wait_for("A's new events to reach the broker", || published(&a) == 12).await;
    let_back(&proxy, &conn).await;

    let gap = tokio::time::timeout(WAIT, gaps.recv()).await.unwrap().expect("a gap notice, never silence");
    assert_eq!((gap.topic.as_deref(), gap.missed), (Some("t"), None), "Redis lost the count too");
    for n in 100..103 {
        assert_eq!(tick(&mut ticks).await, n, "then the topic's new life, in order");
    }
    emit_ticks(&a, 103, 105, Duration::ZERO);
    for n in 103..105 {
        assert_eq!(tick(&mut ticks).await, n, "then live events");
    }
    assert!(gaps.try_recv().is_err(), "one notice");
}

/// The client is cut from its server and refused while away; when let
/// back (`let_back`) it lands on `to`.
async fn send_away(proxy: &Proxy, to: &ServerHandle, conn: &Connection) {
    proxy.down.store(true, std::sync::atomic::Ordering::SeqCst);
    proxy.retarget(to.local_addr());
    proxy.cut();
    reconnecting(conn).await;
}

/// Lets the client reconnect and waits until it has.
async fn let_back(proxy: &Proxy, conn: &Connection) {
    proxy.down.store(false, std::sync::atomic::Ordering::SeqCst);
    reconnected(conn).await;
}

/// Server A reaches Redis through a proxy the test cuts; server B
/// directly; both bridged with one prefix.
struct LinkCut {
    _redis: Redis,
    link: Proxy,
    a: ServerHandle,
    b: ServerHandle,
}

impl LinkCut {
    async fn start(test: &str) -> Self {
        let redis = Redis::start();
        let prefix = prefix(test);
        let redis_addr: std::net::SocketAddr = redis.url.trim_start_matches("redis://").parse().unwrap();
        let link = Proxy::start(redis_addr).await;
        let fast = BrokerConfig::new(format!("redis://{}", link.addr))
            .channel_prefix(&prefix)
            .backoff(Duration::from_millis(20), Duration::from_millis(50));
        let a = serve_feed(common::builder().broker_config(fast), 1, Default::default());
        let b = bridged(&redis, &prefix);
        Self { _redis: redis, link, a, b }
    }

    /// Waits until A's bridge subscribed its one followed topic.
    async fn subscribed(&self) {
        let s = self.a.broker_stats().unwrap();
        wait_for("A to subscribe", || s.subscribed.get() == 1).await;
    }

    /// Cuts A's link and waits until A knows.
    async fn cut(&self) {
        self.link.down.store(true, std::sync::atomic::Ordering::SeqCst);
        self.link.cut();
        let s = self.a.broker_stats().unwrap();
        wait_for("A to lose its broker link", || !s.is_connected()).await;
    }

    /// Restores A's link and waits until A reconnected.
    async fn restore(&self) {
        self.link.down.store(false, std::sync::atomic::Ordering::SeqCst);
        let s = self.a.broker_stats().unwrap();
        wait_for("A to reconnect", || s.is_connected() && s.reconnects.get() >= 1).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_own_redis_link_was_cut_gets_what_others_published_meanwhile_in_order() {
    let cut = LinkCut::start("link-cut").await;
    let (a, b) = (&cut.a, &cut.b);
    let (conn, mut ticks, mut gaps) = follower(&format!("ws://{}", a.local_addr())).await;
    cut.subscribed().await;
    emit_ticks(b, 0, 5, Duration::ZERO);
    for n in 0..5 {
        assert_eq!(tick(&mut ticks).await, n);
    }

    cut.cut().await;
    emit_ticks(b, 5, 25, Duration::ZERO);
    wait_for("B's events to reach the broker", || published(b) == 25).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(ticks.try_recv().is_none(), "nothing reaches A without its link");
    cut.restore().await;

    for n in 5..25 {
        assert_eq!(tick(&mut ticks).await, n, "what B published meanwhile, in order, once");
    }
    emit_ticks(b, 25, 28, Duration::ZERO);
    for n in 25..28 {
        assert_eq!(tick(&mut ticks).await, n, "then live events");
    }
    assert!(ticks.try_recv().is_none(), "no duplicates");
    assert!(gaps.try_recv().is_err(), "the broker still had every event: no gap notice");
    drop(conn);
}

/// The same cut, for a topic this server had never received an event of:
/// it has no position to read the stream after, so its subscriber is told
/// it may have missed events (a gap of unknown size), never left silent;
/// live events then flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_cut_on_a_topic_never_received_here_is_a_gap_of_unknown_size_not_silence() {
    let cut = LinkCut::start("link-cut-fresh").await;
    let (a, b) = (&cut.a, &cut.b);
    let (conn, mut ticks, mut gaps) = follower(&format!("ws://{}", a.local_addr())).await;
    cut.subscribed().await;

    cut.cut().await;
    emit_ticks(b, 0, 5, Duration::ZERO);
    wait_for("B's events to reach the broker", || published(b) == 5).await;
    cut.restore().await;

    let gap = tokio::time::timeout(WAIT, gaps.recv()).await.expect("a gap notice in time").expect("a gap notice");
    assert_eq!((gap.topic.as_deref(), gap.missed), (Some("t"), None), "may have missed: count unknown");
    let end = Instant::now() + WAIT;
    let mut n = 100;
    let got = loop {
        emit_ticks(b, n, n + 1, Duration::ZERO);
        if let Ok(Ok(t)) = tokio::time::timeout(Duration::from_millis(100), ticks.recv()).await {
            break t.n;
        }
        assert!(Instant::now() < end, "live events never reached A after its link came back");
        n += 1;
    };
    assert!(got >= 100, "events of the outage are not delivered silently late: {got}");
    drop(conn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_with_a_broker_reauthenticates_with_fresh_state_and_resumes_without_loss() {
    let redis = Redis::start();
    let prefix = prefix("restart");
    let first = bridged(&redis, &prefix);
    let addr = first.local_addr();
    let b = bridged(&redis, &prefix);
    let (conn, mut ticks, mut gaps) = follower(&format!("ws://{addr}")).await;
    let client = FeedClient::new(conn.clone());
    let state = conn.state::<Session>();
    assert_eq!(state.get().unwrap(), Session { user: "alice".into(), boot: 1 });
    // B's events reach the first server once it is subscribed on Redis.
    wait_for("the first server to subscribe", || first.broker_stats().unwrap().subscribed.get() == 1).await;
    emit_ticks(&b, 0, 5, Duration::ZERO);
    for n in 0..5 {
        assert_eq!(tick(&mut ticks).await, n);
    }

    first.shutdown();
    reconnecting(&conn).await;
    // Missed while the client's server is down: B goes on emitting.
    emit_ticks(&b, 5, 10, Duration::ZERO);
    wait_for("B's events to reach the broker", || published(&b) == 10).await;
    // The restarted server's bridge connects while the client comes back;
    // the client's replay waits for it (BrokerConfig::fetch_wait).
    let second = serve_feed(
        common::builder_at(addr).broker_config(BrokerConfig::new(&redis.url).channel_prefix(&prefix)),
        2,
        Default::default(),
    );
    reconnected(&conn).await;
    assert_eq!(state.get().unwrap(), Session { user: "alice".into(), boot: 2 }, "the new server's fresh state");
    assert!(conn.is_enabled(FeedMethod::Whoami.id()), "re-authenticated through the hook");
    assert_eq!(client.whoami().await.unwrap(), "alice");
    for n in 5..10 {
        assert_eq!(tick(&mut ticks).await, n, "what it missed, from the broker, in order");
    }
    emit_ticks(&second, 10, 13, Duration::ZERO);
    for n in 10..13 {
        assert_eq!(tick(&mut ticks).await, n, "then live events");
    }
    assert!(ticks.try_recv().is_none(), "no duplicates");
    assert!(gaps.try_recv().is_err(), "nothing was lost: no gap notice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_waits_for_a_missing_broker_link_at_most_fetch_wait_then_is_a_gap_notice() {
    let redis = Redis::start();
    let prefix = prefix("fetch-wait");
    let a = bridged(&redis, &prefix);
    // C reaches Redis through a proxy that refuses it for now.
    let redis_addr: std::net::SocketAddr = redis.url.trim_start_matches("redis://").parse().unwrap();
    let link = Proxy::start(redis_addr).await;
    link.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let wait = Duration::from_millis(300);
    let config = BrokerConfig::new(format!("redis://{}", link.addr))
        .channel_prefix(&prefix)
        .backoff(Duration::from_millis(20), Duration::from_millis(50))
        .fetch_wait(wait);
    let c = serve_feed(common::builder().broker_config(config), 1, Default::default());
    assert_eq!(BrokerConfig::new("redis://x").fetch_wait, hardlight::server::DEFAULT_FETCH_WAIT);

    let proxy = Proxy::start(a.local_addr()).await;
    let (conn, mut ticks, mut gaps) = follower(&proxy.url()).await;
    emit_ticks(&a, 0, 5, Duration::ZERO);
    for n in 0..5 {
        assert_eq!(tick(&mut ticks).await, n);
    }
    proxy.retarget(c.local_addr());
    let moved = Instant::now();
    proxy.cut();
    reconnecting(&conn).await;
    reconnected(&conn).await;
    let gap = tokio::time::timeout(WAIT, gaps.recv()).await.unwrap().expect("a gap notice, not a wait without end");
    assert_eq!((gap.topic.as_deref(), gap.missed), (Some("t"), None), "the broker could not be asked");
    assert!(moved.elapsed() >= wait, "not before the wait ran out");
    assert!(!c.broker_stats().unwrap().is_connected(), "given while C still had no broker link");

    // The link comes back: live events flow to the client on C.
    link.down.store(false, std::sync::atomic::Ordering::SeqCst);
    wait_for("C to connect and subscribe", || {
        let st = c.broker_stats().unwrap();
        st.is_connected() && st.subscribed.get() == 1
    })
    .await;
    emit_ticks(&a, 100, 103, Duration::ZERO);
    for n in 100..103 {
        assert_eq!(tick(&mut ticks).await, n);
    }
}
