//! The per-connection queue for messages the server originates (state
//! changes, feature-set changes, events), shared by the connection's
//! handlers, the shard's event router and the connection's driver.
//!
//! Handlers hold `Rc`s to it (through [`crate::state::StateHandle`] and
//! [`crate::features::Features`]); the connection
//! ([`crate::connection::ServerConnection::attach_outbox`]) moves the queue
//! into its outbound bytes before it writes any call response, which is
//! what puts a state change made during a call on the wire before that
//! call's response. Everything leaves in the order it was queued.
//!
//! Events are the only items that can pile up without the client asking
//! (calls are bounded by back-pressure on reads), so only they are bounded
//! here ([`EventLimits`]): past the bound, the oldest queued event is dropped
//! and counted, or the connection is marked for closing (4001), per policy.
//! While the socket is backlogged past `max_outbound_bytes` the connection
//! leaves events here, where the bound applies, instead of moving them into
//! the connection's outbound bytes. Single-threaded: it lives on the shard.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::task::Waker;

use crate::events::{write_events_dropped, EncodedEvent, EventLimits, SlowConsumerPolicy};
use crate::feature_set::FeatureSet;
use crate::frame::{self, Opcode};
use crate::state_diff::StateWriter;

#[derive(Debug)]
enum Item {
    /// A state or feature message, never dropped.
    Framed(Vec<u8>),
    /// An event, shared with its other recipients.
    Event(EncodedEvent),
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Item>,
    events: usize,
    event_bytes: usize,
    /// Events dropped since the last notice to the client.
    dropped_unreported: u32,
}

/// Messages queued for one connection, already framed, in order.
#[derive(Debug)]
pub struct Outbox {
    queue: RefCell<Queue>,
    event_limits: Cell<EventLimits>,
    dropped_total: Cell<u64>,
    overflowed: Cell<bool>,
    state_writer: RefCell<StateWriter>,
    features: RefCell<FeatureSet>,
    waker: RefCell<Option<Waker>>,
    queued: Cell<u64>,
    /// False until the upgrade is accepted: feature changes made by the
    /// connection factory are folded into the initial announcement.
    open: Cell<bool>,
}

impl Outbox {
    /// An empty outbox for a service with `method_count` methods, all enabled.
    pub fn new(method_count: usize) -> Self {
        Self {
            queue: RefCell::new(Queue::default()),
            event_limits: Cell::new(EventLimits::default()),
            dropped_total: Cell::new(0),
            overflowed: Cell::new(false),
            state_writer: RefCell::new(StateWriter::new()),
            features: RefCell::new(FeatureSet::all(method_count)),
            waker: RefCell::new(None),
            queued: Cell::new(0),
            open: Cell::new(false),
        }
    }

    /// Queues one message (envelope and body) as a binary frame and wakes
    /// the driver.
    pub fn push_message(&self, msg: &[u8]) {
        let mut framed = Vec::with_capacity(frame::MAX_HEADER_LEN + msg.len());
        frame::write_frame(&mut framed, Opcode::Binary, msg);
        self.queue.borrow_mut().items.push_back(Item::Framed(framed));
        self.queued.set(self.queued.get() + 1);
        self.wake();
    }

    fn wake(&self) {
        if let Some(w) = self.waker.borrow().as_ref() {
            w.wake_by_ref();
        }
    }

    /// The bounds and policy for this connection's queued events.
    pub fn event_limits(&self) -> EventLimits {
        self.event_limits.get()
    }

    /// Changes the bounds and policy for this connection's queued events.
    pub fn set_event_limits(&self, limits: EventLimits) {
        self.event_limits.set(limits);
    }

