//! The broker bridge: topic events across server processes through Redis
//! pub/sub.
//!
//! One bridge per server (`ServerBuilder::broker`), on its own thread with a
//! tokio current-thread runtime and **one** Redis connection in RESP3 mode,
//! which carries PUBLISH commands and SUBSCRIBE push messages alike.
//!
//! - **Out.** [`crate::Emitter::to_topic`] delivers locally as always and
//!   hands the encoded event to the bridge through a bounded queue; the
//!   bridge PUBLISHes it (pipelined, in order) on `<prefix><topic>` with the
//!   payload of `hardlight_core::broker` (origin id, event type, archive).
//! - **In.** Messages on subscribed channels are decoded, re-framed once and
//!   routed to the local shards with `Emitter::route_local`, fanned out per
//!   shard exactly as local events. A message carrying this bridge's own
//!   origin id was already delivered locally and is skipped.
//! - **Interest.** Each shard's registry reports a topic's first local
//!   subscriber and its last one leaving; the bridge keeps per-topic counts
//!   across shards and is SUBSCRIBEd exactly to the topics with a count.
//! - **Outages.** A lost connection is logged, the bridge reconnects with
//!   capped exponential backoff and re-subscribes; everything published in
//!   between is dropped and counted ([`crate::BrokerStats`]). Nothing on the
//!   shards ever waits for the bridge.
//!
//! Redis pub/sub is at-most-once: a message is delivered to the
//! subscribers connected at the moment it is published, never stored.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use hardlight_core::broker::{decode_broker_message, encode_broker_message};
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, RedisError, Value,
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::events::{bridge_link, BridgeInbox, BridgeLink, Control, Emitter, Publish};
use crate::stats::BrokerStats;
use crate::ServerError;

/// Default prefix of the Redis channel of a topic: topic `chat:general`
/// travels on channel `hardlight:chat:general`.
pub const DEFAULT_CHANNEL_PREFIX: &str = "hardlight:";

/// Default capacity of the queue from emitters to the bridge.
pub const DEFAULT_BROKER_QUEUE: usize = 4096;

/// Events PUBLISHed per pipeline round trip at most.
const PUBLISH_BATCH: usize = 256;

/// Broker messages handled per wake-up before the bridge yields.
const RECEIVE_BATCH: usize = 1024;

/// How a server reaches the broker.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `redis://[user:password@]host:port[/db]` (Redis 6 or later: the
    /// bridge speaks RESP3).
    pub url: String,
    /// Prepended to a topic to name its channel. Servers that should share
    /// events must use the same prefix.
    pub channel_prefix: String,
    /// Capacity of the queue from emitters to the bridge; when it is full,
    /// topic events are delivered locally only and counted in
    /// `BrokerStats::queue_full`.
    pub queue_capacity: usize,
    /// First reconnect delay after the connection is lost; doubled after
    /// each failed attempt up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest delay between reconnect attempts.
    pub backoff_max: Duration,
    /// Limit on establishing a connection.
    pub connect_timeout: Duration,
    /// Limit on the broker's answer to a command; past it the connection is
    /// treated as lost.
    pub response_timeout: Duration,
}

