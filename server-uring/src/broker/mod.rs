//! The broker bridge: topic events across server processes through Redis,
//! numbered and kept by Redis so that a client can resume on any server.
//!
//! One bridge per server (`ServerBuilder::broker`), on its own thread with a
//! tokio current-thread runtime and **one** Redis connection in RESP3 mode,
//! which carries commands and SUBSCRIBE push messages alike, in order.
//!
//! - **Out.** [`crate::Emitter::to_topic`] hands the encoded event to the
//!   bridge through a bounded queue and does not deliver it locally. The
//!   bridge runs [`PUBLISH_LUA`] per event (EVALSHA, pipelined, in order):
//!   in one atomic step Redis gives the event the topic's next offset,
//!   appends it to the topic's stream `<prefix>{<topic>}:log` (capped at
//!   the history's `max_events`, expiring with its `max_age`) and PUBLISHes
//!   it, position included, on `<prefix><topic>` (payload:
//!   `hardlight_core::broker`).
//! - **In.** Messages on subscribed channels, this server's own included,
//!   are decoded and routed to the local shards with
//!   `Emitter::route_positioned`, which keeps them in the server's history
//!   (a cache of the streams) and drops duplicates. Every server thus
//!   delivers a topic in the broker's order with the broker's positions.
//! - **Interest.** Each shard's registry reports a topic's first local
//!   subscriber and its last one leaving; the bridge keeps per-topic counts
//!   across shards and is SUBSCRIBEd exactly to the topics with a count.
//! - **Logs.** A resuming connection whose position this server's cache
//!   does not cover (it came from another server, or nobody here followed
//!   the topic then) waits while the bridge reads the stream
//!   ([`FETCH_LUA`]) and hands the answer to the shards (`Emitter::answer`);
//!   what Redis no longer holds becomes a gap notice.
//! - **Outages.** A lost connection is logged and the bridge reconnects
//!   with capped exponential backoff. Topic emits wait in the queue
//!   meanwhile (full: `EmitError::BrokerBacklog`) and are published when it
//!   is back; then, before handling anything newer, the bridge reads each
//!   followed topic's stream after the last event it had, so local
//!   subscribers get what other servers published in between, in order,
//!   or (Redis lost it) see the epoch change as a gap notice.
//!
//! **Why the broker orders topics** (rather than delivering local emits at
//! once): one order and one numbering of a topic on every server is what
//! lets a client resume on another server without loss or duplicates. The
//! cost: a topic event reaches even this server's clients one Redis round
//! trip later, and not at all while Redis is unreachable (it waits, bounded).
//! Events to all connections, to a predicate, or to one connection never
//! cross servers and stay local and immediate. A followed topic this server
//! never received an event of has no position to read after an outage: its
//! subscribers get a gap notice of unknown size instead.
//!
//! Files: this one runs the connection and its outages; `pubsub` the
//! subscriptions, publishing and receiving; `log` the Lua scripts and the
//! stream reads; `config` the settings and their defaults.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use hardlight_core::resume::{HistoryLimits, Position};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo, ProtocolVersion, PushInfo, RedisError};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::events::{bridge_link, BridgeInbox, BridgeLink, Control, Emitter, Publish};

mod config;
mod log;
mod pubsub;
use crate::stats::BrokerStats;
use crate::ServerError;
use config::redact;
pub use config::{BrokerConfig, DEFAULT_BROKER_QUEUE, DEFAULT_CHANNEL_PREFIX, DEFAULT_FETCH_WAIT};
use log::{Undelivered, Want};
pub(crate) use log::{FETCH_LUA, PUBLISH_LUA};

/// Events PUBLISHed per pipeline round trip at most.
const PUBLISH_BATCH: usize = 256;

/// Broker messages handled per wake-up before the bridge yields.
const RECEIVE_BATCH: usize = 1024;

/// How soon an answer that found a shard's inbox full is sent again.
const ANSWER_RETRY: Duration = Duration::from_millis(10);

/// A bridge configured but not started yet (the shards start first).
pub(crate) struct PendingBridge {
    bridge: Bridge,
    runtime: tokio::runtime::Runtime,
    link: Arc<BridgeLink>,
}

/// The running bridge thread.
pub(crate) struct BridgeThread {
    link: Arc<BridgeLink>,
    join: Option<std::thread::JoinHandle<()>>,
}

impl BridgeThread {
    /// Asks the bridge to publish what is queued and stop, and waits for it.
    pub(crate) fn stop(&mut self) {
        self.link.shutdown();
        if let Some(j) = self.join.take() {
            if j.join().is_err() {
                tracing::error!("broker bridge thread panicked");
            }
        }
    }
}

