//! Each shard's registry of local connections and topic subscriptions, and
//! the router task that delivers routed events to them (split from
//! `events.rs`, which holds the mesh and the emitters). A connection that
//! opted in to resume carries the core's `ConnectionResume` here.

use std::any::Any;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;

use hardlight_core::resume::{ConnectionResume, TopicHistory};
use hardlight_core::Outbox;

use crate::events::{BridgeLink, EmitStats, InboxReceiver, Notice, Routed, Tally, Target};
use crate::resume::SharedHistory;

/// A shard's local connections and topic subscriptions.
pub(crate) struct Registry {
    conns: Vec<Option<Entry>>,
    free: Vec<usize>,
    topics: HashMap<Arc<str>, HashSet<usize>>,
    /// Told when a topic gains its first or loses its last subscriber here.
    bridge: Option<Arc<BridgeLink>>,
    /// The server's topic history (replays for resuming connections).
    history: SharedHistory,
    /// Where deliveries are counted (the emitter's).
    stats: Arc<EmitStats>,
}

struct Entry {
    outbox: Rc<Outbox>,
    state: Option<Rc<dyn Any>>,
    topics: HashSet<Arc<str>>,
    /// Set for a connection that opted in to resume.
    resume: Option<ConnectionResume>,
}

impl Registry {
    pub(crate) fn new(bridge: Option<Arc<BridgeLink>>, history: SharedHistory) -> Self {
        Self { bridge, history, conns: Vec::new(), free: Vec::new(), topics: HashMap::new(), stats: Arc::default() }
    }

    /// Counts deliveries in `stats` (the emitter's) instead of its own.
    pub(crate) fn counting_in(mut self, stats: Arc<EmitStats>) -> Self {
        self.stats = stats;
        self
    }

    /// The connection opted in to resume: it gets topic events with their
    /// position, none until [`Self::resume`].
    pub(crate) fn enable_resume(&mut self, key: usize) {
        if let Some(Some(e)) = self.conns.get_mut(key) {
            let r = ConnectionResume::new();
            r.opened(&crate::resume::lock(&self.history), &e.outbox);
            e.resume = Some(r);
        }
    }

    /// The connection's first message arrived (with these positions if it
    /// was a `RESUME`): replay what it missed, then live events.
    pub(crate) fn resume(&mut self, key: usize, req: hardlight_core::resume::ResumeRequest) {
        if let Some(Some(e)) = self.conns.get_mut(key) {
            if let Some(r) = e.resume.as_mut() {
                let mut h = crate::resume::lock(&self.history);
                r.release(req, &mut h, std::time::Instant::now(), &e.outbox);
                ask_broker(self.bridge.as_deref(), r, &mut h, &e.outbox);
            }
        }
    }

    /// `topic` has no subscriber on this shard any more.
    fn topic_gone(&mut self, topic: &str) {
        if let Some((t, _)) = self.topics.remove_entry(topic) {
            if let Some(b) = &self.bridge {
                b.interest(t, -1);
            }
        }
    }

    pub(crate) fn register(&mut self, outbox: Rc<Outbox>) -> usize {
        let entry = Entry { outbox, state: None, topics: HashSet::new(), resume: None };
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
                        self.topic_gone(&t);
                    }
                }
            }
            self.free.push(key);
        }
    }

    pub(crate) fn set_state(&mut self, key: usize, state: Rc<dyn Any>) {
        if let Some(Some(e)) = self.conns.get_mut(key) {
            e.state = Some(state);
        }
    }

    pub(crate) fn subscribe(&mut self, key: usize, topic: &str) {
        let Some(Some(e)) = self.conns.get_mut(key) else {
            return;
        };
        let topic: Arc<str> = match self.topics.get_key_value(topic) {
            Some((k, _)) => k.clone(),
            None => {
                let t: Arc<str> = topic.into();
                if let Some(b) = &self.bridge {
                    b.interest(t.clone(), 1);
                }
                t
            }
        };
        e.topics.insert(topic.clone());
        if let Some(r) = e.resume.as_mut() {
            let mut h = crate::resume::lock(&self.history);
            r.subscribed(&topic, &mut h, std::time::Instant::now(), &e.outbox);
            ask_broker(self.bridge.as_deref(), r, &mut h, &e.outbox);
        }
        self.topics.entry(topic).or_default().insert(key);
    }

    pub(crate) fn unsubscribe(&mut self, key: usize, topic: &str) {
        if let Some(Some(e)) = self.conns.get_mut(key) {
            e.topics.remove(topic);
            if let Some(r) = e.resume.as_mut() {
                r.unsubscribed(topic);
            }
        }
        if let Some(set) = self.topics.get_mut(topic) {
            set.remove(&key);
            if set.is_empty() {
                self.topic_gone(topic);
            }
        }
    }

    fn deliver(&mut self, routed: &Routed) -> usize {
        let mut n = 0;
        let mut tally = Tally::default();
        if let Some(notice) = &routed.notice {
            let Target::Topic(t) = &routed.target else { return 0 };
            if let Some(set) = self.topics.get(t) {
                for &k in set {
                    if let Some(Some(e)) = self.conns.get_mut(k) {
                        if let Some(r) = e.resume.as_mut() {
                            match notice {
                                Notice::Lost => r.lost(t, &e.outbox),
                                Notice::Fetched(answer) => {
                                    let mut h = crate::resume::lock(&self.history);
                                    let now = std::time::Instant::now();
                                    r.fetched(t, answer.as_ref().as_ref(), &mut h, now, &e.outbox);
                                }
                            }
                            n += 1;
                        }
                    }
                }
            }
            return n;
        }
        match &routed.target {
            Target::All => {
                for e in self.conns.iter().flatten() {
                    tally.push(&e.outbox, &routed.event);
                    n += 1;
                }
            }
            Target::Topic(t) => {
                if let Some(set) = self.topics.get(t) {
                    for &k in set {
                        let Some(Some(e)) = self.conns.get_mut(k) else { continue };
                        match (e.resume.as_mut(), &routed.positioned) {
                            (Some(r), Some((at, framed))) => {
                                if r.admit(t, *at) {
                                    tally.push(&e.outbox, framed);
                                    n += 1;
                                }
                            }
                            _ => {
                                tally.push(&e.outbox, &routed.event);
                                n += 1;
                            }
                        }
                    }
                }
            }
            Target::Matching(pred) => {
                for e in self.conns.iter().flatten() {
                    if e.state.as_deref().is_some_and(|s| pred(s)) {
                        tally.push(&e.outbox, &routed.event);
                        n += 1;
                    }
                }
            }
        }
        tally.add_to(&self.stats);
        n
    }
}

