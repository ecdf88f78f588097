//! Reconnect and resume over real sockets: a TCP proxy that cuts
//! connections mid-stream, a server restarted on the same port, the
//! on-connect hook re-authenticating, calls across drops.

mod common;
#[path = "support/feed.rs"]
mod feed;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use feed::{emit_ticks, serve_feed, FeedClient, FeedMethod, Proxy, Session, Tick};
use hardlight::client::{Backoff, ClientConfig, Connection, Status};
use hardlight::server::HistoryLimits;
use hardlight::{CallError, EventLimits};

fn fast_backoff() -> Backoff {
    Backoff { initial: Duration::from_millis(5), max: Duration::from_millis(100), ..Backoff::default() }
}

fn big_history() -> HistoryLimits {
    HistoryLimits { max_events: 100_000, ..HistoryLimits::default() }
}

async fn wait_status(conn: &Connection, want: impl Fn(&Status) -> bool) {
    let mut rx = conn.watch_status();
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| want(s)))
        .await
        .unwrap_or_else(|_| panic!("status in time; is {:?}", conn.status()))
        .unwrap();
}

fn connected(s: &Status) -> bool {
    *s == Status::Connected
}

fn reconnecting(s: &Status) -> bool {
    matches!(s, Status::Reconnecting { .. })
}

/// Ticks flow while the proxy cuts the connection at random moments: the
/// client receives every tick exactly once and in order (the history
/// covers every cut, so no gap either), a call pending at a cut fails at
/// once with `Disconnected` rather than at its timeout, and calls succeed
/// after the last cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_cuts_mid_stream_lose_no_event_and_fail_pending_calls_fast() {
    const TICKS: u64 = 20_000;
    // Queues large enough that the replay after a cut is never cut short by
    // the slow-consumer policy (which would be reported as a gap).
    let queue = EventLimits { max_events: 100_000, max_bytes: 64 << 20, ..EventLimits::default() };
    let builder = common::builder().unpinned(2).history_limits(big_history()).event_limits(queue);
    let server = serve_feed(builder, 1, Arc::default());
    let proxy = Proxy::start(server.local_addr()).await;
    let config =
        ClientConfig::default().header("x-auto", "1").reconnect(fast_backoff()).call_timeout(Duration::from_secs(5));
    let conn = Connection::connect_with(&proxy.url(), config).await.unwrap();
    let client = FeedClient::new(conn.clone());
    let mut ticks = conn.events::<Tick>();
    let mut gaps = conn.gaps();

    let emitting = std::thread::spawn({
        let server_emitter = server.emitter();
        move || {
            for n in 0..TICKS {
                while server_emitter.to_topic("t", &Tick { n }).is_err() {
                    std::thread::sleep(Duration::from_micros(200));
                }
                if n % 16 == 0 {
                    std::thread::sleep(Duration::from_micros(500));
                }
            }
        }
    });
    // Pending calls at the cuts.
    let pending = tokio::spawn({
        let client = FeedClient::new(conn.clone());
        async move {
            let mut fast_failures = 0;
            let mut oks = 0;
            for _ in 0..40 {
                let t = Instant::now();
                match client.slow(150, 1).await {
                    Ok(_) => oks += 1,
                    Err(CallError::Disconnected(_)) => {
                        // At the cut (plus any wait for the reconnect before
                        // it was sent), never at the 5 s timeout.
                        assert!(t.elapsed() < Duration::from_secs(1), "failed fast: {:?}", t.elapsed());
                        fast_failures += 1;
                    }
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
            (fast_failures, oks)
        }
    });
    let cutter = tokio::spawn({
        let proxy_cut = Arc::new(proxy);
        async move {
            let mut seed = 0x9e37_79b9_7f4a_7c15u64;
            for _ in 0..12 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                tokio::time::sleep(Duration::from_millis(30 + seed % 120)).await;
                proxy_cut.cut();
            }
            proxy_cut
        }
    });

    // Exactly once and in order, or a gap notice for what is missing.
    let (mut next, mut skipped) = (0, 0);
    while next < TICKS {
        let tick = tokio::time::timeout(Duration::from_secs(20), ticks.recv())
            .await
            .unwrap_or_else(|_| panic!("tick {next} in time ({:?})", conn.status()))
            .unwrap();
        assert!(tick.n >= next, "in order, no duplicate: got {} after {}", tick.n, next);
        skipped += tick.n - next;
        next = tick.n + 1;
    }
    let mut reported = 0;
    while let Ok(g) = gaps.try_recv() {
        reported += g.missed.unwrap_or(u64::MAX / 2);
    }
    assert!(reported >= skipped, "{skipped} ticks missing, {reported} reported in gap notices");
    assert_eq!(skipped, 0, "the history and queues covered every cut: nothing missing");
    emitting.join().unwrap();
    let proxy = cutter.await.unwrap();
    let (fast_failures, oks) = pending.await.unwrap();
    assert!(proxy.accepted.load(Ordering::SeqCst) >= 5, "the connection really was cut and re-opened");
    assert!(fast_failures >= 1 && oks >= 1, "{fast_failures} fast failures, {oks} oks");
    wait_status(&conn, connected).await;
    assert_eq!(client.echo(7).await.unwrap(), 7, "calls succeed after the cuts");
    eprintln!(
        "reconnects: {}, duplicates dropped: {}, pending calls failed fast: {fast_failures}",
        proxy.accepted.load(Ordering::SeqCst) - 1,
        conn.duplicates_dropped()
    );
}

