//! Per-call context, deadlines and CANCEL over real sockets: the real server
//! on 127.0.0.1 (this binary's backend, see `common::backend`) and the real
//! tokio client.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{builder, url};
use hardlight::client::{ClientConfig, Connection};
use hardlight::server::{CallContext, ConnectContext, Refusal};
use hardlight::{CallError, CallErrorCode};

#[derive(Clone, Default, PartialEq, hardlight::ConnectionState)]
pub struct Visits {
    pub count: u64,
}

#[hardlight::wire]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub call_id: u8,
    pub connection_id: u64,
    pub peer_port: u16,
    /// Milliseconds left before the client's deadline, if it sent one.
    pub remaining_ms: Option<u64>,
    /// The connection's state, reached through the context (no handle
    /// passed to the handler).
    pub visits: u64,
}

#[hardlight::rpc]
pub trait Ctx {
    /// What the handler's context says about this call.
    async fn whoami(&self) -> Seen;
    /// Waits `ms` on the server's timer; counts a drop that came before the end.
    async fn wait(&self, ms: u64) -> u64;
}

struct Handler {
    /// Handlers dropped before they finished (cancelled or past their deadline).
    dropped_early: Arc<AtomicUsize>,
}

/// Counts a drop unless disarmed (the handler finished).
struct DropProbe(Arc<AtomicUsize>, bool);
impl Drop for DropProbe {
    fn drop(&mut self) {
        if self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Ctx for Handler {
    async fn whoami(&self) -> Seen {
        let call = CallContext::current().expect("a handler runs inside its call's context");
        let state = call.state::<Visits>().expect("the factory created Visits");
        state.lock().count += 1;
        Seen {
            method: call.method_name().to_string(),
            call_id: call.id(),
            connection_id: call.connection_id(),
            peer_port: call.peer().port(),
            remaining_ms: call.remaining().map(|d| d.as_millis() as u64),
            visits: state.get().count,
        }
    }

    async fn wait(&self, ms: u64) -> u64 {
        let mut probe = DropProbe(self.dropped_early.clone(), true);
        hardlight::server::rt::sleep(Duration::from_millis(ms)).await;
        probe.1 = false;
        ms
    }
}

fn start() -> (hardlight::server::ServerHandle, Arc<AtomicUsize>) {
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    let server = builder()
        .serve(move |ctx: &ConnectContext<'_>| {
            let _ = ctx.state(Visits::default());
            Ok::<_, Refusal>(CtxService::new(Handler { dropped_early: d.clone() }))
        })
        .expect("server starts");
    (server, dropped)
}

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < Duration::from_secs(5), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_sees_its_call_connection_deadline_and_state_through_the_context() {
    let (server, _) = start();
    let conn = Connection::connect_with(&url(&server), ClientConfig::default().call_timeout(Duration::from_secs(7)))
        .await
        .unwrap();
    let client = CtxClient::new(conn.clone());
    let a = client.whoami().await.unwrap();
    let b = client.whoami().await.unwrap();
    assert_eq!(a.method, "whoami");
    assert_eq!(a.connection_id, b.connection_id, "one connection, one id");
    assert_ne!(a.peer_port, 0);
    let left = a.remaining_ms.expect("the client's timeout arrived as a deadline");
    assert!((6_000..=7_000).contains(&left), "{left} ms left of a 7 s timeout");
    assert_eq!((a.visits, b.visits), (1, 2), "state reached through the context is the connection's");
    assert_eq!(conn.state::<Visits>().get().unwrap().count, 2, "and it syncs to the client");

    let other = CtxClient::new(Connection::connect(&url(&server)).await.unwrap());
    let c = other.whoami().await.unwrap();
    assert_ne!(c.connection_id, a.connection_id, "each connection has its own id");
    assert_eq!(c.visits, 1);
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_deadline_is_dropped_on_the_server_and_its_id_comes_back() {
    let (server, dropped) = start();
    let conn = Connection::connect(&url(&server)).await.unwrap();
    let short = CtxClient::new(conn.with_call_timeout(Duration::from_millis(200)));
    let t0 = Instant::now();
    match short.wait(60_000).await {
        Err(CallError::Timeout(t)) => assert_eq!(t, Duration::from_millis(200)),
        // The server's DeadlineExceeded may win the race with the client's timer.
        Err(CallError::Rejected { code: CallErrorCode::DeadlineExceeded, .. }) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(5));
    wait_for("the server to drop the handler", || dropped.load(Ordering::SeqCst) == 1).await;
    wait_for("the id to be released", || conn.calls_in_flight() == 0).await;
    assert_eq!(CtxClient::new(conn).wait(1).await.unwrap(), 1, "the connection goes on");
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_call_future_cancels_its_handler_on_the_server() {
    let (server, dropped) = start();
    let conn = Connection::connect_with(&url(&server), ClientConfig::default().call_timeout(Duration::from_secs(60)))
        .await
        .unwrap();
    let client = CtxClient::new(conn.clone());
    // 100 calls that would run for a minute, abandoned after they started.
    let calls: Vec<_> = (0..100)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.wait(60_000).await })
        })
        .collect();
    wait_for("100 calls in flight", || conn.calls_in_flight() == 100).await;
    for c in calls {
        c.abort();
    }
    wait_for("every handler dropped by CANCEL", || dropped.load(Ordering::SeqCst) == 100).await;
    wait_for("every id released by the server's answer", || conn.calls_in_flight() == 0).await;
    assert_eq!(client.wait(1).await.unwrap(), 1);
    server.shutdown();
}

#[test]
fn outside_a_handler_there_is_no_call() {
    assert!(CallContext::current().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_ends_a_call_at_its_deadline_without_any_further_bytes_from_the_client() {
    use futures::{SinkExt, StreamExt};
    use hardlight::protocol::envelope::{encode_call_deadline, KIND_CALL_ERROR};
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

    let (server, dropped) = start();
    let mut req = url(&server).into_client_request().unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", "hl/1".parse().unwrap());
    let mut ws = tokio_tungstenite::connect_async(req).await.unwrap().0;
    // A raw client: a 100 ms deadline on a one-minute handler, and no CANCEL.
    let input = hardlight::protocol::wire::encode(&CtxWaitInput { ms: 60_000 }).unwrap();
    let mut msg = Vec::new();
    encode_call_deadline(&mut msg, 7, CtxMethod::Wait.id(), &input, 100);
    let t0 = Instant::now();
    ws.send(Message::Binary(msg.into())).await.unwrap();
    let answer = loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("an answer in time") {
            Some(Ok(Message::Binary(b))) if b[0] == KIND_CALL_ERROR => break b.to_vec(),
            Some(Ok(_)) => continue, // LIMITS, STATE, FEATURES
            other => panic!("connection ended: {other:?}"),
        }
    };
    assert_eq!(&answer[..3], &[KIND_CALL_ERROR, 7, CallErrorCode::DeadlineExceeded as u8]);
    assert!(t0.elapsed() >= Duration::from_millis(100), "not before the deadline: {:?}", t0.elapsed());
    wait_for("the server to drop the handler", || dropped.load(Ordering::SeqCst) == 1).await;
    server.shutdown();
}
