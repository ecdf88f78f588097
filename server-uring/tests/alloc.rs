//! Heap allocations on the server's shard threads per call, counted by a
//! global allocator: decoding a fixed-size input, running the handler,
//! encoding the reply and framing it must not allocate per message.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use hardlight::client::Connection;
use hardlight::server::{Backend, ConnectContext, Refusal, Server};

struct Counting;

static SHARD_ALLOCS: AtomicU64 = AtomicU64::new(0);
static SIZES: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];

thread_local! {
    static ON_SHARD: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards to the system allocator unchanged; the thread-local read
// does not allocate (const-initialized `Cell<bool>`).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ON_SHARD.try_with(Cell::get).unwrap_or(false) {
            SHARD_ALLOCS.fetch_add(1, Ordering::Relaxed);
            SIZES[(layout.size() / 16).min(63)].fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ON_SHARD.try_with(Cell::get).unwrap_or(false) {
            SHARD_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[hardlight::rpc]
pub trait Fixed {
    async fn echo(&self, payload: [u8; 64]) -> [u8; 64];
}

struct FixedHandler;
impl Fixed for FixedHandler {
    async fn echo(&self, payload: [u8; 64]) -> [u8; 64] {
        payload
    }
}

/// One measurement at a time: the count is global, and another test's
/// shard counting meanwhile would blur it.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_size_calls_do_not_allocate_per_message_on_the_ring() {
    // The ring's loop, executor and multishot receive allocate nothing per
    // wake-up either: what is left is rare growth (a spill, a buffer
    // growing), far below one per hundred calls.
    let per_call = allocations_per_call(Backend::Ring).await;
    assert!(per_call < 0.01, "{per_call:.4} allocations per call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_size_calls_do_not_allocate_per_message_on_glommio() {
    // HardLight's own per-call path allocates nothing (see the sans-I/O test
    // `conn::alloc_tests`). What remains here is glommio's, once per wake-up
    // rather than per message: a readiness `Source` (~500 bytes) armed after
    // each socket read that does not fill the buffer, its waiter list, and a
    // BTreeMap node (~450 bytes) from `Timers::process_timers`, which splits
    // its timer map on every reactor poll while any timer (here, the
    // connection's keepalive) is armed. So the total must stay below one per
    // call, and falls as reads carry more messages.
    let per_call = allocations_per_call(Backend::Glommio).await;
    assert!(per_call < 1.0, "{per_call:.3} allocations per call");
}

/// Shard-thread allocations per call over 32,000 calls after a warm-up.
async fn allocations_per_call(backend: Backend) -> f64 {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = Server::builder("127.0.0.1:0".parse().unwrap())
        .backend(backend)
        .unpinned(1)
        .on_shard_start(|_| ON_SHARD.with(|f| f.set(true)))
        .serve(|_: &ConnectContext<'_>| Ok::<_, Refusal>(FixedService::new(FixedHandler)))
        .unwrap();
    let conn = Connection::connect(&format!("ws://{}", server.local_addr())).await.unwrap();
    let client = FixedClient::new(conn.clone());
    let run = |n: usize| {
        let mut tasks = Vec::new();
        // 128 callers keep many calls in flight, so most socket reads carry
        // several messages, as on a loaded server.
        for t in 0..128u8 {
            let c = FixedClient::new(conn.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..n / 128 {
                    let p = [t ^ i as u8; 64];
                    assert_eq!(c.echo(p).await.unwrap(), p);
                }
            }));
        }
        tasks
    };
    // Warm up: buffers grow to their working size, slot pages get allocated.
    for t in run(4_000) {
        t.await.unwrap();
    }
    assert_eq!(client.echo([9; 64]).await.unwrap(), [9; 64]);
    let before = SHARD_ALLOCS.load(Ordering::Relaxed);
    let sizes_before: Vec<u64> = SIZES.iter().map(|a| a.load(Ordering::Relaxed)).collect();
    const CALLS: usize = 32_000;
    for t in run(CALLS) {
        t.await.unwrap();
    }
    let allocs = SHARD_ALLOCS.load(Ordering::Relaxed) - before;
    let per_call = allocs as f64 / CALLS as f64;
    for (i, a) in SIZES.iter().enumerate() {
        let d = a.load(Ordering::Relaxed) - sizes_before[i];
        if d > 0 {
            eprintln!("  allocations of {}..{} bytes: {d}", i * 16, i * 16 + 16);
        }
    }
    eprintln!("{backend:?}: shard-thread allocations: {allocs} over {CALLS} calls ({per_call:.3} per call)");
    server.shutdown();
    per_call
}
