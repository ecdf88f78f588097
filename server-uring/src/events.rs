//! Event routing: the cross-core channel mesh, each shard's subscription
//! index, and the handles applications emit through.
//!
//! Every shard owns one bounded inbound channel (crossbeam-channel) plus an
//! `AtomicWaker` for its router task; every shard and every [`Emitter`] (a
//! `Send` handle usable from any thread, executor or not) holds the sending
//! ends of all of them: a full mesh. An emit encodes the event once and
//! sends one message per shard, never one per subscriber; each shard then
//! looks up its own local recipients (topic index, or a predicate over each
//! connection's state) and queues the shared bytes on their outboxes.
//!
//! crossbeam-channel rather than glommio's `channel_mesh`: glommio's mesh
//! only connects executors that have joined it, while events must also come
//! from plain threads and tokio tasks; one mechanism serves both.
//! Emitting never blocks: a full shard inbox is an error the caller sees.
//!
//! With a broker configured, the mesh has one more participant: the bridge
//! thread (`crate::broker`). [`Emitter::to_topic`] hands the encoded event
//! to it through a bounded queue (full: [`EmitError::BrokerBacklog`]) and
//! does *not* deliver it locally: the broker gives it its position, and it
//! comes back like every other server's events, which the bridge routes
//! into the shards with `Emitter::route_positioned`. So every server
//! delivers a topic in one order with one numbering, and a client can
//! resume on any of them (`crate::broker` says what this costs). Each
//! shard's [`Registry`] tells the bridge when a topic gains its first or
//! loses its last local subscriber, so that it subscribes on the broker
//! only to topics some local connection needs, and asks it for the
//! broker's log where a resuming connection needs more than this server's
//! cache holds.

use std::any::Any;
use std::cell::RefCell;

use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use futures::task::AtomicWaker;
use hardlight_core::events::EventLimits;
use hardlight_core::{ConnectionState, EncodeError, EncodedEvent, Event, Outbox, Schema, StateHandle};

pub(crate) use crate::registry::{route, Registry};
use crate::resume::SharedHistory;
use crate::stats::BrokerStats;
use hardlight_core::resume::{Fetched, Position};

/// Default capacity of each shard's inbound event channel.
pub const DEFAULT_MESH_CAPACITY: usize = 4096;

type Predicate = Arc<dyn Fn(&dyn Any) -> bool + Send + Sync>;

/// Who an emitted event goes to.
#[derive(Clone)]
pub(crate) enum Target {
    All,
    Topic(Arc<str>),
    Matching(Predicate),
}

pub(crate) struct Routed {
    pub(crate) target: Target,
    pub(crate) event: EncodedEvent,
    /// For topic events: the position and framed `TOPIC_EVENT` for
    /// connections that resume (`crate::resume`).
    pub(crate) positioned: Option<(Position, EncodedEvent)>,
    /// Not an event: a notice about the topic (`event` is empty).
    pub(crate) notice: Option<Notice>,
}

/// What a shard learns about a topic besides its events.
#[derive(Clone)]
pub(crate) enum Notice {
    /// The topic lost events (`Emitter::mark_lost`).
    Lost,
    /// The broker's log of the topic, asked for by replays this server's
    /// cache did not cover (`None`: the broker could not be asked).
    Fetched(Arc<Option<Fetched>>),
}

/// One shard's inbound edge of the mesh.
pub(crate) struct Inbox {
    tx: Sender<Routed>,
    waker: Arc<AtomicWaker>,
}

/// The receiving end, owned by its shard.
pub(crate) struct InboxReceiver {
    pub(crate) rx: Receiver<Routed>,
    pub(crate) waker: Arc<AtomicWaker>,
}

impl InboxReceiver {
    /// The waker the router registers; waking it makes the router re-check.
    pub(crate) fn waker(&self) -> Arc<AtomicWaker> {
        self.waker.clone()
    }
}

