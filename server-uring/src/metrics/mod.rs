//! Prometheus metrics: per-shard counters written on the hot path without
//! contention, summed and rendered at scrape time (`expo.rs`), served over
//! HTTP by a plain thread (`http.rs`).
//!
//! Why not the `metrics` crate: its recorder is global, and a per-call
//! `counter!` with a method label hashes the key and goes through a
//! `dyn Recorder` and shared atomics on every call. Here each shard owns its
//! counters ([`ShardMetrics`]): a connection never leaves its shard, so a
//! counter has exactly one writer, and bumping it is a relaxed load and a
//! relaxed store (no locked instruction, no cache line shared with another
//! core). The scraper reads them from its own thread with relaxed loads.
//! Off (the default, no `ServerBuilder::metrics_listen`), the hot path pays
//! one branch on a `None` per call and per round.

#[cfg(test)]
mod cost;
pub(crate) mod expo;
pub(crate) mod http;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hardlight_core::connection::{CallObserver, CallOutcome, CloseReason, ServerConnection};
use hardlight_core::error::CallErrorCode;

/// Upper bounds (microseconds) of the call latency histogram's buckets; a
/// last `+Inf` bucket follows. Fixed so that every shard's histogram can be
/// summed bucket by bucket.
pub const LATENCY_BUCKETS_US: [u64; 16] =
    [10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 5_000_000];

/// A counter with a single writer (its shard's thread): `add` is a relaxed
/// load and store, not a read-modify-write. Any thread may read it.
#[derive(Debug, Default)]
pub(crate) struct Local(AtomicU64);

impl Local {
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// How a call ended, as the `outcome` label: `ok`, `app_error`, `dropped`,
/// then one per [`CallErrorCode`].
pub(crate) const OUTCOMES: [&str; 12] = [
    "ok",
    "app_error",
    "dropped",
    "unknown_method",
    "invalid_input",
    "duplicate_call_id",
    "handler_panicked",
    "method_disabled",
    "shutting_down",
    "encode_failed",
    "cancelled",
    "deadline_exceeded",
];

fn outcome_index(o: CallOutcome) -> usize {
    match o {
        CallOutcome::Ok => 0,
        CallOutcome::AppError => 1,
        CallOutcome::Dropped => 2,
        CallOutcome::Failed(code) => code_index(code),
    }
}

fn code_index(code: CallErrorCode) -> usize {
    match code {
        CallErrorCode::UnknownMethod => 3,
        CallErrorCode::InvalidInput => 4,
        CallErrorCode::DuplicateCallId => 5,
        CallErrorCode::HandlerPanicked => 6,
        CallErrorCode::MethodDisabled => 7,
        CallErrorCode::ShuttingDown => 8,
        CallErrorCode::EncodeFailed => 9,
        CallErrorCode::Cancelled => 10,
        CallErrorCode::DeadlineExceeded => 11,
    }
}

/// Close codes this server sends, each a `code` label of
/// `hardlight_connections_closed_total{by="server"}`.
pub(crate) const SERVER_CLOSE_CODES: [u16; 13] =
    [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 4000, 4001, 4002, 4003, 4004];

/// Slots of [`ShardMetrics::closes`]: the server's codes, then any other
/// code the server sent, then closes by the peer and by end of stream
/// (refused upgrades are counted apart, by reason).
pub(crate) const CLOSE_SLOTS: usize = SERVER_CLOSE_CODES.len() + 3;
pub(crate) const CLOSE_SERVER_OTHER: usize = SERVER_CLOSE_CODES.len();
pub(crate) const CLOSE_PEER: usize = SERVER_CLOSE_CODES.len() + 1;
pub(crate) const CLOSE_EOF: usize = SERVER_CLOSE_CODES.len() + 2;

fn close_index(reason: &CloseReason) -> usize {
    match reason {
        CloseReason::ByUs(code) => {
            let c = code.as_u16();
            SERVER_CLOSE_CODES.iter().position(|&k| k == c).unwrap_or(CLOSE_SERVER_OTHER)
        }
        CloseReason::ByPeer(_) => CLOSE_PEER,
        // An observer is attached after the upgrade: never refused.
        CloseReason::Eof | CloseReason::Refused => CLOSE_EOF,
    }
}

/// One method's counters on one shard.
#[derive(Debug, Default)]
pub(crate) struct MethodMetrics {
    pub(crate) calls: Local,
    pub(crate) outcomes: [Local; OUTCOMES.len()],
    /// Non-cumulative bucket counts; the last is `+Inf`.
    pub(crate) buckets: [Local; LATENCY_BUCKETS_US.len() + 1],
    pub(crate) sum_us: Local,
}

/// The histogram bucket of a latency: the first whose bound is at least
/// `us`, or the last (`+Inf`).
fn bucket_of(us: u64) -> usize {
    LATENCY_BUCKETS_US.partition_point(|&le| le < us)
}

#[cfg(test)]
impl MethodMetrics {
    fn observe_us(&self, us: u64) {
        self.buckets[bucket_of(us)].add(1);
        self.sum_us.add(us);
    }
}

/// One shard's counters. Written only by that shard's thread.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct ShardMetrics {
    /// One per method name, then one for method ids outside the table.
    pub(crate) methods: Box<[MethodMetrics]>,
    pub(crate) bytes_in: Local,
    pub(crate) bytes_out: Local,
    pub(crate) closes: [Local; CLOSE_SLOTS],
}