/// Sends the connection's requests for broker logs to the bridge. Without
/// one (or once it has stopped) nobody can answer: the replay is resolved
/// at once as "could not ask" (an unknown gap), never left waiting.
fn ask_broker(bridge: Option<&BridgeLink>, r: &mut ConnectionResume, h: &mut TopicHistory, outbox: &Outbox) {
    for (topic, from) in r.take_fetches() {
        if !bridge.is_some_and(|b| b.fetch(topic.clone(), from)) {
            r.fetched(&topic, None, h, std::time::Instant::now(), outbox);
        }
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
                    registry.borrow_mut().deliver(&routed);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{bridge_link, BridgeInbox, Control};

    fn interest(inbox: &BridgeInbox) -> Vec<(String, i8)> {
        inbox
            .control
            .try_iter()
            .map(|c| match c {
                Control::Interest { topic, delta } => (topic.to_string(), delta),
                Control::Fetch { topic, .. } => (format!("<fetch {topic}>"), 0),
                Control::Shutdown => ("<shutdown>".into(), 0),
            })
            .collect()
    }

    #[test]
    fn deliveries_and_drops_by_policy_are_counted_once_per_routed_event() {
        use std::sync::atomic::{AtomicU64, Ordering};

        use hardlight_core::events::{EventLimits, SlowConsumerPolicy};
        use hardlight_core::EncodedEvent;

        use crate::events::EmitStats;
        let stats = Arc::new(EmitStats::default());
        let mut reg = Registry::new(None, crate::resume::new_history(Default::default())).counting_in(stats.clone());
        let limits = |policy| EventLimits { max_events: 2, max_bytes: 1 << 20, policy };
        for policy in [SlowConsumerPolicy::DropOldest, SlowConsumerPolicy::Disconnect] {
            let outbox = Rc::new(Outbox::new(0));
            outbox.open();
            outbox.set_event_limits(limits(policy));
            reg.register(outbox);
        }
        let routed =
            Routed { target: Target::All, event: EncodedEvent::from_archive(1, &[]), positioned: None, notice: None };
        for _ in 0..4 {
            reg.deliver(&routed);
        }
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        // Drop-oldest queues all 4 and drops 2; disconnect queues 2, and the
        // third overflows it: refused, and so is the fourth.
        assert_eq!(get(&stats.dropped_oldest), 2);
        assert_eq!(get(&stats.dropped_disconnect), 2);
        assert_eq!(get(&stats.delivered), 4 + 2);
    }

    #[test]
    fn the_bridge_hears_of_a_topic_once_per_shard_on_first_and_last_subscriber() {
        let (link, inbox) = bridge_link(8, Arc::default());
        let history = crate::resume::new_history(Default::default());
        let mut reg = Registry::new(Some(link), history);
        let a = reg.register(Rc::new(Outbox::new(0)));
        let b = reg.register(Rc::new(Outbox::new(0)));
        reg.subscribe(a, "t");
        reg.subscribe(a, "t");
        reg.subscribe(b, "t");
        reg.subscribe(b, "u");
        assert_eq!(interest(&inbox), vec![("t".into(), 1), ("u".into(), 1)]);
        reg.unsubscribe(a, "t");
        reg.unsubscribe(a, "never");
        assert_eq!(interest(&inbox), vec![]);
        // The last subscriber of both topics goes away with its connection.
        reg.unregister(b);
        let mut gone = interest(&inbox);
        gone.sort();
        assert_eq!(gone, vec![("t".into(), -1), ("u".into(), -1)]);
        reg.subscribe(a, "t");
        assert_eq!(interest(&inbox), vec![("t".into(), 1)]);
    }
}