/// Builds the mesh: one bounded inbox per shard.
pub(crate) fn mesh(shards: usize, capacity: usize) -> (Arc<[Inbox]>, Vec<InboxReceiver>) {
    let mut inboxes = Vec::with_capacity(shards);
    let mut receivers = Vec::with_capacity(shards);
    for _ in 0..shards {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let waker = Arc::new(AtomicWaker::new());
        inboxes.push(Inbox { tx, waker: waker.clone() });
        receivers.push(InboxReceiver { rx, waker });
    }
    (inboxes.into(), receivers)
}

/// Why an emit did not reach every shard.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// The event could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// These shards' inboxes were full (they are not keeping up); the event
    /// was delivered to the other shards only. Retry later or shed load.
    #[error("event mesh full on {0} shard(s); event not delivered there")]
    MeshFull(usize),
    /// The server has shut down.
    #[error("server is shut down")]
    Closed,
    /// A broker is configured and its bridge holds this many topic events
    /// not yet accepted by the broker (it is unreachable or slower than the
    /// emits): the event was not sent. Topic events are delivered only
    /// once the broker has positioned them, so nothing was delivered
    /// anywhere. Retry later, shed load, or raise
    /// `BrokerConfig::queue_capacity` if the broker is merely slow.
    #[error(
        "broker backlog full ({0} topic events wait for the broker): event not sent; retry later or raise \
         BrokerConfig::queue_capacity"
    )]
    BrokerBacklog(usize),
    /// The event's type is not one the service declares, so clients have
    /// no id for it; nothing was sent.
    #[error(
        "event type `{event}` is not declared by service `{service}`: list it in \
         #[hardlight::rpc(events(...))] so that server and clients agree on its id"
    )]
    Undeclared {
        /// The Rust type emitted.
        event: &'static str,
        /// The service's trait name.
        service: &'static str,
    },
}

/// A topic event on its way to the broker.
#[cfg_attr(not(feature = "broker"), allow(dead_code))]
pub(crate) struct Publish {
    pub(crate) topic: Arc<str>,
    pub(crate) event: EncodedEvent,
}

/// What shards and the server handle tell the bridge besides events.
#[cfg_attr(not(feature = "broker"), allow(dead_code))]
pub(crate) enum Control {
    /// A shard's first local subscriber of `topic` arrived (`+1`) or its
    /// last one left (`-1`).
    Interest { topic: Arc<str>, delta: i8 },
    /// A resuming connection needs `topic`'s broker log after `from`
    /// (`None`: only where the topic stands); the answer goes to every
    /// shard as [`Notice::Fetched`].
    Fetch { topic: Arc<str>, from: Option<Position> },
    /// The server is shutting down: flush and stop.
    Shutdown,
}

/// The sending side of the bridge, shared by every emitter and registry.
///
/// Publications go through a bounded queue: when it is full the emit fails
/// with [`EmitError::BrokerBacklog`] (and is counted in
/// `BrokerStats::queue_full`), so an emitter never waits for the broker
/// and never loses an event silently. Interest changes and log requests go
/// through an unbounded queue, because losing one would leave the bridge's
/// per-topic counts wrong for good, or a connection waiting for an answer;
/// there is at most one message per topic transition per shard, one
/// request per resuming connection and topic, and the bridge consumes them
/// without touching the network.
pub(crate) struct BridgeLink {
    publish: Sender<Publish>,
    control: Sender<Control>,
    waker: Arc<AtomicWaker>,
    pub(crate) stats: Arc<BrokerStats>,
}

/// The bridge's receiving side.
#[cfg_attr(not(feature = "broker"), allow(dead_code))]
pub(crate) struct BridgeInbox {
    pub(crate) publish: Receiver<Publish>,
    pub(crate) control: Receiver<Control>,
    pub(crate) waker: Arc<AtomicWaker>,
}

