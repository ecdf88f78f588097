//! Topic events across two servers through a real Redis: two servers in
//! this process, each bridged to the broker, real sockets on 127.0.0.1.
//!
//! The broker: `HARDLIGHT_TEST_REDIS=redis://HOST:PORT` when set (`.ci/run`
//! sets it), else a `redis-server` child process on a free port. The
//! restart test always starts its own child, since it kills it. Without
//! `redis-server` on PATH (and, where needed, without the variable) the
//! tests fail and say so; they never pass without a broker.

#[allow(dead_code)]
#[path = "../examples/api/chat.rs"]
mod api;
#[allow(dead_code)]
#[path = "../examples/support/chat_server.rs"]
mod chat_server;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use hardlight::client::{Connection, EventStream};
use hardlight::server::{
    BrokerConfig, BrokerStats, ConnectContext, ConnectionEvents, EmitError, Refusal, Server, ServerHandle,
};
use redis_server::{Redis, RedisChild};

#[hardlight::wire]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    pub topic: String,
    pub n: u64,
}

#[hardlight::rpc(events(Tick))]
pub trait Relay {
    async fn subscribe(&self, topic: String);
    async fn unsubscribe(&self, topic: String);
}

struct RelayHandler {
    events: ConnectionEvents,
}

impl Relay for RelayHandler {
    async fn subscribe(&self, topic: String) {
        self.events.subscribe(&topic);
    }
    async fn unsubscribe(&self, topic: String) {
        self.events.unsubscribe(&topic);
    }
}

const WAIT: Duration = Duration::from_secs(10);

/// The shared broker (from the environment) or a child of this test.
fn broker() -> Redis {
    Redis::start()
}