/// While reconnecting, a call waits for the new transport (default) or
/// fails at once (fail-fast); a non-idempotent call in flight at a drop
/// fails and is never sent twice, an idempotent one is sent again and
/// succeeds; close() ends it all and `closed()` resolves. `slow` is marked
/// `#[idempotent]` in the trait: the client opened with the schema resends
/// it, the one opened without it (no marks known) does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_across_a_drop_wait_fail_or_resend_per_config() {
    let runs = Arc::new(AtomicU64::new(0));
    let server = serve_feed(common::builder(), 1, runs.clone());
    let proxy = Proxy::start(server.local_addr()).await;
    let base = ClientConfig::default().header("x-auto", "1").reconnect(fast_backoff());
    let waiting = FeedClient::new(Connection::connect_with(&proxy.url(), base.clone()).await.unwrap());
    let failing = FeedClient::new(
        Connection::connect_with(&proxy.url(), base.fail_fast_while_disconnected().schema(&FeedMethod::SCHEMA))
            .await
            .unwrap(),
    );

    // A non-idempotent call in flight at the cut fails and is not resent.
    let in_flight = tokio::spawn({
        let c = FeedClient::new(waiting.caller().clone());
        async move { c.slow(300, 1).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.down.store(true, Ordering::SeqCst);
    proxy.cut();
    assert!(matches!(in_flight.await.unwrap(), Err(CallError::Disconnected(_))));
    wait_status(waiting.caller(), |s| matches!(s, Status::Reconnecting { attempt } if *attempt >= 1)).await;
    wait_status(failing.caller(), reconnecting).await;

    let t = Instant::now();
    assert!(matches!(failing.echo(1).await, Err(CallError::Disconnected(_))));
    assert!(t.elapsed() < Duration::from_millis(50), "fail-fast fails at once");
    let waited = tokio::spawn({
        let c = FeedClient::new(waiting.caller().clone());
        async move { c.echo(2).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waited.is_finished(), "waits for the reconnect");
    proxy.down.store(false, Ordering::SeqCst);
    assert_eq!(waited.await.unwrap().unwrap(), 2);
    wait_status(failing.caller(), connected).await;
    assert_eq!(failing.echo(3).await.unwrap(), 3, "fail-fast clients work again once reconnected");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the non-idempotent call ran once and was never resent");

    // An idempotent call in flight at a cut is sent again on the next transport.
    let resent = tokio::spawn({
        let c = FeedClient::new(failing.caller().clone());
        async move { c.slow(300, 5).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.cut();
    assert_eq!(resent.await.unwrap().unwrap(), 5, "idempotent: resent and answered");
    assert_eq!(runs.load(Ordering::SeqCst), 3, "it ran on both transports");

    let conn = waiting.caller().clone();
    conn.close();
    let reason = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await.expect("closed in time");
    assert_eq!(conn.status(), Status::Closed, "{reason}");
    assert!(matches!(waiting.echo(1).await, Err(CallError::Disconnected(_))));
}

/// The server restarts on the same port (while the old connections linger
/// in TIME_WAIT): the client comes back by itself after the old server's
/// Close 1001, the on-connect hook logs in again (full feature set), the
/// state mirror holds the new server's initial state, and the topic is
/// reported as a gap of unknown size (the new server has no history of the
/// old one's ticks, so it cannot know what was missed), never silently;
/// the new server's ticks flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_reconnects_reauthenticates_with_fresh_state_and_reports_the_gap() {
    let first = serve_feed(common::builder(), 1, Arc::default());
    let addr = first.local_addr();
    let hooks = Arc::new(AtomicU64::new(0));
    let config = ClientConfig::default().reconnect(fast_backoff()).on_connect({
        let hooks = hooks.clone();
        move |conn: Connection| {
            let hooks = hooks.clone();
            async move {
                let c = FeedClient::new(conn);
                if !c.login("secret".into()).await.map_err(|e| e.to_string())? {
                    return Err("login refused".into());
                }
                c.follow("t".into()).await.map_err(|e| e.to_string())?;
                hooks.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }
    });
    let conn = Connection::connect_with(&format!("ws://{addr}"), config).await.unwrap();
    let client = FeedClient::new(conn.clone());
    assert_eq!(conn.status(), Status::Connected);
    assert!(conn.is_enabled(FeedMethod::Whoami.id()), "ready only after the hook logged in");
    assert_eq!(client.whoami().await.unwrap(), "alice");
    let state = conn.state::<Session>();
    assert_eq!(state.get().unwrap(), Session { user: "alice".into(), boot: 1 });
    let mut ticks = conn.events::<Tick>();
    let mut gaps = conn.gaps();
    emit_ticks(&first, 0, 5, Duration::ZERO);
    for n in 0..5 {
        assert_eq!(tokio::time::timeout(Duration::from_secs(5), ticks.recv()).await.unwrap().unwrap().n, n);
    }

    let mut status = conn.watch_status();
    first.shutdown();
    tokio::time::timeout(Duration::from_secs(5), status.wait_for(reconnecting)).await.unwrap().unwrap();
    let second = serve_feed(common::builder_at(addr), 2, Arc::default());
    wait_status(&conn, connected).await;
    assert_eq!(hooks.load(Ordering::SeqCst), 2, "the hook ran on each transport");
    assert_eq!(state.get().unwrap(), Session { user: "alice".into(), boot: 2 }, "the new server's state");
    assert_eq!(client.whoami().await.unwrap(), "alice", "re-authenticated: the full feature set");

    emit_ticks(&second, 100, 103, Duration::ZERO);
    for n in 100..103 {
        assert_eq!(tokio::time::timeout(Duration::from_secs(5), ticks.recv()).await.unwrap().unwrap().n, n);
    }
    let gap = gaps.try_recv().expect("the restart is reported as a gap on t");
    assert_eq!((gap.topic.as_deref(), gap.missed), (Some("t"), None), "count unknown: another history");
    assert!(gaps.try_recv().is_err(), "one notice");
}

/// A stale server still listening on the port is refused; only lingering
/// connections are not a reason to refuse a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_with_a_listener_is_still_refused() {
    let first = serve_feed(common::builder(), 1, Arc::default());
    let second = common::builder_at(first.local_addr()).serve(|_: &hardlight::server::ConnectContext<'_>| {
        Err::<feed::FeedService<feed::FeedHandler>, _>(hardlight::server::Refusal::new(500, "unused"))
    });
    assert!(matches!(second, Err(hardlight::server::ServerError::AddressInUse(_))));
}
