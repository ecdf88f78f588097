//! Events end to end over real sockets with 2 executors: cross-core
//! delivery, recipient selection, ordering, slow consumers, emits from
//! outside the server, and the chat example's persistence.

mod common;

#[allow(dead_code)]
#[path = "../examples/api/chat.rs"]
mod api;
#[allow(dead_code)]
#[path = "../examples/support/chat_server.rs"]
mod chat_server;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::SinkExt;
use hardlight::client::Connection;
use hardlight::protocol::events::EventLimits;
use hardlight::server::Limits;
use hardlight::server::{ConnectContext, ConnectionEvents, EmitError, Emitter, Refusal, Server, ServerHandle};
use hardlight::{SlowConsumerPolicy, StateHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

#[hardlight::wire]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub topic: String,
    pub n: u64,
    pub pad: Vec<u8>,
}

#[derive(Clone, Debug, Default, PartialEq, hardlight::ConnectionState)]
pub struct HubState {
    pub follows: Vec<String>,
}

#[hardlight::rpc(events(Note))]
pub trait Hub {
    async fn shard(&self) -> u32;
    /// Follows by state (recipients chosen by predicate).
    async fn follow(&self, topic: String);
    /// Subscribes to a topic in the shard's index.
    async fn subscribe(&self, topic: String);
    async fn publish_matching(&self, topic: String, n: u64) -> bool;
    async fn publish_topic(&self, topic: String, n: u64) -> bool;
    /// Sends `count` events to this connection, then answers.
    async fn burst_to_self(&self, count: u32) -> u32;
    async fn set_policy(&self, disconnect: bool, max_events: u32);
}

struct HubHandler {
    shard: usize,
    state: StateHandle<HubState>,
    events: ConnectionEvents,
}

impl Hub for HubHandler {
    async fn shard(&self) -> u32 {
        self.shard as u32
    }
    async fn follow(&self, topic: String) {
        self.state.lock().follows.push(topic);
    }
    async fn subscribe(&self, topic: String) {
        self.events.subscribe(&topic);
    }
    async fn publish_matching(&self, topic: String, n: u64) -> bool {
        let note = Note { topic: topic.clone(), n, pad: vec![] };
        self.events.emitter().to_matching(&note, move |s: &HubState| s.follows.contains(&topic)).is_ok()
    }
    async fn publish_topic(&self, topic: String, n: u64) -> bool {
        self.events.emitter().to_topic(&topic, &Note { topic: topic.clone(), n, pad: vec![] }).is_ok()
    }
    async fn burst_to_self(&self, count: u32) -> u32 {
        for n in 0..count {
            self.events.send(&Note { topic: "self".into(), n: n as u64, pad: vec![] }).unwrap();
        }
        count
    }
    async fn set_policy(&self, disconnect: bool, max_events: u32) {
        let policy = if disconnect { SlowConsumerPolicy::Disconnect } else { SlowConsumerPolicy::DropOldest };
        self.events.set_limits(EventLimits { max_events: max_events as usize, max_bytes: usize::MAX, policy });
    }
}

fn start_hub(limits: Limits) -> ServerHandle {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    Server::builder("127.0.0.1:0".parse().unwrap())
        .backend(common::backend())
        .unpinned(2)
        .limits(limits)
        .serve(|ctx: &ConnectContext<'_>| {
            Ok::<_, Refusal>(HubService::new(HubHandler {
                shard: ctx.shard,
                state: ctx.state(HubState::default()),
                events: ctx.events(),
            }))
        })
        .unwrap()
}

fn url(s: &ServerHandle) -> String {
    format!("ws://{}", s.local_addr())
}

/// Opens connections until there are `per_shard` on each of the 2 shards.
async fn clients_on_both_shards(server: &ServerHandle, per_shard: usize) -> Vec<(u32, HubClient<Connection>)> {
    let mut out = Vec::new();
    let mut counts = [0usize; 2];
    for _ in 0..200 {
        let c = HubClient::new(Connection::connect(&url(server)).await.unwrap());
        let s = c.shard().await.unwrap();
        if counts[s as usize] < per_shard {
            counts[s as usize] += 1;
            out.push((s, c));
        }
        if counts.iter().all(|&n| n == per_shard) {
            return out;
        }
    }
    panic!("could not place connections on both shards: {counts:?}");
}