impl ShardMetrics {
    pub(crate) fn new(methods: usize) -> Self {
        Self {
            methods: (0..=methods).map(|_| MethodMetrics::default()).collect(),
            bytes_in: Local::default(),
            bytes_out: Local::default(),
            closes: Default::default(),
        }
    }

    /// The slot of `method`: its own, or the last (ids past the table).
    fn slot(&self, method: u16) -> u16 {
        method.min((self.methods.len() - 1) as u16)
    }
}

/// One connection's link to its shard's counters: the core's
/// [`CallObserver`]. Keeps each live call's method and start time (the
/// round it arrived in) by call id.
///
/// Latency is measured per round, not per call, so that the clock is read
/// at most twice per round however many calls the round carries: once when
/// the round's first call starts, once at the end of a round in which calls
/// finished ([`Self::end_round`]). A call's latency is the time from the
/// round that delivered it to the end of the round that framed its reply
/// (its reply goes out in that round's write).
pub(crate) struct ConnMetrics {
    shard: Arc<ShardMetrics>,
    epoch: Instant,
    method: Box<[Cell<u16>; 256]>,
    start_us: Box<[Cell<u32>; 256]>,
    /// How each call that finished this round ended (an `OUTCOMES` index).
    outcome: Box<[Cell<u8>; 256]>,
    round_us: Cell<Option<u32>>,
    finished: [Cell<u64>; 4],
    bytes_seen: Cell<(u64, u64)>,
}

impl ConnMetrics {
    /// Attaches a new observer to `conn` if the shard has metrics on.
    pub(crate) fn attach(shard: Option<&Arc<ShardMetrics>>, conn: &mut ServerConnection) -> Option<Rc<Self>> {
        let cm = Rc::new(Self {
            shard: shard?.clone(),
            epoch: Instant::now(),
            method: Box::new(std::array::from_fn(|_| Cell::new(0))),
            start_us: Box::new(std::array::from_fn(|_| Cell::new(0))),
            outcome: Box::new(std::array::from_fn(|_| Cell::new(0))),
            round_us: Cell::new(None),
            finished: Default::default(),
            bytes_seen: Cell::new((0, 0)),
        });
        conn.observe(cm.clone());
        Some(cm)
    }

    fn now_us(&self) -> u32 {
        // Wraps after 71 minutes; latencies are differences, taken wrapping.
        self.epoch.elapsed().as_micros() as u32
    }

