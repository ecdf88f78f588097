//! Many calls pending at once: handlers that wait on the shard's blocking
//! pool and timers (`rt::spawn_blocking`, `rt::sleep`: glommio's on a
//! glommio shard, the ring's own on a ring shard; tests/glommio.rs runs this
//! file again on glommio), 256 in flight per connection (the protocol's maximum), for
//! many rounds on several connections.
//!
//! Regression test for a wrapped task reference count: glommio 0.9 counts a
//! task's wakers in an i16, and the driver used to poll every pending call
//! with the connection task's own waker, so a few hundred pending
//! blocking-pool waits wrapped the count (HandlerPanicked, then a waker
//! dropped on a freed task). See `server-uring/src/slots.rs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hardlight::client::Connection;
use hardlight::server::rt;
use hardlight::server::{ConnectContext, Refusal, Server};

mod common;

#[hardlight::rpc]
pub trait Waits {
    /// Runs a job of `ms` milliseconds on the blocking pool, then
    /// returns `v + 1`.
    async fn blocking(&self, ms: u32, v: u64) -> u64;
    /// Sleeps 1 ms on the shard's timers `n` times (each wake-up is a pass of
    /// the connection task while the other calls pend), then returns `v * 2`.
    async fn ticks(&self, n: u32, v: u64) -> u64;
    /// Both: a timer, then the blocking pool; returns `v`.
    async fn both(&self, v: u64) -> u64;
}

struct Handler {
    ran: Arc<AtomicU64>,
}

impl Waits for Handler {
    async fn blocking(&self, ms: u32, v: u64) -> u64 {
        self.ran.fetch_add(1, Ordering::Relaxed);
        rt::spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(ms as u64));
            v + 1
        })
        .await
    }
    async fn ticks(&self, n: u32, v: u64) -> u64 {
        self.ran.fetch_add(1, Ordering::Relaxed);
        for _ in 0..n {
            rt::sleep(Duration::from_millis(1)).await;
        }
        v * 2
    }
    async fn both(&self, v: u64) -> u64 {
        self.ran.fetch_add(1, Ordering::Relaxed);
        rt::sleep(Duration::from_millis(1)).await;
        rt::spawn_blocking(move || v).await
    }
}

const CONNECTIONS: usize = 3;
const IN_FLIGHT: u64 = 256;
const ROUNDS: u64 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_fifty_six_pending_calls_per_connection_all_answered() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let ran = Arc::new(AtomicU64::new(0));
    let r = ran.clone();
    let server = Server::builder("127.0.0.1:0".parse().unwrap())
        .unpinned(2)
        .backend(common::backend())
        .serve(move |_: &ConnectContext<'_>| Ok::<_, Refusal>(WaitsService::new(Handler { ran: r.clone() })))
        .expect("server starts");
    let url = format!("ws://{}", server.local_addr());

    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push(WaitsClient::new(Connection::connect(&url).await.expect("connect")));
    }
    let mut total = 0u64;
    for round in 0..ROUNDS {
        let mut tasks = Vec::new();
        for (c, client) in clients.iter().enumerate() {
            for i in 0..IN_FLIGHT {
                let client = WaitsClient::new(client.caller().clone());
                let v = round * 1_000_000 + c as u64 * 1_000 + i;
                tasks.push(tokio::spawn(async move {
                    // Blocking jobs queue up on the pool (each holds its
                    // call pending for a while); ticking calls wake the
                    // connection task about once a millisecond meanwhile.
                    match i % 4 {
                        0 | 2 => (client.blocking(5, v).await, v + 1),
                        1 => (client.ticks(700 + (i % 200) as u32, v).await, v * 2),
                        _ => (client.both(v).await, v),
                    }
                }));
            }
        }
        for t in tasks {
            let (got, want) = t.await.expect("task");
            match got {
                Ok(v) => assert_eq!(v, want, "round {round}: answered to the wrong caller"),
                Err(e) => panic!("round {round}: call failed: {e}"),
            }
            total += 1;
        }
    }
    assert_eq!(total, CONNECTIONS as u64 * IN_FLIGHT * ROUNDS);
    assert_eq!(ran.load(Ordering::Relaxed), total, "every handler ran exactly once");
    for c in &clients {
        assert!(c.caller().close_reason().is_none(), "connection stayed open");
    }
    drop(clients);
    server.shutdown();
}
