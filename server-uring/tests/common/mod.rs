//! A test service and helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hardlight::rkyv;
use hardlight::server::{Backend, ConnectContext, Refusal, Server, ServerBuilder, ServerHandle};

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(crate = hardlight::rkyv)]
pub enum MathError {
    DivByZero,
}

#[hardlight::rpc]
pub trait Probe {
    async fn increment(&self, amount: u64) -> u64;
    async fn get(&self) -> u64;
    async fn divide(&self, a: u64, b: u64) -> Result<u64, MathError>;
    /// Sleeps on the server's executor, then echoes `value`.
    async fn sleep_echo(&self, ms: u32, value: u64) -> u64;
    async fn boom(&self) -> u64;
    async fn echo(&self, data: Vec<u8>) -> Vec<u8>;
    /// Which shard serves this connection, and a header from the upgrade.
    async fn whoami(&self) -> (u32, String);
}

pub struct ProbeHandler {
    pub value: Arc<AtomicU64>,
    pub shard: usize,
    pub header: String,
}

impl Probe for ProbeHandler {
    async fn increment(&self, amount: u64) -> u64 {
        self.value.fetch_add(amount, Ordering::SeqCst) + amount
    }
    async fn get(&self) -> u64 {
        self.value.load(Ordering::SeqCst)
    }
    async fn divide(&self, a: u64, b: u64) -> Result<u64, MathError> {
        a.checked_div(b).ok_or(MathError::DivByZero)
    }
    async fn sleep_echo(&self, ms: u32, value: u64) -> u64 {
        hardlight::server::rt::sleep(Duration::from_millis(ms as u64)).await;
        value
    }
    async fn boom(&self) -> u64 {
        panic!("boom on purpose")
    }
    async fn echo(&self, data: Vec<u8>) -> Vec<u8> {
        data
    }
    async fn whoami(&self) -> (u32, String) {
        (self.shard as u32, self.header.clone())
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

/// The backend the calling test binary runs on. The `glommio` test binary
/// (tests/glommio.rs) includes the other suites as its modules, so
/// everything compiled under its crate runs on `Backend::Glommio`; every
/// other binary runs on the default, the ring.
pub fn backend() -> Backend {
    if module_path!().starts_with("glommio::") {
        Backend::Glommio
    } else {
        Backend::Ring
    }
}

/// A builder on a free loopback port, one unpinned shard unless changed,
/// on this binary's [`backend`].
pub fn builder() -> ServerBuilder {
    init_tracing();
    Server::builder("127.0.0.1:0".parse().unwrap()).unpinned(1).backend(backend())
}

/// [`builder`] on a given address (a server restarted on its port).
pub fn builder_at(addr: std::net::SocketAddr) -> ServerBuilder {
    init_tracing();
    Server::builder(addr).unpinned(1).backend(backend())
}

pub fn start(builder: ServerBuilder) -> (ServerHandle, Arc<AtomicU64>) {
    let value = Arc::new(AtomicU64::new(0));
    let v = value.clone();
    let server = builder
        .serve(move |ctx: &ConnectContext<'_>| {
            if ctx.request.header("x-refuse").is_some() {
                return Err(Refusal::new(403, "refused on request"));
            }
            Ok(ProbeService::new(ProbeHandler {
                value: v.clone(),
                shard: ctx.shard,
                header: ctx.request.header("x-test").unwrap_or("").to_string(),
            }))
        })
        .expect("server starts");
    (server, value)
}

pub fn url(server: &ServerHandle) -> String {
    format!("ws://{}", server.local_addr())
}