    /// Ends a round: records the latency of the calls that finished in it
    /// and the bytes moved since the last round.
    pub(crate) fn end_round(&self, conn: &ServerConnection) {
        self.round_us.set(None);
        // Calls of one round mostly share their method, outcome and start:
        // count runs of equal ones locally and add each run to the shard's
        // counters once.
        let mut now = None;
        let mut run: Option<(u16, u8, u32, u64)> = None;
        for (w, bits) in self.finished.iter().enumerate() {
            let mut word = bits.replace(0);
            while word != 0 {
                let id = w * 64 + word.trailing_zeros() as usize;
                word &= word - 1;
                let key = (self.method[id].get(), self.outcome[id].get(), self.start_us[id].get());
                match &mut run {
                    Some((m, o, s, n)) if (*m, *o, *s) == key => *n += 1,
                    _ => {
                        let now = *now.get_or_insert_with(|| self.now_us());
                        if let Some(done) = run.replace((key.0, key.1, key.2, 1)) {
                            self.record(done, now);
                        }
                    }
                }
            }
        }
        if let Some(done) = run {
            self.record(done, now.unwrap_or_else(|| self.now_us()));
        }
        let s = conn.stats();
        let (r, w) = self.bytes_seen.get();
        if (s.bytes_read, s.bytes_written) != (r, w) {
            self.shard.bytes_in.add(s.bytes_read - r);
            self.shard.bytes_out.add(s.bytes_written - w);
            self.bytes_seen.set((s.bytes_read, s.bytes_written));
        }
    }
}

impl ConnMetrics {
    /// Adds `n` calls of method slot `m` that ended with outcome `o`,
    /// started at `start` and framed at `now`.
    fn record(&self, (m, o, start, n): (u16, u8, u32, u64), now: u32) {
        let us = now.wrapping_sub(start) as u64;
        let m = &self.shard.methods[m as usize];
        m.outcomes[o as usize].add(n);
        m.buckets[bucket_of(us)].add(n);
        m.sum_us.add(us * n);
    }
}

impl CallObserver for ConnMetrics {
    fn started(&self, id: u8, method: u16) {
        let at = match self.round_us.get() {
            Some(t) => t,
            None => {
                let t = self.now_us();
                self.round_us.set(Some(t));
                t
            }
        };
        let slot = self.shard.slot(method);
        self.method[id as usize].set(slot);
        self.start_us[id as usize].set(at);
        self.shard.methods[slot as usize].calls.add(1);
    }

    fn finished(&self, id: u8, outcome: CallOutcome) {
        self.outcome[id as usize].set(outcome_index(outcome) as u8);
        let word = &self.finished[id as usize / 64];
        word.set(word.get() | (1 << (id % 64)));
    }

    fn refused(&self, method: u16, code: CallErrorCode) {
        let m = &self.shard.methods[self.shard.slot(method) as usize];
        m.calls.add(1);
        m.outcomes[code_index(code)].add(1);
    }

    fn closed(&self, reason: &CloseReason) {
        self.shard.closes[close_index(reason)].add(1);
    }
}

