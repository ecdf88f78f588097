//! Connection state and feature sets, end to end: the real server, the real
//! client, an authentication flow.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hardlight::client::{ClientConfig, Connection};
use hardlight::server::{ConnectContext, Refusal, Server, ServerHandle};
use hardlight::{rkyv, CallError, CallErrorCode, Features, StateHandle};

#[derive(Clone, Debug, Default, PartialEq, hardlight::ConnectionState)]
pub struct Session {
    pub user: Option<String>,
    pub counter: u64,
    pub tags: Vec<String>,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(crate = hardlight::rkyv)]
pub enum AuthError {
    BadToken,
}

#[hardlight::rpc]
pub trait Account {
    async fn authenticate(&self, token: String) -> Result<String, AuthError>;
    /// Adds to the counter in state and returns the new value, after sleeping `ms`.
    async fn bump(&self, by: u64, ms: u32) -> u64;
    async fn tag(&self, tag: String);
    async fn secret(&self) -> u64;
    async fn logout(&self);
}

struct Handler {
    state: StateHandle<Session>,
    features: Features,
    secret_runs: Arc<AtomicU64>,
}

const TOKEN: &str = "letmein";

impl Account for Handler {
    async fn authenticate(&self, token: String) -> Result<String, AuthError> {
        if token != TOKEN {
            return Err(AuthError::BadToken);
        }
        self.state.lock().user = Some("alice".into());
        self.features.enable_all();
        Ok("alice".into())
    }

    async fn bump(&self, by: u64, ms: u32) -> u64 {
        hardlight::server::rt::sleep(Duration::from_millis(ms as u64)).await;
        let mut s = self.state.lock();
        s.counter += by;
        s.counter
    }

    async fn tag(&self, tag: String) {
        self.state.lock().tags.push(tag);
    }

    async fn secret(&self) -> u64 {
        self.secret_runs.fetch_add(1, Ordering::SeqCst);
        42
    }

    async fn logout(&self) {
        self.state.lock().user = None;
        self.features.only([AccountMethod::Authenticate.id()]);
    }
}

fn start() -> (ServerHandle, Arc<AtomicU64>) {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let runs = Arc::new(AtomicU64::new(0));
    let r = runs.clone();
    let server = Server::builder("127.0.0.1:0".parse().unwrap())
        .backend(common::backend())
        .unpinned(2)
        .serve(move |ctx: &ConnectContext<'_>| {
            let authed = ctx.request.cookie("token").as_deref() == Some(TOKEN);
            let state = ctx.state(Session { user: authed.then(|| "alice".to_string()), ..Default::default() });
            let features = ctx.features();
            if !authed {
                features.only([AccountMethod::Authenticate.id()]);
            }
            Ok::<_, Refusal>(AccountService::new(Handler { state, features, secret_runs: r.clone() }))
        })
        .unwrap();
    (server, runs)
}