/// A channel prefix no other test (or run) shares, so tests can share a broker.
fn prefix(test: &str) -> String {
    format!("hl-test-{}-{test}:", std::process::id())
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

fn start(url: &str, prefix: &str, shards: usize) -> ServerHandle {
    init_tracing();
    Server::builder("127.0.0.1:0".parse().unwrap())
        .unpinned(shards)
        .io_memory(256 * 1024)
        .broker_config(BrokerConfig::new(url).channel_prefix(prefix))
        .serve(|ctx: &ConnectContext<'_>| Ok::<_, Refusal>(RelayService::new(RelayHandler { events: ctx.events() })))
        .unwrap()
}

async fn stop(server: ServerHandle) {
    tokio::task::spawn_blocking(move || server.shutdown()).await.unwrap();
}

fn bstats(s: &ServerHandle) -> &BrokerStats {
    s.broker_stats().expect("bridged")
}

/// A client on `server` subscribed to `topic`, with its event stream.
async fn subscriber(server: &ServerHandle, topic: &str) -> (RelayClient<Connection>, EventStream<Tick>) {
    let c = RelayClient::new(Connection::connect(&format!("ws://{}", server.local_addr())).await.unwrap());
    let events = c.caller().events::<Tick>();
    c.subscribe(topic.into()).await.unwrap();
    (c, events)
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < end, "timed out after {WAIT:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn next<E: hardlight::Event>(stream: &mut EventStream<E>) -> E {
    tokio::time::timeout(WAIT, stream.recv()).await.expect("event in time").expect("event")
}

fn tick(topic: &str, n: u64) -> Tick {
    Tick { topic: topic.into(), n }
}

fn numsub(url: &str, channel: &str) -> u64 {
    let mut con = redis::Client::open(url).unwrap().get_connection_with_timeout(WAIT).unwrap();
    let (_, n): (String, u64) = redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query(&mut con).unwrap();
    n
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_on_server_a_receives_events_emitted_on_server_b_in_order_and_once() {
    let broker = broker();
    let prefix = prefix("order");
    let a = start(&broker.url, &prefix, 2);
    let b = start(&broker.url, &prefix, 1);
    let (a1c, mut a1) = subscriber(&a, "t").await;
    let (a2c, mut a2) = subscriber(&a, "t").await;
    // B also has a subscriber: its own events reach it through the broker, once.
    let (b1c, mut b1) = subscriber(&b, "t").await;
    wait_for("both bridges to subscribe", || bstats(&a).subscribed.get() == 1 && bstats(&b).subscribed.get() == 1)
        .await;
    assert_eq!(numsub(&broker.url, &format!("{prefix}t")), 2, "one subscription per server, not per client");
    let emit = b.emitter();

    // One at a time: the latency of a single event from B's emitter to a
    // client of A, through Redis.
    let mut single = Vec::new();
    for n in 0..20 {
        let t0 = Instant::now();
        emit.to_topic("t", &tick("t", n)).unwrap();
        assert_eq!(next(&mut a1).await.n, n);
        single.push(t0.elapsed());
        assert_eq!(next(&mut a2).await.n, n);
        assert_eq!(next(&mut b1).await.n, n);
    }

    // A burst of 100, received in order.
    let mut sent = Vec::new();
    for n in 20..120 {
        sent.push(Instant::now());
        emit.to_topic("t", &tick("t", n)).unwrap();
    }
    let mut burst = Vec::new();
    for n in 20..120 {
        assert_eq!(next(&mut a1).await, tick("t", n), "A's first client, in order");
        burst.push(sent[(n - 20) as usize].elapsed());
    }
    for n in 20..120 {
        assert_eq!(next(&mut a2).await.n, n, "A's second client, in order");
        assert_eq!(next(&mut b1).await.n, n, "B's own client, in order");
    }

    wait_for("B's own events to come back", || bstats(&b).own_received.get() == 120).await;
    wait_for("B to count its publications", || bstats(&b).published.get() == 120).await;
    let (sa, sb) = (bstats(&a), bstats(&b));
    assert_eq!(sa.received.get(), 120);
    assert_eq!(sa.own_received.get() + sb.received.get(), 0);
    assert_eq!(sb.publish_failures.get() + sb.dropped_while_down.get() + sb.queue_full.get(), 0);
    // The cache drops duplicates, so every client got each event exactly once.
    assert!(b1.try_recv().is_none() && a1.try_recv().is_none() && a2.try_recv().is_none());

    single.sort();
    burst.sort();
    eprintln!(
        "cross-server latency (B emit -> A client), one at a time, n=20: p50 {:?}, p90 {:?}, max {:?}",
        percentile(&single, 0.5),
        percentile(&single, 0.9),
        single[single.len() - 1]
    );
    eprintln!(
        "cross-server latency, burst of 100: p50 {:?}, p90 {:?}, max {:?}",
        percentile(&burst, 0.5),
        percentile(&burst, 0.9),
        burst[burst.len() - 1]
    );
    drop((a1c, a2c, b1c)); // a client's Close lets its server stop at once
    stop(a).await;
    stop(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_emitted_concurrently_on_two_servers_reach_every_client_in_one_order() {
    let broker = broker();
    let prefix = prefix("one-order");
    let a = start(&broker.url, &prefix, 2);
    let b = start(&broker.url, &prefix, 1);
    let mut clients = Vec::new();
    for server in [&a, &a, &b, &b] {
        let (c, events) = subscriber(server, "t").await;
        let gaps = c.caller().gaps();
        clients.push((c, events, gaps));
    }
    wait_for("both bridges to subscribe", || bstats(&a).subscribed.get() == 1 && bstats(&b).subscribed.get() == 1)
        .await;
    const N: u64 = 200;
    let emitters: Vec<_> = [("a", a.emitter().clone()), ("b", b.emitter().clone())]
        .into_iter()
        .map(|(origin, emitter)| {
            std::thread::spawn(move || {
                for n in 0..N {
                    emitter.to_topic("t", &tick(origin, n)).unwrap();
                    if n % 10 == 9 {
                        // Spread over time, so that the two servers' events interleave.
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            })
        })
        .collect();
    for e in emitters {
        e.join().unwrap();
    }
    let mut orders = Vec::new();
    for (i, (_, events, gaps)) in clients.iter_mut().enumerate() {
        let mut order = Vec::new();
        for _ in 0..2 * N {
            let Ok(Ok(t)) = tokio::time::timeout(WAIT, events.recv()).await else {
                let st = |s: &ServerHandle| {
                    let b = bstats(s);
                    (b.published.get(), b.received.get(), b.own_received.get(), b.publish_failures.get())
                };
                panic!(
                    "client {i} got {} events, the last {:?}; gaps {:?}; A {:?} B {:?}",
                    order.len(),
                    order.last(),
                    gaps.try_recv(),
                    st(&a),
                    st(&b)
                );
            };
            order.push((t.topic, t.n));
        }
        assert!(events.try_recv().is_none(), "each event once");
        assert!(gaps.try_recv().is_err(), "contiguous positions: no gap notice");
        for origin in ["a", "b"] {
            let mine: Vec<u64> = order.iter().filter(|(o, _)| o == origin).map(|(_, n)| *n).collect();
            assert_eq!(mine, (0..N).collect::<Vec<_>>(), "{origin}'s events in the order it emitted them");
        }
        orders.push(order);
    }
    // The broker interleaved the two servers' events once, for everyone:
    // the same order (and, contiguous from the same start, the same
    // positions) on both servers.
    assert!(orders.windows(2).all(|w| w[0] == w[1]), "every client, on either server, saw one order");
    let switches = orders[0].windows(2).filter(|w| w[0].0 != w[1].0).count();
    eprintln!("the two servers' events alternated {switches} times in the one order");
    drop(clients);
    stop(a).await;
    stop(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_nobody_on_a_subscribes_to_never_reaches_a() {
    let broker = broker();
    let prefix = prefix("lonely");
    let a = start(&broker.url, &prefix, 2);
    let b = start(&broker.url, &prefix, 1);
    let (a1c, mut a1) = subscriber(&a, "watched").await;
    wait_for("A to subscribe", || bstats(&a).subscribed.get() == 1).await;
    assert_eq!(numsub(&broker.url, &format!("{prefix}watched")), 1);
    assert_eq!(numsub(&broker.url, &format!("{prefix}lonely")), 0, "A never subscribed to the lonely topic");

    let emit = b.emitter();
    for n in 0..50 {
        emit.to_topic("lonely", &tick("lonely", n)).unwrap();
    }
    emit.to_topic("watched", &tick("watched", 0)).unwrap();
    // B publishes in order on one connection, so had any lonely event been
    // sent to A it would have arrived before this one.
    assert_eq!(next(&mut a1).await, tick("watched", 0));
    // (B counts a batch when Redis answers it, which may be after A has it.)
    wait_for("B to count its 51 publications", || bstats(&b).published.get() == 51).await;
    assert_eq!(bstats(&a).received.get(), 1, "A received only the watched topic");

    // Something that is not a HardLight event on a subscribed channel is
    // counted and ignored; the bridge keeps going.
    let mut con = redis::Client::open(broker.url.as_str()).unwrap().get_connection_with_timeout(WAIT).unwrap();
    let _: u64 =
        redis::cmd("PUBLISH").arg(format!("{prefix}watched")).arg("{\"not\": \"ours\"}").query(&mut con).unwrap();
    wait_for("the foreign message to be counted", || bstats(&a).malformed.get() == 1).await;
    emit.to_topic("watched", &tick("watched", 1)).unwrap();
    assert_eq!(next(&mut a1).await.n, 1);

    // The last local subscriber leaves: A unsubscribes on Redis too.
    a1c.unsubscribe("watched".into()).await.unwrap();
    wait_for("A to unsubscribe", || bstats(&a).subscribed.get() == 0).await;
    assert_eq!(numsub(&broker.url, &format!("{prefix}watched")), 0);
    for n in 2..7 {
        emit.to_topic("watched", &tick("watched", n)).unwrap();
    }
    wait_for("B to publish", || bstats(&b).published.get() == 57).await;
    assert_eq!(bstats(&a).received.get(), 2, "nothing after the unsubscribe");
    assert!(a1.try_recv().is_none());
    drop(a1c);
    stop(a).await;
    stop(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_and_restarted_events_emitted_during_the_outage_are_delivered_after_it_in_one_order_once() {
    let mut redis = RedisChild::start();
    let prefix = prefix("restart");
    let a = start(&redis.url(), &prefix, 1);
    let b = start(&redis.url(), &prefix, 1);
    let (a1c, mut a1) = subscriber(&a, "t").await;
    let (b1c, mut b1) = subscriber(&b, "t").await;
    let (mut a1_gaps, mut b1_gaps) = (a1c.caller().gaps(), b1c.caller().gaps());
    wait_for("both bridges to subscribe", || bstats(&a).subscribed.get() == 1 && bstats(&b).subscribed.get() == 1)
        .await;
    let (emit_a, emit_b) = (a.emitter(), b.emitter());
    for n in 0..10 {
        emit_b.to_topic("t", &tick("t", n)).unwrap();
    }
    for n in 0..10 {
        assert_eq!(next(&mut a1).await.n, n);
        assert_eq!(next(&mut b1).await.n, n);
    }

    redis.kill();
    let killed = Instant::now();
    wait_for("both bridges to notice", || !bstats(&a).is_connected() && !bstats(&b).is_connected()).await;
    // While the broker is down: emitting never fails (the queue has room)
    // or blocks, and topic events wait for the broker, which orders them.
    for n in 10..20 {
        emit_b.to_topic("t", &tick("t", n)).unwrap();
    }
    emit_a.to_topic("t", &tick("t", 1000)).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(a1.try_recv().is_none() && b1.try_recv().is_none(), "not delivered before the broker positions them");

    redis.restart();
    let restarted = Instant::now();
    wait_for("both bridges to reconnect and re-subscribe", || {
        [&a, &b].iter().all(|s| bstats(s).is_connected() && bstats(s).subscribed.get() == 1)
    })
    .await;
    eprintln!(
        "broker down for {:?}; bridges re-subscribed {:?} after the restart",
        restarted - killed,
        restarted.elapsed()
    );
    assert_eq!(bstats(&a).reconnects.get(), 1);
    assert_eq!(bstats(&b).reconnects.get(), 1);

    // Every event emitted during the outage arrives once, on both servers
    // in the same order, B's in the order B emitted them.
    let (mut seen_a, mut seen_b) = (Vec::new(), Vec::new());
    for _ in 0..11 {
        seen_a.push(next(&mut a1).await.n);
        seen_b.push(next(&mut b1).await.n);
    }
    assert_eq!(seen_a, seen_b, "one order on both servers");
    assert_eq!(seen_a.iter().filter(|&&n| n == 1000).count(), 1, "A's event once: {seen_a:?}");
    let from_b: Vec<u64> = seen_a.iter().copied().filter(|&n| n != 1000).collect();
    assert_eq!(from_b, (10..20).collect::<Vec<_>>(), "B's events in order, once");
    for n in 20..30 {
        emit_b.to_topic("t", &tick("t", n)).unwrap();
    }
    for n in 20..30 {
        assert_eq!(next(&mut a1).await.n, n, "crossing again after the restart");
        assert_eq!(next(&mut b1).await.n, n);
    }
    assert!(a1.try_recv().is_none() && b1.try_recv().is_none());
    for s in [&a, &b] {
        let st = bstats(s);
        assert_eq!(st.publish_failures.get() + st.dropped_while_down.get() + st.queue_full.get(), 0);
    }
    // Never silent: Redis restarted without persistence, so the topic's
    // history there is gone and its positions start a new epoch; each
    // client is told, once, with the count unknown.
    for (name, gaps) in [("A", &mut a1_gaps), ("B", &mut b1_gaps)] {
        let g = gaps.try_recv().unwrap_or_else(|_| panic!("{name}'s client gets a gap notice"));
        assert_eq!((g.topic.as_deref(), g.missed), (Some("t"), None), "{name}");
        let more = gaps.try_recv();
        assert!(more.is_err(), "{name}: one notice, then {more:?}");
    }
    drop((a1c, b1c));
    stop(a).await;
    stop(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_started_before_its_broker_queues_topic_events_refuses_past_the_bound_then_delivers() {
    // A port where nothing listens yet.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("redis://127.0.0.1:{port}");
    init_tracing();
    let a = Server::builder("127.0.0.1:0".parse().unwrap())
        .unpinned(1)
        .io_memory(256 * 1024)
        .broker_config(BrokerConfig::new(&url).channel_prefix(prefix("late")).queue_capacity(3))
        .serve(|ctx: &ConnectContext<'_>| Ok::<_, Refusal>(RelayService::new(RelayHandler { events: ctx.events() })))
        .unwrap();
    let (a1c, mut a1) = subscriber(&a, "t").await;
    for n in 1..=3 {
        a.emitter().to_topic("t", &tick("t", n)).unwrap();
    }
    let refused = a.emitter().to_topic("t", &tick("t", 4));
    assert!(matches!(refused, Err(EmitError::BrokerBacklog(3))), "the queue holds 3: {refused:?}");
    assert_eq!(bstats(&a).queue_full.get(), 1);
    // Other targets never wait for the broker.
    a.emitter().to_all(&tick("all", 0)).unwrap();
    assert_eq!(next(&mut a1).await, tick("all", 0));
    assert!(a1.try_recv().is_none(), "topic events wait for the broker");
    assert!(!bstats(&a).is_connected());

    let mut redis = RedisChild::at(port);
    redis.restart();
    wait_for("A to connect and subscribe", || bstats(&a).is_connected() && bstats(&a).subscribed.get() == 1).await;
    for n in 1..=3 {
        assert_eq!(next(&mut a1).await.n, n, "queued events, in order, once the broker positions them");
    }
    a.emitter().to_topic("t", &tick("t", 5)).unwrap();
    assert_eq!(next(&mut a1).await.n, 5, "the refused event is not sent later");
    assert_eq!(bstats(&a).reconnects.get(), 0, "a first connection is not a reconnect");
    assert_eq!(numsub(&url, &format!("{}t", prefix("late"))), 1);
    drop(a1c);
    stop(a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_broker_the_server_runs_alone() {
    init_tracing();
    let server = Server::builder("127.0.0.1:0".parse().unwrap())
        .unpinned(1)
        .io_memory(256 * 1024)
        .serve(|ctx: &ConnectContext<'_>| Ok::<_, Refusal>(RelayService::new(RelayHandler { events: ctx.events() })))
        .unwrap();
    assert!(server.broker_stats().is_none());
    assert!(server.emitter().broker_stats().is_none());
    let (c, mut events) = subscriber(&server, "t").await;
    server.emitter().to_topic("t", &tick("t", 5)).unwrap();
    assert_eq!(next(&mut events).await.n, 5);
    drop(c);
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_messages_cross_between_two_chat_servers() {
    let broker = broker();
    let prefix = prefix("chat");
    let dir = std::env::temp_dir().join(format!("hardlight-broker-chat-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let start_chat = |name: &str| {
        init_tracing();
        let store = chat_server::Store::open(&dir.join(name)).unwrap();
        Server::builder("127.0.0.1:0".parse().unwrap())
            .unpinned(1)
            .io_memory(256 * 1024)
            .broker_config(BrokerConfig::new(&broker.url).channel_prefix(&prefix))
            .serve(chat_server::factory(store))
            .unwrap()
    };
    let (a, b) = (start_chat("a"), start_chat("b"));
    let alice_conn = Connection::connect(&format!("ws://{}", a.local_addr())).await.unwrap();
    let mut alice_sees = alice_conn.events::<api::ChatMessage>();
    let alice = api::ChatClient::new(alice_conn);
    let bob_conn = Connection::connect(&format!("ws://{}", b.local_addr())).await.unwrap();
    let mut bob_sees = bob_conn.events::<api::ChatMessage>();
    let bob = api::ChatClient::new(bob_conn);
    alice.join("alice".into(), "general".into()).await.unwrap();
    bob.join("bob".into(), "general".into()).await.unwrap();
    wait_for("both chat servers to subscribe to chat:general", || {
        bstats(&a).subscribed.get() == 1 && bstats(&b).subscribed.get() == 1
    })
    .await;
    assert_eq!(numsub(&broker.url, &format!("{prefix}{}", chat_server::topic("general"))), 2);

    alice.send_message("general".into(), "hello from A".into()).await.unwrap().unwrap();
    let m = next(&mut bob_sees).await;
    assert_eq!((m.user.as_str(), m.text.as_str()), ("alice", "hello from A"));
    assert_eq!(next(&mut alice_sees).await.text, "hello from A", "alice sees her own message once");
    bob.send_message("general".into(), "hi from B".into()).await.unwrap().unwrap();
    let m = next(&mut alice_sees).await;
    assert_eq!((m.user.as_str(), m.text.as_str()), ("bob", "hi from B"));
    assert_eq!(next(&mut bob_sees).await.text, "hi from B");

    // Leaving the thread unsubscribes the server that had its last follower.
    bob.leave("general".into()).await.unwrap();
    wait_for("B to unsubscribe", || bstats(&b).subscribed.get() == 0).await;
    drop((alice, bob));
    stop(a).await;
    stop(b).await;
    let _ = std::fs::remove_dir_all(&dir);
}
