//! After 10,000 connections open and close, the server's connection count
//! and the memory its shard threads hold return to where they started.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use hardlight::server::{ConnectContext, Refusal, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Counting;
/// Bytes allocated minus bytes freed on shard threads.
static SHARD_LIVE: AtomicI64 = AtomicI64::new(0);
thread_local! {
    static ON_SHARD: Cell<bool> = const { Cell::new(false) };
}
fn on_shard() -> bool {
    ON_SHARD.try_with(Cell::get).unwrap_or(false)
}
// SAFETY: forwards to the system allocator unchanged; the thread-local is
// const-initialized, so reading it does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if on_shard() {
            SHARD_LIVE.fetch_add(l.size() as i64, Ordering::Relaxed);
        }
        // SAFETY: caller upholds `alloc`'s contract.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if on_shard() {
            SHARD_LIVE.fetch_sub(l.size() as i64, Ordering::Relaxed);
        }
        // SAFETY: caller upholds `dealloc`'s contract.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if on_shard() {
            SHARD_LIVE.fetch_add(n as i64 - l.size() as i64, Ordering::Relaxed);
        }
        // SAFETY: caller upholds `realloc`'s contract.
        unsafe { System.realloc(p, l, n) }
    }
}
#[global_allocator]
static A: Counting = Counting;

#[derive(Clone, Debug, Default, PartialEq, hardlight::ConnectionState)]
struct S {
    n: u64,
}

#[hardlight::rpc]
trait Ping {
    async fn ping(&self, n: u64) -> u64;
}
struct H;
impl Ping for H {
    async fn ping(&self, n: u64) -> u64 {
        n
    }
}

const UPGRADE: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: hl/1\r\n\r\n";

/// Opens a connection, completes the upgrade, makes one call, closes cleanly.
async fn one(addr: std::net::SocketAddr, input: &[u8]) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(UPGRADE).await.unwrap();
    let mut msg = Vec::new();
    hardlight::protocol::envelope::encode_call(&mut msg, 0, PingMethod::Ping.id(), input);
    let mut out = Vec::new();
    hardlight::protocol::frame::write_masked_frame(
        &mut out,
        true,
        hardlight::protocol::frame::Opcode::Binary,
        &msg,
        [1, 2, 3, 4],
    );
    hardlight::protocol::frame::write_masked_frame(
        &mut out,
        true,
        hardlight::protocol::frame::Opcode::Close,
        &1000u16.to_be_bytes(),
        [5, 6, 7, 8],
    );
    tcp.write_all(&out).await.unwrap();
    // Read until the server closes: 101, features, state, reply, close echo.
    let mut buf = [0u8; 1024];
    let mut got = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => got += n,
            _ => panic!("server did not finish the connection"),
        }
    }
    assert!(got > 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connections_leave_no_connections_tasks_or_memory_behind() {
    let server = Server::builder("127.0.0.1:0".parse().unwrap())
        .unpinned(2)
        .on_shard_start(|_| ON_SHARD.with(|f| f.set(true)))
        .serve(|ctx: &ConnectContext<'_>| {
            let _state = ctx.state(S::default());
            ctx.events().subscribe("everyone");
            Ok::<_, Refusal>(PingService::new(H))
        })
        .unwrap();
    let addr = server.local_addr();
    let input = hardlight::protocol::wire::encode(&PingPingInput { n: 1 }).unwrap().to_vec();
    let run = |n: usize| {
        let input = input.clone();
        async move {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..n {
                let input = input.clone();
                set.spawn(async move { one(addr, &input).await });
                if i % 64 == 63 {
                    while set.join_next().await.is_some() {}
                }
            }
            while set.join_next().await.is_some() {}
        }
    };
    let settle = || async {
        let t0 = Instant::now();
        while server.stats().open.get() != 0 {
            assert!(t0.elapsed() < Duration::from_secs(10), "connections left open: {}", server.stats().open.get());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Let shard-side frees land.
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Warm-up: pools, slabs and the registry reach their working size.
    run(500).await;
    settle().await;
    let before = SHARD_LIVE.load(Ordering::Relaxed);
    run(10_000).await;
    settle().await;
    let after = SHARD_LIVE.load(Ordering::Relaxed);
    assert_eq!(server.stats().upgrades.get(), 10_500);
    assert_eq!(server.stats().open.get(), 0, "connection tasks all finished");
    let growth = after - before;
    eprintln!("shard-thread live bytes: before {before}, after {after}, growth {growth}");
    // A leak of even 64 bytes per connection would show as 640 KB.
    assert!(growth < 256 * 1024, "shard threads hold {growth} more bytes after 10,000 connections");
}