    /// Queues an event, applying the slow-consumer policy if the queue is full.
    /// Returns false if the event was not queued (connection over its bound
    /// under the disconnect policy).
    pub fn push_event(&self, event: &EncodedEvent) -> bool {
        if self.overflowed.get() {
            return false;
        }
        let limits = self.event_limits.get();
        let mut q = self.queue.borrow_mut();
        q.items.push_back(Item::Event(event.clone()));
        q.events += 1;
        q.event_bytes += event.frame().len();
        self.queued.set(self.queued.get() + 1);
        while q.events > limits.max_events || (q.event_bytes > limits.max_bytes && q.events > 1) {
            match limits.policy {
                SlowConsumerPolicy::Disconnect => {
                    self.overflowed.set(true);
                    break;
                }
                SlowConsumerPolicy::DropOldest => {
                    let Some(pos) = q.items.iter().position(|i| matches!(i, Item::Event(_))) else {
                        break;
                    };
                    if let Some(Item::Event(old)) = q.items.remove(pos) {
                        q.events -= 1;
                        q.event_bytes -= old.frame().len();
                        q.dropped_unreported = q.dropped_unreported.saturating_add(1);
                        self.dropped_total.set(self.dropped_total.get() + 1);
                    }
                }
            }
        }
        drop(q);
        self.wake();
        !self.overflowed.get()
    }

    /// Whether the event queue overflowed under the disconnect policy; the
    /// driver then closes the connection with 4001.
    pub fn overflowed(&self) -> bool {
        self.overflowed.get()
    }

    /// Events dropped for this connection since it opened.
    pub fn events_dropped(&self) -> u64 {
        self.dropped_total.get()
    }

    /// Events queued and not yet handed to the connection.
    pub fn events_queued(&self) -> usize {
        self.queue.borrow().events
    }

    /// Runs `f` with the reused state writer and queues what it wrote, if anything.
    pub(crate) fn with_state_writer(&self, f: impl FnOnce(&mut StateWriter)) {
        let mut w = self.state_writer.borrow_mut();
        w.reset();
        f(&mut w);
        if let Some(msg) = w.message() {
            self.push_message(msg);
        }
    }

    /// The current feature set.
    pub fn features(&self) -> FeatureSet {
        self.features.borrow().clone()
    }

    /// Whether method `id` is enabled.
    pub fn is_enabled(&self, id: u16) -> bool {
        self.features.borrow().is_enabled(id)
    }

    /// Changes the feature set; queues a `FEATURES` message if it changed.
    pub fn update_features(&self, f: impl FnOnce(&mut FeatureSet)) {
        let mut set = self.features.borrow_mut();
        let before = set.clone();
        f(&mut set);
        if *set != before && self.open.get() {
            let mut msg = Vec::with_capacity(3 + set.method_count().div_ceil(8));
            set.encode(&mut msg);
            drop(set);
            self.push_message(&msg);
        }
    }

    /// Marks the upgrade accepted and queues the initial feature set (after
    /// any initial state the factory queued). Later feature changes are
    /// queued as they happen.
    pub fn open(&self) {
        self.open.set(true);
        let mut msg = Vec::new();
        self.features.borrow().encode(&mut msg);
        self.push_message(&msg);
    }