/// Checks the configuration and builds the bridge's queues and runtime.
/// Does not connect: an unreachable broker is an outage, not a start-up
/// failure.
pub(crate) fn prepare(
    config: BrokerConfig,
    limits: HistoryLimits,
) -> Result<(Arc<BridgeLink>, PendingBridge), ServerError> {
    let invalid = |e: RedisError| ServerError::Config(format!("invalid broker URL {:?}: {e}", redact(&config.url)));
    let info = config.url.as_str().into_connection_info().map_err(invalid)?;
    let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
    let client = Client::open(info.set_redis_settings(settings)).map_err(invalid)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ServerError::Config(format!("cannot build the broker bridge's runtime: {e}")))?;
    let stats = Arc::new(BrokerStats::default());
    let (link, inbox) = bridge_link(config.queue_capacity, stats.clone());
    let backoff = config.backoff_min;
    let bridge = Bridge {
        client,
        inbox,
        emitter: None,
        stats,
        origin: origin_id(),
        counts: HashMap::new(),
        subscribed: HashSet::new(),
        dirty: false,
        live: None,
        outage: Some(Outage { since: Instant::now(), lost_before: 0, attempts: 0 }),
        backoff,
        retry_at: tokio::time::Instant::now(),
        ever_connected: false,
        shutdown: false,
        payload: Vec::new(),
        limits,
        publish_sha: String::new(),
        fetch_sha: String::new(),
        wants: HashMap::new(),
        refill: Vec::new(),
        undelivered: Vec::new(),
        parked: Vec::new(),
        config,
    };
    Ok((link.clone(), PendingBridge { bridge, runtime, link }))
}

impl PendingBridge {
    /// Starts the bridge thread; `emitter` routes received events to the shards.
    pub(crate) fn start(self, emitter: Emitter) -> std::io::Result<BridgeThread> {
        let PendingBridge { mut bridge, runtime, link } = self;
        bridge.emitter = Some(emitter);
        tracing::info!(url = %redact(&bridge.config.url), origin = format_args!("{:016x}", bridge.origin), "broker bridge starting");
        let join = std::thread::Builder::new().name("hardlight-broker".into()).spawn(move || {
            runtime.block_on(bridge.run());
        })?;
        Ok(BridgeThread { link, join: Some(join) })
    }
}

/// A per-bridge id that tags its publications, so that it can skip its
/// own when they come back. Random (std's per-process random hash keys,
/// mixed with the pid, the time and a counter for bridges in one process).
fn origin_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

struct Live {
    conn: MultiplexedConnection,
    pushes: UnboundedReceiver<PushInfo>,
}

/// A period without a broker connection (also the time before the first).
struct Outage {
    since: Instant,
    /// `dropped_while_down + publish_failures` when it began.
    lost_before: u64,
    attempts: u32,
}

struct Bridge {
    config: BrokerConfig,
    client: Client,
    inbox: BridgeInbox,
    emitter: Option<Emitter>,
    stats: Arc<BrokerStats>,
    origin: u64,
    /// Shards with at least one local subscriber, per topic.
    counts: HashMap<Arc<str>, u32>,
    /// Topics SUBSCRIBEd on the live connection.
    subscribed: HashSet<Arc<str>>,
    /// `counts` changed since `subscribed` was last reconciled with it.
    dirty: bool,
    live: Option<Live>,
    outage: Option<Outage>,
    backoff: Duration,
    retry_at: tokio::time::Instant,
    ever_connected: bool,
    shutdown: bool,
    payload: Vec<u8>,
    /// The history's bounds: the streams' length and age.
    limits: HistoryLimits,
    /// SHA1s of [`PUBLISH_LUA`] and [`FETCH_LUA`], as the live connection's
    /// Redis loaded them (`SCRIPT LOAD` on every connection).
    publish_sha: String,
    fetch_sha: String,
    /// Stream reads asked for by resuming connections, one per topic (so
    /// at most one per topic with a local subscriber).
    wants: HashMap<Arc<str>, (Want, tokio::time::Instant)>,
    /// After a reconnect: the followed topics and the last position this
    /// server had of each, to read the streams after.
    refill: Vec<(Arc<str>, Position)>,
    /// Answers not yet handed to these shards (their inbox was full).
    undelivered: Vec<Undelivered>,
    /// One batch taken off the queue but not sent (the connection was lost
    /// first): sent before anything still queued.
    parked: Vec<Publish>,
}