/// How a driver wraps each call's future, chosen once per connection when
/// it is upgraded ([`calls_traced`]): [`Plain`] leaves it as it is,
/// [`Spanned`] polls it inside a `call` span. A span wrapper on every call
/// costs even when DEBUG is off (a disabled `Span` kept inline, or an
/// `Option` of a boxed one, cost 118-141 instructions per call in moves and
/// inlining under callgrind, see results/2026-12-02-metrics), so the driver
/// is instantiated twice and a connection opened without DEBUG pays nothing.
pub(crate) trait CallWrap {
    /// The wrapped future.
    type Fut<G: std::future::Future>: std::future::Future<Output = G::Output>;
    /// Wraps call `id` of method `method` on connection `conn`.
    fn wrap<G: std::future::Future>(g: G, names: &[&'static str], method: u16, id: u8, conn: u64) -> Self::Fut<G>;
}

/// Calls as they are: the driver of connections opened while DEBUG was off.
pub(crate) struct Plain;

impl CallWrap for Plain {
    type Fut<G: std::future::Future> = G;

    #[inline(always)]
    fn wrap<G: std::future::Future>(g: G, _: &[&'static str], _: u16, _: u8, _: u64) -> G {
        g
    }
}

/// Each call polled inside the span `call` (fields `method`, `call`,
/// `conn`) at DEBUG.
pub(crate) struct Spanned;

impl CallWrap for Spanned {
    type Fut<G: std::future::Future> = tracing::instrument::Instrumented<G>;

    fn wrap<G: std::future::Future>(g: G, names: &[&'static str], method: u16, id: u8, conn: u64) -> Self::Fut<G> {
        use tracing::Instrument;
        let name = names.get(method as usize).copied().unwrap_or("unknown");
        g.instrument(tracing::debug_span!("call", method = name, call = id, conn))
    }
}

/// Whether a connection upgraded now runs its calls in spans: DEBUG is on
/// for this crate. Checked once per connection.
pub(crate) fn calls_traced() -> bool {
    tracing::enabled!(tracing::Level::DEBUG)
}

/// Everything a scrape reads: every shard's counters and the server-wide
/// ones.
pub(crate) struct Registry {
    pub(crate) method_names: &'static [&'static str],
    pub(crate) shards: Vec<Arc<ShardMetrics>>,
    pub(crate) stats: Arc<crate::stats::ServerStats>,
    pub(crate) emitter: crate::events::Emitter,
}

/// Whether `code` is one of the close codes counted by name (tests).
#[cfg(test)]
pub(crate) fn counts_close_code(code: hardlight_core::error::CloseCode) -> bool {
    SERVER_CLOSE_CODES.contains(&code.as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hardlight_core::error::CloseCode;

    #[test]
    fn every_call_error_code_has_its_own_outcome_label() {
        let mut seen = std::collections::HashSet::new();
        for b in 1..=u8::MAX {
            if let Some(code) = CallErrorCode::from_u8(b) {
                assert!(seen.insert(code_index(code)), "{code:?} shares a label");
            }
        }
        assert_eq!(seen.len() + 3, OUTCOMES.len());
    }

    #[test]
    fn every_close_code_the_server_sends_is_counted_by_name() {
        for code in [
            CloseCode::Normal,
            CloseCode::GoingAway,
            CloseCode::ProtocolError,
            CloseCode::UnsupportedData,
            CloseCode::InvalidPayload,
            CloseCode::PolicyViolation,
            CloseCode::MessageTooBig,
            CloseCode::InternalError,
            CloseCode::MalformedEnvelope,
            CloseCode::SlowConsumer,
            CloseCode::IdleTimeout,
            CloseCode::MessageTimeout,
            CloseCode::OverBudget,
        ] {
            assert!(counts_close_code(code), "{code:?}");
        }
    }

    /// Collects what a fmt subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn calls_run_in_a_debug_span_on_connections_opened_with_debug_on() {
        use std::future::Future;
        let poll = |t: <Spanned as CallWrap>::Fut<std::future::Ready<u8>>| {
            let mut t = std::pin::pin!(t);
            let waker = std::task::Waker::noop();
            t.as_mut().poll(&mut std::task::Context::from_waker(waker))
        };
        for (level, shown) in [(tracing::Level::DEBUG, true), (tracing::Level::INFO, false)] {
            let out = Captured::default();
            let w = out.clone();
            let sub = tracing_subscriber::fmt()
                .with_max_level(level)
                .with_ansi(false)
                .with_span_events(tracing_subscriber::fmt::format::FmtSpan::ENTER)
                .with_writer(move || w.clone())
                .finish();
            tracing::subscriber::with_default(sub, || {
                assert_eq!(calls_traced(), shown);
                let t = Spanned::wrap(std::future::ready(7), &["echo"], 0, 3, 42);
                assert_eq!(poll(t), std::task::Poll::Ready(7));
            });
            let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
            assert_eq!(text.contains("call{method=\"echo\" call=3 conn=42}"), shown, "{level}: {text}");
        }
    }

    #[test]
    fn latencies_land_in_their_le_bucket() {
        let m = MethodMetrics::default();
        for us in [0, 10, 11, 5_000_000, 5_000_001] {
            m.observe_us(us);
        }
        let counts: Vec<u64> = m.buckets.iter().map(Local::get).collect();
        assert_eq!(counts[0], 2, "0 and 10 are <= 10");
        assert_eq!(counts[1], 1, "11 is <= 25");
        assert_eq!(counts[15], 1, "5 s is <= 5 s");
        assert_eq!(counts[16], 1, "past the last bound: +Inf");
        assert_eq!(m.sum_us.get(), 10_000_022);
    }
}