    /// Registers the driver's waker, woken when something is queued from
    /// outside the driver's own polling (another task on the shard).
    pub fn register(&self, waker: &Waker) {
        let mut slot = self.waker.borrow_mut();
        match slot.as_ref() {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }

    /// Whether anything is queued.
    pub fn is_empty(&self) -> bool {
        let q = self.queue.borrow();
        q.items.is_empty() && q.dropped_unreported == 0
    }

    /// Messages queued since the outbox was created.
    pub fn messages_queued(&self) -> u64 {
        self.queued.get()
    }

    /// Appends queued messages (already framed) to `out`, in order, while
    /// `pending` (the bytes already waiting in front of them) plus what was
    /// appended stays under `limit`; the rest stays here, where the event
    /// bound applies. The connection calls it: with no limit before every
    /// call response (so nothing queued earlier is overtaken by it), and
    /// within `max_outbound_bytes` once a round.
    pub(crate) fn drain_to(&self, out: &mut Vec<u8>, pending: usize, limit: usize) {
        let start = out.len();
        let under = |out: &Vec<u8>| pending + (out.len() - start) < limit;
        let mut q = self.queue.borrow_mut();
        while under(out) {
            let Some(item) = q.items.pop_front() else {
                break;
            };
            match item {
                Item::Framed(bytes) => out.extend_from_slice(&bytes),
                Item::Event(ev) => {
                    if q.dropped_unreported > 0 {
                        // The loss is reported where it happened: before the
                        // first event that survived it.
                        write_events_dropped(out, q.dropped_unreported);
                        q.dropped_unreported = 0;
                    }
                    q.events -= 1;
                    q.event_bytes -= ev.frame().len();
                    out.extend_from_slice(ev.frame());
                }
            }
        }
        if q.items.is_empty() && q.dropped_unreported > 0 && under(out) {
            write_events_dropped(out, q.dropped_unreported);
            q.dropped_unreported = 0;
        }
    }

    /// Test helper: the queued message payloads, unframed, and clears the queue.
    #[doc(hidden)]
    pub fn take_messages_for_test(&self) -> Vec<Vec<u8>> {
        let mut q = self.queue.borrow_mut();
        let mut out = Vec::new();
        for item in q.items.drain(..) {
            let bytes = match &item {
                Item::Framed(b) => &b[..],
                Item::Event(e) => e.frame(),
            };
            let h =
                frame::parse_header(bytes, frame::Role::Client, usize::MAX).expect("valid frame").expect("whole frame");
            out.push(bytes[h.header_len..].to_vec());
        }
        q.events = 0;
        q.event_bytes = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: u8) -> EncodedEvent {
        EncodedEvent::from_archive(7, &[n; 8])
    }

    fn kinds_and_first_bytes(out: &[u8]) -> Vec<(u8, u8)> {
        let mut v = Vec::new();
        let mut rest = out;
        while !rest.is_empty() {
            let h = frame::parse_header(rest, frame::Role::Client, usize::MAX).unwrap().unwrap();
            let end = h.header_len + h.payload_len as usize;
            let p = &rest[h.header_len..end];
            v.push((p[0], *p.last().unwrap()));
            rest = &rest[end..];
        }
        v
    }

    #[test]
    fn drop_oldest_keeps_the_newest_and_reports_the_count() {
        let o = Outbox::new(0);
        o.set_event_limits(EventLimits {
            max_events: 3,
            max_bytes: usize::MAX,
            policy: SlowConsumerPolicy::DropOldest,
        });
        o.push_message(&[0x20, 0]);
        for n in 1..=5 {
            assert!(o.push_event(&ev(n)));
        }
        assert_eq!(o.events_queued(), 3);
        assert_eq!(o.events_dropped(), 2);
        let mut out = Vec::new();
        o.drain_to(&mut out, 0, 1 << 20);
        let got = kinds_and_first_bytes(&out);
        // The state message is never dropped; the notice precedes the next item.
        assert_eq!(got, vec![(0x20, 0), (0x31, 0), (0x30, 3), (0x30, 4), (0x30, 5)]);
        let notice = &out[4 + 2..4 + 2 + 5];
        assert_eq!(notice, &[0x31, 2, 0, 0, 0]);
    }

    #[test]
    fn disconnect_policy_marks_overflow() {
        let o = Outbox::new(0);
        o.set_event_limits(EventLimits {
            max_events: 2,
            max_bytes: usize::MAX,
            policy: SlowConsumerPolicy::Disconnect,
        });
        assert!(o.push_event(&ev(1)));
        assert!(o.push_event(&ev(2)));
        assert!(!o.overflowed());
        assert!(!o.push_event(&ev(3)));
        assert!(o.overflowed());
        assert!(!o.push_event(&ev(4)), "nothing more is queued once overflowed");
    }

    #[test]
    fn backlogged_socket_keeps_events_here_in_order() {
        let o = Outbox::new(0);
        for n in 1..=6 {
            o.push_event(&ev(n));
        }
        let mut out = Vec::new();
        o.drain_to(&mut out, 0, 40);
        let first = kinds_and_first_bytes(&out);
        assert!(first.len() < 6, "stops at the outbound limit");
        assert_eq!(o.events_queued(), 6 - first.len());
        let mut none = Vec::new();
        o.drain_to(&mut none, 40, 40);
        assert!(none.is_empty(), "bytes already pending count against the limit");
        let mut rest = Vec::new();
        o.drain_to(&mut rest, 0, usize::MAX);
        let rest = kinds_and_first_bytes(&rest);
        let all: Vec<u8> = first.iter().chain(rest.iter()).map(|x| x.1).collect();
        assert_eq!(all, vec![1, 2, 3, 4, 5, 6]);
    }
}
