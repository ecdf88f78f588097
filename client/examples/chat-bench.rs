//! Calls per second and latency of the chat service's `history` call on an
//! empty thread, sequential and with 64 calls in flight: the Rust side of
//! the browser comparison in `results/2026-12-02-browser/` (the Chromium
//! side runs the same calls from the chat page, `clients/ts/test/browser/bench.mjs`).
//!
//! ```text
//! cargo run --release -p hardlight-client --example chat-bench -- ws://127.0.0.1:9001 [--calls 5000] [--concurrent-calls 50000] [--concurrency 64]
//! ```

#[allow(dead_code)] // the server half of the API is unused here
#[path = "../../server-uring/examples/api/chat.rs"]
mod api;

use std::time::{Duration, Instant};

use api::{ChatClient, ChatMethod};
use hardlight::client::{ClientConfig, Connection};

/// p50 and p99 of `lat` (sorted in place), in microseconds.
fn percentiles(lat: &mut [Duration]) -> (f64, f64) {
    lat.sort();
    let at = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_secs_f64() * 1e6;
    (at(0.50), at(0.99))
}

fn report(what: &str, calls: usize, elapsed: Duration, lat: &mut [Duration]) {
    let (p50, p99) = percentiles(lat);
    println!(
        "rust {what}: {calls} calls, {:.0} calls/s, p50 {p50:.0} us, p99 {p99:.0} us",
        calls as f64 / elapsed.as_secs_f64()
    );
}

// One thread, like a page's event loop.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut url = "ws://127.0.0.1:9001".to_string();
    let (mut calls, mut concurrent_calls, mut concurrency) = (5_000usize, 50_000usize, 64usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> Result<usize, String> {
            args.next().and_then(|n| n.parse().ok()).ok_or(format!("{name} needs a number"))
        };
        match a.as_str() {
            "--calls" => calls = num("--calls")?,
            "--concurrent-calls" => concurrent_calls = num("--concurrent-calls")?,
            "--concurrency" => concurrency = num("--concurrency")?,
            other if other.starts_with("ws://") => url = other.to_string(),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let conn = Connection::connect_with(&url, ClientConfig::default().schema(&ChatMethod::SCHEMA)).await?;
    let chat = ChatClient::new(conn);
    // Warm-up.
    for _ in 0..500 {
        chat.history("bench-empty".into()).await?;
    }

    let mut lat = Vec::with_capacity(calls);
    let start = Instant::now();
    for _ in 0..calls {
        let t = Instant::now();
        chat.history("bench-empty".into()).await?;
        lat.push(t.elapsed());
    }
    report("sequential", calls, start.elapsed(), &mut lat);

    let per_worker = concurrent_calls / concurrency;
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let chat = chat.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per_worker);
                for _ in 0..per_worker {
                    let t = Instant::now();
                    chat.history("bench-empty".into()).await.expect("call");
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::with_capacity(per_worker * concurrency);
    for w in workers {
        lat.extend(w.await?);
    }
    report(&format!("{concurrency}-concurrent"), per_worker * concurrency, start.elapsed(), &mut lat);
    Ok(())
}