fn url(s: &ServerHandle) -> String {
    format!("ws://{}", s.local_addr())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_connection_reaches_only_authenticate_and_handler_never_runs() {
    let (server, runs) = start();
    let conn = Connection::connect(&url(&server)).await.unwrap();
    let enabled: Vec<u16> = conn.features().expect("announced at connect").enabled().collect();
    assert_eq!(enabled, vec![AccountMethod::Authenticate.id()]);
    assert!(!conn.is_enabled(AccountMethod::Secret.id()));
    let client = AccountClient::new(conn.clone());
    match client.secret().await {
        Err(CallError::Rejected { code: CallErrorCode::MethodDisabled, detail }) => {
            assert!(detail.contains("secret"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    // Rejected before the input was decoded: garbage input gets the same answer.
    match conn.call(AccountMethod::Bump.id(), &[0xff; 3]).await {
        Err(CallError::Rejected { code, .. }) => assert_eq!(code, CallErrorCode::MethodDisabled),
        other => panic!("{other:?}"),
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0, "the handler never ran");
    assert_eq!(client.authenticate("wrong".into()).await.unwrap(), Err(AuthError::BadToken));
    assert!(!conn.is_enabled(AccountMethod::Secret.id()), "a failed login enables nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticating_mid_connection_enables_the_full_set_before_the_response() {
    let (server, runs) = start();
    let conn = Connection::connect(&url(&server)).await.unwrap();
    let mirror = conn.state::<Session>();
    assert_eq!(mirror.get().unwrap().user, None);
    let client = AccountClient::new(conn.clone());
    assert_eq!(client.authenticate(TOKEN.into()).await.unwrap(), Ok("alice".into()));
    // Both the feature change and the state change were on the wire before the response.
    assert!(conn.is_enabled(AccountMethod::Secret.id()));
    assert_eq!(mirror.get().unwrap().user.as_deref(), Some("alice"));
    assert_eq!(client.secret().await.unwrap(), 42);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    client.logout().await.unwrap();
    assert!(!conn.is_enabled(AccountMethod::Secret.id()));
    assert_eq!(mirror.get().unwrap().user, None);
    assert!(matches!(client.secret().await, Err(CallError::Rejected { code: CallErrorCode::MethodDisabled, .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_cookie_enables_the_set_at_connect_and_initial_state_arrives() {
    let (server, _) = start();
    let cfg = ClientConfig::default().header("cookie", format!("theme=dark; token={TOKEN}"));
    let conn = Connection::connect_with(&url(&server), cfg).await.unwrap();
    // Populated when connect returns, before any call.
    assert_eq!(conn.state::<Session>().get().unwrap().user.as_deref(), Some("alice"));
    assert!(conn.is_enabled(AccountMethod::Secret.id()));
    assert_eq!(AccountClient::new(conn).secret().await.unwrap(), 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_change_reaches_the_client_before_the_calls_response() {
    let (server, _) = start();
    let cfg = ClientConfig::default().header("cookie", format!("token={TOKEN}"));
    let conn = Connection::connect_with(&url(&server), cfg).await.unwrap();
    let mirror = conn.state::<Session>();
    let client = AccountClient::new(conn.clone());
    for i in 1..=20u64 {
        let v = client.bump(1, 0).await.unwrap();
        assert_eq!(v, i);
        assert_eq!(mirror.get().unwrap().counter, i, "response seen, so its state change was seen");
    }
    client.tag("x".into()).await.unwrap();
    assert_eq!(mirror.get().unwrap().tags, vec!["x".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_state_changes_leave_the_mirror_equal_to_the_server() {
    let (server, _) = start();
    let cfg = ClientConfig::default().header("cookie", format!("token={TOKEN}"));
    let conn = Connection::connect_with(&url(&server), cfg).await.unwrap();
    let mirror = conn.state::<Session>();
    let mut tasks = Vec::new();
    for i in 0..50u64 {
        let c = AccountClient::new(conn.clone());
        let m = conn.state::<Session>();
        tasks.push(tokio::spawn(async move {
            let v = c.bump(i + 1, (i % 7) as u32 * 3).await.unwrap();
            // Each response follows its own state change.
            assert!(m.get().unwrap().counter >= v);
            v
        }));
    }
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.unwrap());
    }
    let total: u64 = (1..=50).sum();
    assert_eq!(seen.iter().max(), Some(&total));
    assert_eq!(mirror.get().unwrap().counter, total);
    // The server's own value, read through a call that changes nothing else.
    let client = AccountClient::new(conn);
    assert_eq!(client.bump(0, 0).await.unwrap(), total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_can_be_watched() {
    let (server, _) = start();
    let cfg = ClientConfig::default().header("cookie", format!("token={TOKEN}"));
    let conn = Connection::connect_with(&url(&server), cfg).await.unwrap();
    let mut mirror = conn.state::<Session>();
    let client = AccountClient::new(conn.clone());
    let watcher = tokio::spawn(async move {
        loop {
            let s = mirror.changed().await.unwrap();
            if s.tags.len() == 2 {
                return s.tags;
            }
        }
    });
    client.tag("a".into()).await.unwrap();
    client.tag("b".into()).await.unwrap();
    let tags = tokio::time::timeout(Duration::from_secs(5), watcher).await.unwrap().unwrap();
    assert_eq!(tags, vec!["a".to_string(), "b".to_string()]);
}