impl BrokerConfig {
    /// Defaults: prefix `hardlight:`, queue of 4096, backoff 100 ms doubling
    /// to 5 s, 1 s to connect, 2 s per command.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            channel_prefix: DEFAULT_CHANNEL_PREFIX.to_string(),
            queue_capacity: DEFAULT_BROKER_QUEUE,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(2),
        }
    }

    /// Sets the channel prefix.
    pub fn channel_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.channel_prefix = prefix.into();
        self
    }

    /// Sets the reconnect backoff bounds.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min.max(Duration::from_millis(1));
        self.backoff_max = max.max(self.backoff_min);
        self
    }

    /// Sets the emitter-to-bridge queue capacity.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n.max(1);
        self
    }
}

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
pub(crate) fn prepare(config: BrokerConfig) -> Result<(Arc<BridgeLink>, PendingBridge), ServerError> {
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

/// `url` without its user and password, for logs and errors.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}***{}", &url[..scheme + 3], &url[at..]),
        _ => url.to_string(),
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
            let mut busy = self.publish_batch().await;
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
        let ready = std::future::poll_fn(|cx| {
            inbox.waker.register(cx.waker());
            if inbox.publish.is_empty() && inbox.control.is_empty() {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        });
        let push = match &mut self.live {
            Some(live) => tokio::select! {
                _ = ready => None,
                p = live.pushes.recv() => Some(p),
            },
            None => {
                tokio::select! {
                    _ = ready => {},
                    _ = tokio::time::sleep_until(self.retry_at) => {},
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
                Control::Shutdown => self.shutdown = true,
            }
        }
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
        match self.client.get_multiplexed_async_connection_with_config(&cfg).await {
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
                        // not receive them: resuming clients get a gap
                        // notice rather than a silent loss.
                        if let Some(emitter) = &self.emitter {
                            for topic in self.counts.keys() {
                                emitter.mark_lost(topic.clone());
                            }
                        }
                        tracing::warn!(
                            down_for = ?o.since.elapsed(),
                            attempts = o.attempts + 1,
                            events_not_published = lost,
                            topics = self.counts.len(),
                            "broker reconnected; re-subscribing. Events published on other servers while \
                             it was down were not received here, and events from here were not published"
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
            "broker connection lost; local delivery continues, topic events are not exchanged with other \
             servers until it is back (reconnecting with backoff)"
        );
    }

    /// SUBSCRIBEs and UNSUBSCRIBEs until the live connection's channels are
    /// exactly the topics some shard needs. One channel per command,
    /// pipelined: each topic's outcome is known, and replies stay paired
    /// with commands even on redis-rs versions that paired a multi-channel
    /// SUBSCRIBE's extra confirmations with later commands (its issue 2423).
    async fn reconcile(&mut self) {
        let to_add: Vec<Arc<str>> = self.counts.keys().filter(|t| !self.subscribed.contains(*t)).cloned().collect();
        let to_remove: Vec<Arc<str>> =
            self.subscribed.iter().filter(|t| !self.counts.contains_key(*t)).cloned().collect();
        for (topics, subscribe) in [(to_add, true), (to_remove, false)] {
            for chunk in topics.chunks(PUBLISH_BATCH) {
                let Some(live) = &self.live else {
                    return;
                };
                let calls = chunk.iter().map(|t| {
                    let mut conn = live.conn.clone();
                    let channel = self.channel_name(t);
                    async move {
                        if subscribe {
                            conn.subscribe(channel).await
                        } else {
                            conn.unsubscribe(channel).await
                        }
                    }
                });
                let results = futures::future::join_all(calls).await;
                for (t, r) in chunk.iter().zip(results) {
                    match r {
                        Ok(()) if subscribe => {
                            self.subscribed.insert(t.clone());
                        }
                        Ok(()) => {
                            self.subscribed.remove(t);
                        }
                        Err(e) => {
                            let verb = if subscribe { "SUBSCRIBE" } else { "UNSUBSCRIBE" };
                            self.lost(&format!("{verb} failed: {e}"));
                            return;
                        }
                    }
                }
            }
        }
        self.stats.subscribed.set(self.subscribed.len() as u64);
        self.dirty = false;
    }

    /// Publishes up to one batch of queued events, or drops them (counted)
    /// while there is no connection. Returns whether there was any.
    async fn publish_batch(&mut self) -> bool {
        let mut batch: Vec<Publish> = Vec::new();
        while batch.len() < PUBLISH_BATCH {
            match self.inbox.publish.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            return false;
        }
        let n = batch.len() as u64;
        if self.live.is_none() {
            self.stats.dropped_while_down.add(n);
            return true;
        }
        let mut pipe = redis::pipe();
        for p in &batch {
            let channel = self.channel_name(&p.topic);
            encode_broker_message(&mut self.payload, self.origin, &p.event);
            pipe.cmd("PUBLISH").arg(channel).arg(&self.payload[..]).ignore();
        }
        let live = self.live.as_mut().expect("checked above");
        match pipe.exec_async(&mut live.conn).await {
            Ok(()) => self.stats.published.add(n),
            Err(e) => {
                self.stats.publish_failures.add(n);
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_unrecoverable_error() {
                    self.lost(&format!("PUBLISH failed: {e}"));
                } else {
                    tracing::warn!(error = %e, events = n, "broker refused PUBLISH; events not sent to other servers");
                }
            }
        }
        true
    }

    /// Handles messages already received, without waiting. Returns whether
    /// there were any.
    fn drain_pushes(&mut self) -> bool {
        let mut any = false;
        for _ in 0..RECEIVE_BATCH {
            let Some(live) = &mut self.live else {
                break;
            };
            let Ok(p) = live.pushes.try_recv() else {
                break;
            };
            any = true;
            if !self.handle_push(p) {
                self.lost("the broker closed the connection");
            }
        }
        any
    }

    /// Returns false when the push reports that the connection is gone.
    fn handle_push(&mut self, p: PushInfo) -> bool {
        match p.kind {
            PushKind::Message => {
                if let [Value::BulkString(channel), Value::BulkString(payload)] = &p.data[..] {
                    self.deliver(channel, payload);
                } else {
                    self.malformed("message push without channel and payload");
                }
                true
            }
            PushKind::Disconnection => false,
            // Confirmations of our own SUBSCRIBE/UNSUBSCRIBE.
            _ => true,
        }
    }

    fn deliver(&mut self, channel: &[u8], payload: &[u8]) {
        let topic =
            channel.strip_prefix(self.config.channel_prefix.as_bytes()).and_then(|t| std::str::from_utf8(t).ok());
        let Some(topic) = topic else {
            self.malformed("channel outside the prefix or not UTF-8");
            return;
        };
        match decode_broker_message(payload) {
            Ok(m) if m.origin == self.origin => self.stats.skipped_own.inc(),
            Ok(m) => {
                self.stats.received.inc();
                let emitter = self.emitter.as_ref().expect("set at start");
                if let Err(e) = emitter.route_local(topic.into(), m.to_event()) {
                    tracing::debug!(error = %e, topic, "event from the broker not routed to every shard");
                }
            }
            Err(e) => self.malformed(&e.to_string()),
        }
    }

    fn malformed(&self, why: &str) {
        self.stats.malformed.inc();
        let n = self.stats.malformed.get();
        if n.is_power_of_two() {
            tracing::warn!(why, total = n, "ignored a broker message that is not a HardLight event");
        }
    }

    /// On shutdown: publish what is still queued, or count it as dropped.
    /// Bounded: at most one queue's worth of batches (emitters outside the
    /// server may go on emitting), each within the response timeout.
    async fn flush(&mut self) {
        for _ in 0..=self.config.queue_capacity / PUBLISH_BATCH {
            if !self.publish_batch().await {
                break;
            }
        }
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
        for url in ["http://127.0.0.1:6379", "not a url", "redis://127.0.0.1:notaport"] {
            assert!(matches!(prepare(BrokerConfig::new(url)), Err(ServerError::Config(_))), "{url}");
        }
        assert!(prepare(BrokerConfig::new("redis://127.0.0.1:6390/0")).is_ok());
    }

    #[test]
    fn credentials_stay_out_of_logs() {
        assert_eq!(redact("redis://user:secret@10.0.0.1:6379/0"), "redis://***@10.0.0.1:6379/0");
        assert_eq!(redact("redis://:secret@host"), "redis://***@host");
        assert_eq!(redact("redis://127.0.0.1:6390"), "redis://127.0.0.1:6390");
        let Err(ServerError::Config(e)) = prepare(BrokerConfig::new("redis://u:secret@host:port")) else { panic!() };
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn backoff_bounds_are_sane() {
        let c = BrokerConfig::new("redis://x").backoff(Duration::ZERO, Duration::ZERO);
        assert!(c.backoff_min > Duration::ZERO && c.backoff_max >= c.backoff_min);
    }
}
