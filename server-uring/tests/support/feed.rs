//! The service and TCP proxy the reconnect tests share: a feed of numbered
//! ticks on topic "t", a login that widens the feature set, and a proxy
//! that cuts every connection through it on command.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hardlight::server::{ConnectContext, ConnectionEvents, Refusal, ServerBuilder, ServerHandle};
use hardlight::{Features, StateHandle};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

#[hardlight::wire]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    pub n: u64,
}

#[derive(Clone, Debug, Default, PartialEq, hardlight::ConnectionState)]
pub struct Session {
    pub user: String,
    /// Which server process (test-chosen number) made this state.
    pub boot: u64,
}

#[hardlight::rpc(events(Tick))]
pub trait Feed {
    /// Enables every method for the token "secret".
    async fn login(&self, token: String) -> bool;
    async fn whoami(&self) -> String;
    /// Counts its runs, sleeps, echoes. Idempotent: a client opened with
    /// the schema resends it after a drop.
    #[idempotent]
    async fn slow(&self, ms: u32, v: u64) -> u64;
    async fn echo(&self, v: u64) -> u64;
    async fn follow(&self, topic: String);
}

pub struct FeedHandler {
    pub features: Features,
    pub state: StateHandle<Session>,
    pub events: ConnectionEvents,
    pub runs: Arc<AtomicU64>,
}

impl Feed for FeedHandler {
    async fn login(&self, token: String) -> bool {
        if token != "secret" {
            return false;
        }
        self.state.lock().user = "alice".into();
        self.features.enable_all();
        true
    }
    async fn whoami(&self) -> String {
        self.state.read(|s| s.user.clone())
    }
    async fn slow(&self, ms: u32, v: u64) -> u64 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        hardlight::server::rt::sleep(Duration::from_millis(ms as u64)).await;
        v
    }
    async fn echo(&self, v: u64) -> u64 {
        v
    }
    async fn follow(&self, topic: String) {
        self.events.subscribe(&topic);
    }
}

/// Serves the feed. Connections with header `x-auto` are logged in and
/// subscribed to "t" by the factory; others may call only `login`.
pub fn serve_feed(builder: ServerBuilder, boot: u64, runs: Arc<AtomicU64>) -> ServerHandle {
    builder
        .serve(move |ctx: &ConnectContext<'_>| {
            let features = ctx.features();
            let events = ctx.events();
            let auto = ctx.request.header("x-auto").is_some();
            if auto {
                events.subscribe("t");
            } else {
                features.only([FeedMethod::Login.id()]);
            }
            let user = if auto { "auto".to_string() } else { String::new() };
            Ok::<_, Refusal>(FeedService::new(FeedHandler {
                features,
                state: ctx.state(Session { user, boot }),
                events,
                runs: runs.clone(),
            }))
        })
        .expect("server starts")
}

/// Emits ticks `from..to` on topic "t", retrying while the mesh is full.
pub fn emit_ticks(server: &ServerHandle, from: u64, to: u64, pause: Duration) {
    let emitter = server.emitter();
    for n in from..to {
        while emitter.to_topic("t", &Tick { n }).is_err() {
            std::thread::sleep(Duration::from_micros(200));
        }
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
}

/// A TCP proxy to `upstream` that cuts every open connection through it when
/// told, and refuses new ones while `down`.
pub struct Proxy {
    pub addr: SocketAddr,
    cut: broadcast::Sender<()>,
    pub down: Arc<AtomicBool>,
    pub accepted: Arc<AtomicU64>,
    upstream: Arc<std::sync::Mutex<SocketAddr>>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, _) = broadcast::channel(16);
        let down = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let (c, d, a) = (cut.clone(), down.clone(), accepted.clone());
        let upstream = Arc::new(std::sync::Mutex::new(upstream));
        let up = upstream.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                if d.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection fail
                }
                a.fetch_add(1, Ordering::SeqCst);
                let mut cut = c.subscribe();
                let upstream = *up.lock().unwrap();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.recv() => {
                            // Dropped mid-stream, wherever the bytes were.
                        }
                    }
                });
            }
        });
        Self { addr, cut, down, accepted, upstream }
    }

    /// Sends new connections to `to` (a server restarted elsewhere).
    pub fn retarget(&self, to: SocketAddr) {
        *self.upstream.lock().unwrap() = to;
    }

    /// Cuts every connection through the proxy now.
    pub fn cut(&self) {
        let _ = self.cut.send(());
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }
}
