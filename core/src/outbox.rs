//! The per-connection queue for messages the server originates (state
//! changes, feature-set changes, later events), shared by the connection's
//! handlers and its driver.
//!
//! Handlers hold `Rc`s to it (through [`crate::state::StateHandle`] and
//! [`crate::features::Features`]) while the driver owns the
//! [`crate::connection::ServerConnection`]; the driver moves the queue into
//! the connection's outbound bytes before it writes any call response, which
//! is what puts a state change made during a call on the wire before that
//! call's response. Single-threaded: it lives on the connection's shard.

use std::cell::{Cell, RefCell};
use std::task::Waker;

use crate::connection::ServerConnection;
use crate::features::FeatureSet;
use crate::frame::{self, Opcode};
use crate::state::StateWriter;

/// Messages queued for one connection, already framed.
#[derive(Debug)]
pub struct Outbox {
    frames: RefCell<Vec<u8>>,
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
            frames: RefCell::new(Vec::new()),
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
        frame::write_frame(&mut self.frames.borrow_mut(), Opcode::Binary, msg);
        self.queued.set(self.queued.get() + 1);
        if let Some(w) = self.waker.borrow().as_ref() {
            w.wake_by_ref();
        }
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
        self.frames.borrow().is_empty()
    }

    /// Messages queued since the outbox was created.
    pub fn messages_queued(&self) -> u64 {
        self.queued.get()
    }

    /// Moves everything queued into the connection's outbound bytes, in order.
    pub fn drain_into(&self, conn: &mut ServerConnection) {
        let mut frames = self.frames.borrow_mut();
        if !frames.is_empty() {
            conn.send_framed(&frames);
            frames.clear();
        }
    }

    /// Test helper: the queued message payloads, unframed, and clears the queue.
    #[doc(hidden)]
    pub fn take_messages_for_test(&self) -> Vec<Vec<u8>> {
        let mut frames = self.frames.borrow_mut();
        let mut out = Vec::new();
        let mut rest = &frames[..];
        while !rest.is_empty() {
            let h = frame::parse_header(rest, frame::Role::Client, usize::MAX)
                .expect("valid frame")
                .expect("whole frame");
            let end = h.header_len + h.payload_len as usize;
            out.push(rest[h.header_len..end].to_vec());
            rest = &rest[end..];
        }
        frames.clear();
        out
    }
}
