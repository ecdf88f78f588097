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

use std::any::Any;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use futures::task::AtomicWaker;
use hardlight_core::events::EventLimits;
use hardlight_core::{ConnectionState, EncodeError, EncodedEvent, Event, Outbox, StateHandle};

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
    target: Target,
    event: EncodedEvent,
}

/// One shard's inbound edge of the mesh.
pub(crate) struct Inbox {
    tx: Sender<Routed>,
    waker: Arc<AtomicWaker>,
}

/// The receiving end, owned by its shard.
pub(crate) struct InboxReceiver {
    rx: Receiver<Routed>,
    waker: Arc<AtomicWaker>,
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
}

/// Emits events to connections on every shard. `Send + Sync + Clone`: use
/// it from handlers, other threads, or tokio tasks.
#[derive(Clone)]
pub struct Emitter {
    inboxes: Arc<[Inbox]>,
    stats: Arc<EmitStats>,
}

/// Counters for emits.
#[derive(Debug, Default)]
pub struct EmitStats {
    /// Events emitted (each counted once, however many shards it went to).
    pub emitted: AtomicU64,
    /// Shard deliveries refused because a shard inbox was full.
    pub mesh_full: AtomicU64,
}

impl Emitter {
    pub(crate) fn new(inboxes: Arc<[Inbox]>) -> Self {
        Self { inboxes, stats: Arc::default() }
    }

    /// Sends `event` to every connection subscribed to `topic`.
    pub fn to_topic<E: Event>(&self, topic: &str, event: &E) -> Result<(), EmitError> {
        self.route(Target::Topic(topic.into()), EncodedEvent::new(event)?)
    }

    /// Sends `event` to every connection on the server.
    pub fn to_all<E: Event>(&self, event: &E) -> Result<(), EmitError> {
        self.route(Target::All, EncodedEvent::new(event)?)
    }

    /// Sends `event` to every connection whose state (of type `S`, created
    /// with `ConnectContext::state`) satisfies `pred`. The predicate runs on
    /// each shard, against that shard's connections.
    pub fn to_matching<E: Event, S: ConnectionState>(
        &self,
        event: &E,
        pred: impl Fn(&S) -> bool + Send + Sync + 'static,
    ) -> Result<(), EmitError> {
        let pred: Predicate = Arc::new(move |any: &dyn Any| {
            any.downcast_ref::<StateHandle<S>>().and_then(|h| h.try_read(|s| pred(s))).unwrap_or(false)
        });
        self.route(Target::Matching(pred), EncodedEvent::new(event)?)
    }

    /// Counters.
    pub fn stats(&self) -> &EmitStats {
        &self.stats
    }

    fn route(&self, target: Target, event: EncodedEvent) -> Result<(), EmitError> {
        self.stats.emitted.fetch_add(1, Ordering::Relaxed);
        let mut full = 0;
        let mut closed = 0;
        for inbox in self.inboxes.iter() {
            match inbox.tx.try_send(Routed { target: target.clone(), event: event.clone() }) {
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

/// A shard's local connections and topic subscriptions.
#[derive(Default)]
pub(crate) struct Registry {
    conns: Vec<Option<Entry>>,
    free: Vec<usize>,
    topics: HashMap<Arc<str>, HashSet<usize>>,
}

struct Entry {
    outbox: Rc<Outbox>,
    state: Option<Rc<dyn Any>>,
    topics: HashSet<Arc<str>>,
}

impl Registry {
    pub(crate) fn register(&mut self, outbox: Rc<Outbox>) -> usize {
        let entry = Entry { outbox, state: None, topics: HashSet::new() };
        match self.free.pop() {
            Some(k) => {
                self.conns[k] = Some(entry);
                k
            }
            None => {
                self.conns.push(Some(entry));
                self.conns.len() - 1
            }
        }
    }

    pub(crate) fn unregister(&mut self, key: usize) {
        if let Some(entry) = self.conns.get_mut(key).and_then(Option::take) {
            for t in entry.topics {
                if let Some(set) = self.topics.get_mut(&t) {
                    set.remove(&key);
                    if set.is_empty() {
                        self.topics.remove(&t);
                    }
                }
            }
            self.free.push(key);
        }
    }

    fn set_state(&mut self, key: usize, state: Rc<dyn Any>) {
        if let Some(Some(e)) = self.conns.get_mut(key) {
            e.state = Some(state);
        }
    }

    fn subscribe(&mut self, key: usize, topic: &str) {
        let Some(Some(e)) = self.conns.get_mut(key) else {
            return;
        };
        let topic: Arc<str> = self.topics.get_key_value(topic).map(|(k, _)| k.clone()).unwrap_or_else(|| topic.into());
        e.topics.insert(topic.clone());
        self.topics.entry(topic).or_default().insert(key);
    }

    fn unsubscribe(&mut self, key: usize, topic: &str) {
        if let Some(Some(e)) = self.conns.get_mut(key) {
            e.topics.remove(topic);
        }
        if let Some(set) = self.topics.get_mut(topic) {
            set.remove(&key);
            if set.is_empty() {
                self.topics.remove(topic);
            }
        }
    }

    fn deliver(&self, routed: &Routed) -> usize {
        let mut n = 0;
        match &routed.target {
            Target::All => {
                for e in self.conns.iter().flatten() {
                    e.outbox.push_event(&routed.event);
                    n += 1;
                }
            }
            Target::Topic(t) => {
                if let Some(set) = self.topics.get(t) {
                    for &k in set {
                        if let Some(Some(e)) = self.conns.get(k) {
                            e.outbox.push_event(&routed.event);
                            n += 1;
                        }
                    }
                }
            }
            Target::Matching(pred) => {
                for e in self.conns.iter().flatten() {
                    if e.state.as_deref().is_some_and(|s| pred(s)) {
                        e.outbox.push_event(&routed.event);
                        n += 1;
                    }
                }
            }
        }
        n
    }
}

/// The shard task that takes routed events off its inbox and queues them on
/// local connections. Runs until the inbox's senders are all gone or `stop`.
pub(crate) async fn route(
    receiver: InboxReceiver,
    registry: Rc<RefCell<Registry>>,
    stopped: Rc<std::cell::Cell<bool>>,
) {
    std::future::poll_fn(|cx| {
        receiver.waker.register(cx.waker());
        // Bounded work per wake-up so a flood of events cannot starve the
        // shard's connections; the rest is taken on the next poll.
        for _ in 0..1024 {
            match receiver.rx.try_recv() {
                Ok(routed) => {
                    registry.borrow().deliver(&routed);
                }
                Err(crossbeam_channel::TryRecvError::Empty) => {
                    return if stopped.get() { Poll::Ready(()) } else { Poll::Pending };
                }
                Err(crossbeam_channel::TryRecvError::Disconnected) => return Poll::Ready(()),
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
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
    /// changes and responses.
    pub fn send<E: Event>(&self, event: &E) -> Result<(), EncodeError> {
        self.outbox.push_event(&EncodedEvent::new(event)?);
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