/// Builds the bridge's queues: publications bounded by `capacity`.
#[cfg_attr(not(feature = "broker"), allow(dead_code))]
pub(crate) fn bridge_link(capacity: usize, stats: Arc<BrokerStats>) -> (Arc<BridgeLink>, BridgeInbox) {
    let (ptx, prx) = crossbeam_channel::bounded(capacity.max(1));
    let (ctx, crx) = crossbeam_channel::unbounded();
    let waker = Arc::new(AtomicWaker::new());
    (
        Arc::new(BridgeLink { publish: ptx, control: ctx, waker: waker.clone(), stats }),
        BridgeInbox { publish: prx, control: crx, waker },
    )
}

impl BridgeLink {
    fn publish(&self, topic: Arc<str>, event: EncodedEvent) -> Result<(), EmitError> {
        match self.publish.try_send(Publish { topic, event }) {
            Ok(()) => {
                self.waker.wake();
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                self.stats.queue_full.inc();
                let n = self.stats.queue_full.get();
                // Log-scale warnings: a stuck bridge must not flood the log.
                if n.is_power_of_two() {
                    tracing::warn!(refused = n, "broker bridge queue full; topic emits refused (BrokerBacklog)");
                }
                Err(EmitError::BrokerBacklog(self.publish.capacity().unwrap_or(0)))
            }
            // The bridge has stopped: the server is shutting down.
            Err(TrySendError::Disconnected(_)) => Err(EmitError::Closed),
        }
    }

    /// Asks the bridge for `topic`'s broker log after `from`.
    pub(crate) fn fetch(&self, topic: Arc<str>, from: Option<Position>) -> bool {
        let sent = self.control.send(Control::Fetch { topic, from }).is_ok();
        self.waker.wake();
        sent
    }

    pub(crate) fn interest(&self, topic: Arc<str>, delta: i8) {
        if self.control.send(Control::Interest { topic, delta }).is_ok() {
            self.waker.wake();
        }
    }

    #[cfg_attr(not(feature = "broker"), allow(dead_code))]
    pub(crate) fn shutdown(&self) {
        let _ = self.control.send(Control::Shutdown);
        self.waker.wake();
    }
}

/// Emits events to connections on every shard. `Send + Sync + Clone`: use
/// it from handlers, other threads, or tokio tasks.
#[derive(Clone)]
pub struct Emitter {
    inboxes: Arc<[Inbox]>,
    stats: Arc<EmitStats>,
    bridge: Option<Arc<BridgeLink>>,
    /// The service's schema: only its event types may be emitted.
    schema: Option<&'static Schema>,
    /// Topic offsets and retained events, for resume.
    history: SharedHistory,
}

/// Counters for emits.
#[derive(Debug, Default)]
pub struct EmitStats {
    /// Events emitted (each counted once, however many shards it went to).
    pub emitted: AtomicU64,
    /// Shard deliveries refused because a shard inbox was full (events
    /// from the broker included).
    pub mesh_full: AtomicU64,
    /// Events queued for a connection (one per recipient; direct sends
    /// included). Counted per shard per event, not per recipient.
    pub delivered: AtomicU64,
    /// Queued events dropped under [`hardlight_core::events::SlowConsumerPolicy::DropOldest`]
    /// (the oldest queued made room for a newer one).
    pub dropped_oldest: AtomicU64,
    /// Events not queued because the connection was over its bound under
    /// [`hardlight_core::events::SlowConsumerPolicy::Disconnect`] (it is closed with 4001).
    pub dropped_disconnect: AtomicU64,
}

/// What queuing events on a shard's connections did, counted locally and
/// added to [`EmitStats`] once per routed event.
#[derive(Default)]
pub(crate) struct Tally {
    delivered: u64,
    dropped_oldest: u64,
    dropped_disconnect: u64,
}

impl Tally {
    pub(crate) fn push(&mut self, outbox: &Outbox, event: &EncodedEvent) {
        let dropped = outbox.events_dropped();
        if outbox.push_event(event) {
            self.delivered += 1;
        } else {
            self.dropped_disconnect += 1;
        }
        self.dropped_oldest += outbox.events_dropped() - dropped;
    }