async fn next_note(stream: &mut hardlight::client::EventStream<Note>) -> Note {
    tokio::time::timeout(Duration::from_secs(5), stream.recv()).await.expect("event in time").expect("event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_on_both_cores_receive_events_emitted_on_either_core() {
    let server = start_hub(Limits::default());
    let clients = clients_on_both_shards(&server, 2).await;
    let mut streams = Vec::new();
    for (_, c) in &clients {
        c.follow("a".into()).await.unwrap();
        streams.push(c.caller().events::<Note>());
    }
    // Publish once from a connection on shard 0, once from shard 1.
    let from0 = clients.iter().find(|(s, _)| *s == 0).unwrap();
    let from1 = clients.iter().find(|(s, _)| *s == 1).unwrap();
    assert!(from0.1.publish_matching("a".into(), 1).await.unwrap());
    assert!(from1.1.publish_matching("a".into(), 2).await.unwrap());
    for s in &mut streams {
        let got: HashSet<u64> = [next_note(s).await.n, next_note(s).await.n].into();
        assert_eq!(got, HashSet::from([1, 2]));
    }
    // The topic index works across cores too.
    for (_, c) in &clients {
        c.subscribe("t".into()).await.unwrap();
    }
    assert!(from1.1.publish_topic("t".into(), 3).await.unwrap());
    for s in &mut streams {
        assert_eq!(next_note(s).await.n, 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_following_a_never_sees_b() {
    let server = start_hub(Limits::default());
    let clients = clients_on_both_shards(&server, 1).await;
    let (a, b) = (&clients[0].1, &clients[1].1);
    a.follow("A".into()).await.unwrap();
    b.follow("B".into()).await.unwrap();
    let mut a_events = a.caller().events::<Note>();
    let mut b_events = b.caller().events::<Note>();
    for n in 0..20 {
        assert!(b.publish_matching("B".into(), n).await.unwrap());
    }
    assert!(a.publish_matching("A".into(), 100).await.unwrap());
    // A's only event is its own topic's; by then B's 20 were all routed.
    assert_eq!(next_note(&mut a_events).await, Note { topic: "A".into(), n: 100, pad: vec![] });
    for n in 0..20 {
        assert_eq!(next_note(&mut b_events).await.n, n);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(a_events.try_recv().is_none(), "A saw nothing of B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_the_response_arrive_in_order_on_one_connection() {
    let server = start_hub(Limits::default());
    let c = HubClient::new(Connection::connect(&url(&server)).await.unwrap());
    let mut events = c.caller().events::<Note>();
    for round in 0..5 {
        assert_eq!(c.burst_to_self(100).await.unwrap(), 100);
        // Every event was queued before the response, so all are here already.
        for n in 0..100 {
            match events.try_recv() {
                Some(Ok(note)) => assert_eq!(note.n, n, "round {round}"),
                other => panic!("round {round}: event {n} missing: {other:?}"),
            }
        }
        assert!(events.try_recv().is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emits_from_a_plain_thread_reach_clients_on_every_shard() {
    let server = start_hub(Limits::default());
    let clients = clients_on_both_shards(&server, 1).await;
    let mut streams = Vec::new();
    for (_, c) in &clients {
        c.subscribe("news".into()).await.unwrap();
        streams.push(c.caller().events::<Note>());
    }
    let emitter: Emitter = server.emitter();
    std::thread::spawn(move || {
        for n in 0..10 {
            emitter.to_topic("news", &Note { topic: "news".into(), n, pad: vec![] }).unwrap();
        }
    })
    .join()
    .unwrap();
    for s in &mut streams {
        for n in 0..10 {
            assert_eq!(next_note(s).await.n, n);
        }
    }
}

/// A client that subscribes and then never reads its socket.
async fn stalled_subscriber(server: &ServerHandle, disconnect: bool) -> tokio::net::TcpStream {
    let mut req = url(server).into_client_request().unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", "hl/1".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    for (id, (method, input)) in [
        (
            HubMethod::SetPolicy,
            hardlight::protocol::wire::encode(&HubSetPolicyInput { disconnect, max_events: 64 }).unwrap(),
        ),
        (
            HubMethod::Subscribe,
            hardlight::protocol::wire::encode(&HubSubscribeInput { topic: "flood".into() }).unwrap(),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let mut m = Vec::new();
        hardlight::protocol::envelope::encode_call(&mut m, id as u8, method.id(), &input);
        ws.send(Message::Binary(m.into())).await.unwrap();
    }
    // Let both calls land before the flood starts.
    tokio::time::sleep(Duration::from_millis(100)).await;
    match ws.into_inner() {
        tokio_tungstenite::MaybeTlsStream::Plain(s) => s,
        _ => unreachable!(),
    }
}

/// Emits `total` 1 KiB events to "flood" at about 5,000 per second (a rate
/// a reading client keeps up with), retrying when a shard inbox is full.
/// Most events the flood may be ahead of the fast reader: far below every
/// per-connection bound (1024 events, 1 MiB on the server), so the fast
/// reader never loses an event however slow the machine, while the stalled
/// subscriber, which reads nothing, overflows its bounds.
const FLOOD_LEAD: u64 = 256;

fn flood(emitter: &Emitter, total: u64, fast_reader_got: &AtomicU64) {
    for n in 0..total {
        // Paced by the fast reader, not by the clock: a debug build on a
        // loaded machine once fell 19,000 events behind a timed flood.
        while n >= fast_reader_got.load(Ordering::Relaxed) + FLOOD_LEAD {
            std::thread::sleep(Duration::from_millis(1));
        }
        let note = Note { topic: "flood".into(), n, pad: vec![0xAB; 1024] };
        loop {
            match emitter.to_topic("flood", &note) {
                Ok(()) => break,
                Err(EmitError::MeshFull(_)) => std::thread::sleep(Duration::from_micros(200)),
                Err(e) => panic!("{e}"),
            }
        }
    }
}

/// Reads server frames from a raw socket until `deadline` or a Close:
/// returns (events seen, drops reported, close code).
async fn drain_raw(tcp: &mut tokio::net::TcpStream, deadline: Duration) -> (u64, u64, Option<u16>) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    let (mut events, mut dropped) = (0, 0);
    let end = Instant::now() + deadline;
    loop {
        let n = match tokio::time::timeout_at(end.into(), tcp.read(&mut chunk)).await {
            Ok(Ok(0)) | Err(_) => return (events, dropped, None),
            Ok(Ok(n)) => n,
            Ok(Err(_)) => return (events, dropped, None),
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        while let Ok(Some(h)) =
            hardlight::protocol::frame::parse_header(&buf[at..], hardlight::protocol::frame::Role::Client, usize::MAX)
        {
            let end_of = at + h.header_len + h.payload_len as usize;
            if end_of > buf.len() {
                break;
            }
            let payload = &buf[at + h.header_len..end_of];
            match h.opcode {
                hardlight::protocol::frame::Opcode::Close => {
                    return (events, dropped, Some(u16::from_be_bytes([payload[0], payload[1]])))
                }
                _ => match payload.first() {
                    Some(&hardlight::protocol::envelope::KIND_EVENT) => events += 1,
                    Some(&hardlight::protocol::envelope::KIND_EVENTS_DROPPED) => {
                        dropped += hardlight::protocol::events::parse_events_dropped(&payload[1..]).unwrap() as u64
                    }
                    _ => {}
                },
            }
            at = end_of;
        }
        buf.drain(..at);
    }
}

async fn fast_reader(
    server: &ServerHandle,
) -> (HubClient<Connection>, Arc<AtomicU64>, tokio::task::JoinHandle<(u64, Duration)>) {
    let c = HubClient::new(Connection::connect(&url(server)).await.unwrap());
    c.subscribe("flood".into()).await.unwrap();
    let mut events = c.caller().events::<Note>();
    let progress = Arc::new(AtomicU64::new(0));
    let seen = progress.clone();
    let reader = tokio::spawn(async move {
        let start = Instant::now();
        let mut got = 0u64;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
                Ok(Ok(note)) => {
                    assert_eq!(note.n, got, "fast reader gets every event, in order");
                    got += 1;
                    seen.store(got, Ordering::Relaxed);
                    if got == 20_000 {
                        return (got, start.elapsed());
                    }
                }
                other => panic!("fast reader stopped after {got}: {other:?}"),
            }
        }
    });
    (c, progress, reader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_drop_oldest_loses_only_its_own_events_and_sees_the_count() {
    let server = start_hub(Limits { max_outbound_bytes: 256 * 1024, ..Limits::default() });
    let mut slow = stalled_subscriber(&server, false).await;
    let (fast, progress, reader) = fast_reader(&server).await;
    let emitter = server.emitter();
    tokio::task::spawn_blocking(move || flood(&emitter, 20_000, &progress)).await.unwrap();
    let (got, _) = reader.await.unwrap();
    assert_eq!(got, 20_000);
    assert_eq!(fast.caller().events_dropped(), 0);
    // Now the slow client reads everything that was kept for it.
    let (events, dropped, close) = drain_raw(&mut slow, Duration::from_secs(3)).await;
    assert_eq!(close, None, "drop-oldest keeps the connection open");
    assert!(dropped > 0, "a client that never read must have lost events");
    assert_eq!(events + dropped, 20_000, "every event is either delivered or counted as dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_under_disconnect_policy_is_closed_4001_and_others_keep_going() {
    // The stalled client reads its backlog (and the Close behind it) only
    // after the flood, which takes seconds: the server must not give up on
    // the closing handshake before then.
    let server = start_hub(Limits {
        max_outbound_bytes: 256 * 1024,
        close_timeout: Duration::from_secs(30),
        ..Limits::default()
    });
    let mut slow = stalled_subscriber(&server, true).await;
    let (_fast, progress, reader) = fast_reader(&server).await;
    let emitter = server.emitter();
    tokio::task::spawn_blocking(move || flood(&emitter, 20_000, &progress)).await.unwrap();
    let (got, _) = reader.await.unwrap();
    assert_eq!(got, 20_000, "the fast reader is not held back");
    let (_, _, close) = drain_raw(&mut slow, Duration::from_secs(10)).await;
    assert_eq!(close, Some(4001));
    let _ = slow.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_messages_survive_a_server_restart() {
    let dir = std::env::temp_dir().join(format!("hardlight-chat-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let start = || {
        let store = chat_server::Store::open(&dir).unwrap();
        Server::builder("127.0.0.1:0".parse().unwrap())
            .backend(common::backend())
            .unpinned(2)
            .serve(chat_server::factory(store))
            .unwrap()
    };
    let server = start();
    let alice = api::ChatClient::new(Connection::connect(&url(&server)).await.unwrap());
    let bob_conn = Connection::connect(&url(&server)).await.unwrap();
    let mut bob_sees = bob_conn.events::<api::ChatMessage>();
    let bob = api::ChatClient::new(bob_conn);
    assert!(alice.join("alice".into(), "general".into()).await.unwrap().is_empty());
    assert!(bob.join("bob".into(), "general".into()).await.unwrap().is_empty());
    bob.join("bob".into(), "other".into()).await.unwrap();
    assert_eq!(alice.send_message("other".into(), "nope".into()).await.unwrap(), Err(api::ChatError::NotJoined));
    for text in ["hello", "multi\tline\ntext", "bye"] {
        alice.send_message("general".into(), text.into()).await.unwrap().unwrap();
    }
    for text in ["hello", "multi\tline\ntext", "bye"] {
        let m = tokio::time::timeout(Duration::from_secs(5), bob_sees.recv()).await.unwrap().unwrap();
        assert_eq!((m.user.as_str(), m.text.as_str()), ("alice", text));
    }
    drop((alice, bob));
    tokio::task::spawn_blocking(move || server.shutdown()).await.unwrap();

    let server = start();
    let carol = api::ChatClient::new(Connection::connect(&url(&server)).await.unwrap());
    let history = carol.join("carol".into(), "general".into()).await.unwrap();
    let texts: Vec<&str> = history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, vec!["hello", "multi\tline\ntext", "bye"]);
    assert_eq!(history.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    tokio::task::spawn_blocking(move || server.shutdown()).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
