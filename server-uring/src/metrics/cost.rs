//! The per-call path with metrics off and on, with and without the per-call
//! span, for counting instructions under callgrind (a count that other work
//! on the machine does not disturb, unlike a timed run). Not a timing test:
//! ignored by default; `results/2026-12-02-metrics/README.md` has the
//! commands and the counts.
//!
//! `HL_ROUNDS` rounds of 16 pipelined calls each go through the core and
//! `conn::process_events`, as a busy connection's rounds do, without
//! sockets. `HL_METRICS=1` attaches the metrics observer and ends each round
//! as the drivers do; `HL_SPAN=1` (the default) wraps each call as a
//! connection opened with DEBUG on does (`Spanned`), `HL_SPAN=0` as one
//! opened without (`Plain`, what a server runs by default).

use std::panic::AssertUnwindSafe;

use futures::FutureExt;

use hardlight_core::envelope;
use hardlight_core::frame::{self, Opcode};
use hardlight_core::{Rejection, Reply, Service};

use super::{CallWrap, ConnMetrics, ShardMetrics, Spanned};
use crate::conn::{process_events, CallStart};
use crate::slots::CallSlots;

#[hardlight::rpc]
trait Cost {
    async fn echo(&self, payload: [u8; 64]) -> [u8; 64];
}
struct H;
impl Cost for H {
    async fn echo(&self, payload: [u8; 64]) -> [u8; 64] {
        payload
    }
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Runs `rounds` rounds of 16 calls through `start`.
fn drive<F, R>(
    rounds: usize,
    metrics: bool,
    start: &mut impl FnMut(CallStart<'_>) -> Result<F, Rejection>,
) -> (u64, std::sync::Arc<ShardMetrics>)
where
    F: std::future::Future<Output = std::thread::Result<R>>,
    R: Reply,
{
    let mut conn = crate::conn::upgraded_for_tests();
    let shard = std::sync::Arc::new(ShardMetrics::new(1));
    let observer = if metrics { ConnMetrics::attach(Some(&shard), &mut conn) } else { None };
    let input = hardlight_core::wire::encode(&CostEchoInput { payload: [7; 64] }).unwrap();
    let mut batch = Vec::new();
    for id in 0..16u8 {
        let mut msg = Vec::new();
        envelope::encode_call(&mut msg, id, CostMethod::Echo.id(), &input);
        frame::write_masked_frame(&mut batch, true, Opcode::Binary, &msg, [id, 1, 2, 3]);
    }
    let mut slots = CallSlots::new();
    for _ in 0..rounds {
        // One read of the batch, in pieces while the read buffer is small.
        let mut fed = 0;
        while fed < batch.len() {
            let buf = conn.read_buf();
            let n = buf.len().min(batch.len() - fed);
            buf[..n].copy_from_slice(&batch[fed..fed + n]);
            conn.on_read(n);
            fed += n;
            assert!(!process_events(&mut conn, &mut slots, start));
        }
        if let Some(m) = &observer {
            m.end_round(&conn);
        }
        let out = conn.outbound().len();
        conn.advance_outbound(out);
    }
    (conn.stats().calls_completed, shard)
}

#[test]
#[ignore = "an instruction count for callgrind, not a check"]
fn per_call_path_for_callgrind() {
    // As a server runs: a global subscriber that takes WARN and above (a
    // scoped one, `set_default`, would make every span look the
    // dispatcher up; the process runs this test alone).
    let _ = tracing::subscriber::set_global_default(
        tracing_subscriber::fmt().with_max_level(tracing::Level::WARN).with_test_writer().finish(),
    );
    let (rounds, metrics, span) = (env("HL_ROUNDS", 1000), env("HL_METRICS", 0) == 1, env("HL_SPAN", 1) == 1);
    let service = CostService::new(H);
    let names = <CostService<H> as Service>::METHOD_NAMES;
    let (done, shard) = if span {
        drive(rounds, metrics, &mut |c: CallStart<'_>| {
            service
                .call(c.method, c.input, 64)
                .map(|f| AssertUnwindSafe(Spanned::wrap(f, names, c.method, c.id, 0)).catch_unwind())
        })
    } else {
        drive(rounds, metrics, &mut |c: CallStart<'_>| {
            service.call(c.method, c.input, 64).map(|f| AssertUnwindSafe(f).catch_unwind())
        })
    };
    assert_eq!(done, rounds as u64 * 16);
    if metrics {
        assert_eq!(shard.methods[0].calls.get(), rounds as u64 * 16);
        assert_eq!(shard.methods[0].buckets.iter().map(super::Local::get).sum::<u64>(), rounds as u64 * 16);
    }
}