    pub(crate) fn add_to(&self, stats: &EmitStats) {
        for (n, c) in [
            (self.delivered, &stats.delivered),
            (self.dropped_oldest, &stats.dropped_oldest),
            (self.dropped_disconnect, &stats.dropped_disconnect),
        ] {
            if n > 0 {
                c.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

impl Emitter {
    pub(crate) fn new(
        inboxes: Arc<[Inbox]>,
        bridge: Option<Arc<BridgeLink>>,
        schema: Option<&'static Schema>,
        history: SharedHistory,
    ) -> Self {
        Self { inboxes, stats: Arc::default(), bridge, schema, history }
    }

    /// The server's topic history.
    pub(crate) fn history(&self) -> SharedHistory {
        self.history.clone()
    }

    /// Gives a topic event its position and fans it out, both under the
    /// history lock, so that every shard sees the topic in offset order
    /// (see `crate::resume` for why that makes resume exactly-once).
    fn route_topic(&self, topic: Arc<str>, event: EncodedEvent) -> Result<(), EmitError> {
        let mut history = crate::resume::lock(&self.history);
        let positioned = history.append(&topic, std::time::Instant::now(), event.event_type(), event.archive());
        self.fan_out(Target::Topic(topic), event, positioned)
    }

    /// Encodes `event` if the service declares its type at its id: a type
    /// it does not declare (or a hand-written `Event` impl whose id belongs
    /// to another type) would reach clients as another type's bytes.
    pub(crate) fn encode<E: Event>(&self, event: &E) -> Result<EncodedEvent, EmitError> {
        if let Some(schema) = self.schema {
            if !schema.declares_event::<E>(E::TYPE) {
                return Err(EmitError::Undeclared { event: std::any::type_name::<E>(), service: schema.service });
            }
        }
        Ok(EncodedEvent::new(event)?)
    }

    /// Sends `event` to every connection subscribed to `topic`: on this
    /// server, and, when a broker is configured (`ServerBuilder::broker`),
    /// on every server bridged to it. With a broker, the event is only
    /// queued for the broker here; it is delivered (on this server too)
    /// once the broker has given it its position, so that every server
    /// delivers the topic in the same order. While the broker is
    /// unreachable, events wait in the bridge's bounded queue
    /// ([`EmitError::BrokerBacklog`] when it is full). Without a broker,
    /// an error describes local delivery.
    pub fn to_topic<E: Event>(&self, topic: &str, event: &E) -> Result<(), EmitError> {
        let event = self.encode(event)?;
        let topic: Arc<str> = topic.into();
        if let Some(bridge) = &self.bridge {
            bridge.publish(topic, event)?;
            self.stats.emitted.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        self.stats.emitted.fetch_add(1, Ordering::Relaxed);
        self.route_topic(topic, event)
    }

    /// Sends `event` to every connection on this server (never to other
    /// servers, even with a broker: only topic events cross).
    pub fn to_all<E: Event>(&self, event: &E) -> Result<(), EmitError> {
        self.route(Target::All, self.encode(event)?)
    }

    /// Sends `event` to every connection whose state (of type `S`, created
    /// with `ConnectContext::state`) satisfies `pred`. The predicate runs on
    /// each shard, against that shard's connections. This server only, even
    /// with a broker: only topic events cross.
    pub fn to_matching<E: Event, S: ConnectionState>(
        &self,
        event: &E,
        pred: impl Fn(&S) -> bool + Send + Sync + 'static,
    ) -> Result<(), EmitError> {
        let pred: Predicate = Arc::new(move |any: &dyn Any| {
            any.downcast_ref::<StateHandle<S>>().and_then(|h| h.try_read(|s| pred(s))).unwrap_or(false)
        });
        self.route(Target::Matching(pred), self.encode(event)?)
    }

    /// Counters.
    pub fn stats(&self) -> &EmitStats {
        &self.stats
    }

    /// The broker bridge's counters, when a broker is configured.
    pub fn broker_stats(&self) -> Option<&BrokerStats> {
        self.bridge.as_ref().map(|b| &*b.stats)
    }

    /// The shared counters, for a shard's registry to count deliveries in.
    pub(crate) fn stats_arc(&self) -> Arc<EmitStats> {
        self.stats.clone()
    }

    /// The registry's link to the bridge, if any.
    pub(crate) fn bridge(&self) -> Option<Arc<BridgeLink>> {
        self.bridge.clone()
    }

    /// Tells every resuming subscriber of `topic` on this server that events
    /// of it were lost (a gap notice of unknown size): how the bridge
    /// reports that it could not read what it missed during an outage from
    /// the broker's stream. Never silent loss, even across servers.
    #[cfg_attr(not(feature = "broker"), allow(dead_code))]
    pub(crate) fn mark_lost(&self, topic: Arc<str>) {
        let _history = crate::resume::lock(&self.history);
        self.notify(topic, Notice::Lost);
    }

    /// Hands the broker's answer for `topic` to `shards` (`None`: every
    /// shard), in order with the events routed before it (see
    /// `hardlight_core::resume::ConnectionResume::fetched`). Returns the
    /// shards whose inbox was full: the caller sends it to them again
    /// later (a late answer is still exact: the connection continues from
    /// the cache after it).
    #[cfg_attr(not(feature = "broker"), allow(dead_code))]
    pub(crate) fn answer(
        &self,
        topic: &Arc<str>,
        answer: &Arc<Option<Fetched>>,
        shards: Option<&[usize]>,
    ) -> Vec<usize> {
        let _history = crate::resume::lock(&self.history);
        let all: Vec<usize>;
        let shards = match shards {
            Some(s) => s,
            None => {
                all = (0..self.inboxes.len()).collect();
                &all
            }
        };
        let mut full = Vec::new();
        for &i in shards {
            let Some(inbox) = self.inboxes.get(i) else { continue };
            let routed = Routed {
                target: Target::Topic(topic.clone()),
                event: EncodedEvent::from_archive(0, &[]),
                positioned: None,
                notice: Some(Notice::Fetched(answer.clone())),
            };
            match inbox.tx.try_send(routed) {
                Ok(()) => inbox.waker.wake(),
                Err(TrySendError::Full(_)) => full.push(i),
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
        full
    }

    /// Sends a notice to every shard; the caller holds the history lock.
    fn notify(&self, topic: Arc<str>, notice: Notice) {
        for inbox in self.inboxes.iter() {
            let routed = Routed {
                target: Target::Topic(topic.clone()),
                event: EncodedEvent::from_archive(0, &[]),
                positioned: None,
                notice: Some(notice.clone()),
            };
            // The inbox is never full for long; a full inbox here would be
            // a shard that stopped, whose clients reconnect anyway.
            if inbox.tx.try_send(routed).is_ok() {
                inbox.waker.wake();
            }
        }
    }

    /// Routes an event the broker positioned to this server's shards
    /// (never back to the broker): inserted into the cache and fanned out
    /// under the history lock, so every shard sees the topic in offset
    /// order. A duplicate or stale event is dropped (returns `Ok(false)`).
    /// Not counted in `EmitStats::emitted` (the bridge counts them in
    /// `BrokerStats::received`).
    #[cfg_attr(not(feature = "broker"), allow(dead_code))]
    pub(crate) fn route_positioned(
        &self,
        topic: Arc<str>,
        at: Position,
        event: EncodedEvent,
        framed: Option<EncodedEvent>,
    ) -> Result<bool, EmitError> {
        let mut history = crate::resume::lock(&self.history);
        let Some(framed) = framed else {
            // A topic name too long for a position: delivered without one.
            return self.fan_out(Target::Topic(topic), event, None).map(|()| true);
        };
        if !history.insert(&topic, at, std::time::Instant::now(), framed.clone()) {
            return Ok(false);
        }
        self.fan_out(Target::Topic(topic), event, Some((at, framed))).map(|()| true)
    }

    fn route(&self, target: Target, event: EncodedEvent) -> Result<(), EmitError> {
        self.stats.emitted.fetch_add(1, Ordering::Relaxed);
        self.fan_out(target, event, None)
    }

    /// One message per shard inbox.
    fn fan_out(
        &self,
        target: Target,
        event: EncodedEvent,
        positioned: Option<(Position, EncodedEvent)>,
    ) -> Result<(), EmitError> {
        let mut full = 0;
        let mut closed = 0;
        for inbox in self.inboxes.iter() {
            let routed =
                Routed { target: target.clone(), event: event.clone(), positioned: positioned.clone(), notice: None };
            match inbox.tx.try_send(routed) {
                Ok(()) => inbox.waker.wake(),
                Err(TrySendError::Full(_)) => full += 1,
                Err(TrySendError::Disconnected(_)) => closed += 1,
            }
        }
        if full > 0 {
            self.stats.mesh_full.fetch_add(full as u64, Ordering::Relaxed);
            return Err(EmitError::MeshFull(full));
        }
        if closed == self.inboxes.len() {
            return Err(EmitError::Closed);
        }
        Ok(())
    }
}

impl std::fmt::Debug for ConnectionEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionEvents").field("key", &self.key).finish()
    }
}

/// One connection's view of events: subscribe it to topics, send it events
/// directly, set its slow-consumer policy, or emit to others. Cheap to clone;
/// not `Send` (it lives on the connection's shard).
#[derive(Clone)]
pub struct ConnectionEvents {
    pub(crate) registry: Rc<RefCell<Registry>>,
    pub(crate) key: usize,
    pub(crate) outbox: Rc<Outbox>,
    pub(crate) emitter: Emitter,
}

impl ConnectionEvents {
    /// Subscribes this connection to `topic` (idempotent).
    pub fn subscribe(&self, topic: &str) {
        self.registry.borrow_mut().subscribe(self.key, topic);
    }

    /// Unsubscribes this connection from `topic`.
    pub fn unsubscribe(&self, topic: &str) {
        self.registry.borrow_mut().unsubscribe(self.key, topic);
    }

    /// Sends `event` to this connection only, in order with its state
    /// changes and responses. Its type must be one the service declares
    /// ([`EmitError::Undeclared`] otherwise).
    pub fn send<E: Event>(&self, event: &E) -> Result<(), EmitError> {
        let mut tally = Tally::default();
        tally.push(&self.outbox, &self.emitter.encode(event)?);
        tally.add_to(&self.emitter.stats);
        Ok(())
    }

    /// Bounds and slow-consumer policy for this connection's queued events.
    pub fn set_limits(&self, limits: EventLimits) {
        self.outbox.set_event_limits(limits);
    }

    /// Events dropped for this connection so far (drop-oldest policy).
    pub fn dropped(&self) -> u64 {
        self.outbox.events_dropped()
    }

    /// The server-wide emitter.
    pub fn emitter(&self) -> &Emitter {
        &self.emitter
    }

    pub(crate) fn attach_state(&self, state: Rc<dyn Any>) {
        self.registry.borrow_mut().set_state(self.key, state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bridge_queue_refuses_with_a_typed_error_counts_and_never_blocks() {
        let stats = Arc::new(BrokerStats::default());
        let (link, inbox) = bridge_link(2, stats.clone());
        let ev = EncodedEvent::from_archive(1, &[]);
        for _ in 0..2 {
            link.publish("t".into(), ev.clone()).unwrap();
        }
        for _ in 0..3 {
            assert!(matches!(link.publish("t".into(), ev.clone()), Err(EmitError::BrokerBacklog(2))));
        }
        assert_eq!(inbox.publish.len(), 2);
        assert_eq!(stats.queue_full.get(), 3);
        let msg = EmitError::BrokerBacklog(2).to_string();
        assert!(msg.contains("retry later") && msg.contains("queue_capacity"), "actionable: {msg}");
        drop(inbox);
        assert!(matches!(link.publish("t".into(), ev), Err(EmitError::Closed)));
        assert_eq!(stats.queue_full.get(), 3, "a stopped bridge is not a full queue");
    }
}