impl Bridge {
    async fn run(mut self) {
        loop {
            self.drain_control();
            if self.shutdown {
                self.flush().await;
                break;
            }
            if self.live.is_none() && tokio::time::Instant::now() >= self.retry_at {
                self.connect().await;
            }
            if self.dirty && self.live.is_some() {
                self.reconcile().await;
            }
            if !self.dirty && self.live.is_some() && !self.refill.is_empty() {
                self.refill().await;
            }
            self.redeliver();
            let mut busy = self.fetch_batch().await;
            busy |= self.publish_batch().await;
            busy |= self.drain_pushes();
            if busy {
                // More may be queued; let the connection's driver task run.
                tokio::task::yield_now().await;
                continue;
            }
            self.wait().await;
        }
        if self.live.take().is_some() {
            self.stats.connected.set(0);
            self.stats.subscribed.set(0);
        }
        tracing::info!("broker bridge stopped");
    }

    /// Sleeps until an emitter or shard sends something, a message arrives,
    /// or the next reconnect attempt is due.
    async fn wait(&mut self) {
        let inbox = &self.inbox;
        // While there is no connection, queued events wait for one.
        let can_publish = self.live.is_some();
        let parked = !self.parked.is_empty();
        let ready = std::future::poll_fn(|cx| {
            inbox.waker.register(cx.waker());
            if ((inbox.publish.is_empty() && !parked) || !can_publish) && inbox.control.is_empty() {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        });
        let push = match &mut self.live {
            Some(live) => tokio::select! {
                _ = ready => None,
                p = live.pushes.recv() => Some(p),
                _ = tokio::time::sleep(ANSWER_RETRY), if !self.undelivered.is_empty() => None,
            },
            None => {
                let give_up = self.wants.values().map(|(_, since)| *since + self.config.fetch_wait).min();
                tokio::select! {
                    _ = ready => {},
                    _ = tokio::time::sleep_until(self.retry_at) => {},
                    _ = tokio::time::sleep(ANSWER_RETRY), if !self.undelivered.is_empty() => {},
                    _ = tokio::time::sleep_until(give_up.unwrap_or(self.retry_at)), if give_up.is_some() => {},
                }
                None
            }
        };
        // `None` from the push channel: the connection's driver is gone.
        let closed = match push {
            Some(Some(p)) => !self.handle_push(p),
            Some(None) => true,
            None => false,
        };
        if closed {
            self.lost("the broker closed the connection");
        }
    }

    fn drain_control(&mut self) {
        while let Ok(msg) = self.inbox.control.try_recv() {
            match msg {
                Control::Interest { topic, delta } => {
                    if delta > 0 {
                        let c = self.counts.entry(topic).or_insert(0);
                        *c += 1;
                        self.dirty |= *c == 1;
                    } else if let Some(c) = self.counts.get_mut(&topic) {
                        *c -= 1;
                        if *c == 0 {
                            self.counts.remove(&topic);
                            self.dirty = true;
                        }
                    }
                }
                Control::Fetch { topic, from } => {
                    let want = Want::new(from);
                    // Keeps the first request's time: its wait is the bound.
                    let merged = match self.wants.get(&topic) {
                        Some(&(w, since)) => (w.merge(want), since),
                        None => (want, tokio::time::Instant::now()),
                    };
                    self.wants.insert(topic, merged);
                }
                Control::Shutdown => self.shutdown = true,
            }
        }
    }

    /// `<prefix>{<topic>}:<what>`: the hash tag keeps a topic's keys in one
    /// cluster slot, as the scripts need.
    fn key(&self, topic: &str, what: &str) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.config.channel_prefix.len() + topic.len() + 3 + what.len());
        key.extend_from_slice(self.config.channel_prefix.as_bytes());
        key.push(b'{');
        key.extend_from_slice(topic.as_bytes());
        key.extend_from_slice(b"}:");
        key.extend_from_slice(what.as_bytes());
        key
    }

    /// `<prefix><topic>`.
    fn channel_name(&self, topic: &str) -> Vec<u8> {
        let mut channel = Vec::with_capacity(self.config.channel_prefix.len() + topic.len());
        channel.extend_from_slice(self.config.channel_prefix.as_bytes());
        channel.extend_from_slice(topic.as_bytes());
        channel
    }

    async fn connect(&mut self) {
        let (tx, rx) = unbounded_channel();
        let cfg = AsyncConnectionConfig::new()
            .set_push_sender(tx)
            .set_connection_timeout(Some(self.config.connect_timeout))
            .set_response_timeout(Some(self.config.response_timeout));
        let connected = match self.client.get_multiplexed_async_connection_with_config(&cfg).await {
            Ok(mut conn) => {
                // Loaded on every connection: a restarted Redis forgets them.
                let load = |src: &'static str| redis::cmd("SCRIPT").arg("LOAD").arg(src).clone();
                match load(PUBLISH_LUA).query_async::<String>(&mut conn).await {
                    Ok(sha) => {
                        self.publish_sha = sha;
                        load(FETCH_LUA).query_async::<String>(&mut conn).await.map(|sha| {
                            self.fetch_sha = sha;
                            conn
                        })
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        match connected {
            Ok(conn) => {
                self.live = Some(Live { conn, pushes: rx });
                self.stats.connected.set(1);
                self.subscribed.clear();
                self.dirty = true;
                self.backoff = self.config.backoff_min;
                if let Some(o) = self.outage.take() {
                    let lost = self.lost_total() - o.lost_before;
                    if self.ever_connected {
                        self.stats.reconnects.inc();
                        // Other servers' events of every topic followed here
                        // may have been published while this bridge could
                        // not receive them: once re-subscribed, read each
                        // topic's stream after the last event this server
                        // had (`Self::refill`).
                        // A followed topic this server never received an
                        // event of has no position to read after: its
                        // subscribers are told they may have missed some
                        // (a gap of unknown size) rather than nothing.
                        if let Some(emitter) = &self.emitter {
                            let shared = emitter.history();
                            let (refill, unknown): (Vec<_>, Vec<_>) = {
                                let history = crate::resume::lock(&shared);
                                self.counts.keys().map(|t| (t.clone(), history.head(t))).partition(|(_, p)| p.is_some())
                            };
                            self.refill = refill.into_iter().filter_map(|(t, p)| p.map(|p| (t, p))).collect();
                            for (topic, _) in unknown {
                                emitter.mark_lost(topic);
                            }
                        }
                        tracing::warn!(
                            down_for = ?o.since.elapsed(),
                            attempts = o.attempts + 1,
                            events_not_published = lost,
                            topics = self.counts.len(),
                            "broker reconnected; re-subscribing and reading what other servers published \
                             meanwhile; queued topic events are published now"
                        );
                    } else {
                        tracing::info!(after = ?o.since.elapsed(), events_not_published = lost, "broker connected");
                    }
                }
                self.ever_connected = true;
            }
            Err(e) => {
                let o =
                    self.outage.get_or_insert_with(|| Outage { since: Instant::now(), lost_before: 0, attempts: 0 });
                o.attempts += 1;
                if o.attempts == 1 {
                    tracing::warn!(
                        url = %redact(&self.config.url), error = %e,
                        "cannot reach the broker; topic events stay local until it is back (retrying with backoff)"
                    );
                } else {
                    tracing::debug!(error = %e, attempts = o.attempts, retry_in = ?self.backoff, "broker still unreachable");
                }
                self.retry_at = tokio::time::Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(self.config.backoff_max);
            }
        }
    }

    fn lost_total(&self) -> u64 {
        self.stats.dropped_while_down.get() + self.stats.publish_failures.get()
    }

    /// The live connection broke: deliver what it had already received,
    /// drop it, and schedule the first reconnect attempt.
    fn lost(&mut self, reason: &str) {
        let Some(mut live) = self.live.take() else {
            return;
        };
        while let Ok(p) = live.pushes.try_recv() {
            self.handle_push(p);
        }
        self.stats.connected.set(0);
        self.stats.subscribed.set(0);
        self.subscribed.clear();
        self.outage = Some(Outage { since: Instant::now(), lost_before: self.lost_total(), attempts: 0 });
        self.backoff = self.config.backoff_min;
        self.retry_at = tokio::time::Instant::now() + self.backoff;
        tracing::warn!(
            reason,
            "broker connection lost; topic events wait for it (bounded queue, then EmitError::BrokerBacklog), \
             reconnecting with backoff"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_ids_differ_between_bridges() {
        let ids: HashSet<u64> = (0..1000).map(|_| origin_id()).collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn bad_urls_are_refused_at_build_time() {
        let limits = HistoryLimits::default();
        for url in ["http://127.0.0.1:6379", "not a url", "redis://127.0.0.1:notaport"] {
            assert!(matches!(prepare(BrokerConfig::new(url), limits), Err(ServerError::Config(_))), "{url}");
        }
        assert!(prepare(BrokerConfig::new("redis://127.0.0.1:6390/0"), limits).is_ok());
    }
}
