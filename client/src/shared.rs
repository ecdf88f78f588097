//! What the handles of one connection and its driver tasks share: the
//! core's [`ClientSession`] (every protocol rule), plus the runtime pieces
//! it cannot hold: the callers' wake-ups, the event streams' channels, and
//! the queue to the writer task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use hardlight_core::session::{CallToken, ClientSession, SessionEvent};
use hardlight_core::{CallError, RawReply};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message;

pub(crate) type Waiter = oneshot::Sender<Result<RawReply, CallError>>;

/// Event payloads to hand to streams once the lock is released (sending may
/// wait: back-pressure).
pub(crate) type Deliveries = Vec<(Vec<mpsc::Sender<Arc<[u8]>>>, Arc<[u8]>)>;

pub(crate) struct Inner {
    pub(crate) session: ClientSession,
    /// The caller waiting for each open call.
    pub(crate) waiters: HashMap<CallToken, Waiter>,
    /// The listeners of each event type.
    pub(crate) listeners: HashMap<u16, Vec<mpsc::Sender<Arc<[u8]>>>>,
}

pub(crate) struct Shared {
    inner: Mutex<Inner>,
    /// Bumped after every state, feature or drop-count change, and on close.
    pub(crate) version: watch::Sender<u64>,
    /// Messages for the writer task, in order.
    pub(crate) out: mpsc::UnboundedSender<Message>,
}

impl Shared {
    pub(crate) fn new(session: ClientSession, out: mpsc::UnboundedSender<Message>) -> Self {
        Self {
            inner: Mutex::new(Inner { session, waiters: HashMap::new(), listeners: HashMap::new() }),
            version: watch::channel(0).0,
            out,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update under this lock leaves the session consistent (the
        // session's methods do not panic midway), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn close_reason(&self) -> Option<String> {
        self.lock().session.close_reason().map(str::to_string)
    }

    pub(crate) fn disconnect_reason(&self) -> String {
        self.close_reason().unwrap_or_else(|| "connection closed".into())
    }

    /// Runs `f` on the session, then sends what it queued for the server
    /// and hands what it reported to callers, the state watchers and (after
    /// the lock is released, by the caller) the event streams.
    pub(crate) fn with_session<R>(&self, f: impl FnOnce(&mut ClientSession) -> R) -> (R, Deliveries) {
        self.with_inner(|inner| f(&mut inner.session))
    }

    /// [`Self::with_session`] with the waiters and listeners at hand too.
    pub(crate) fn with_inner<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> (R, Deliveries) {
        let mut inner = self.lock();
        let r = f(&mut inner);
        // Under the lock, so that calls go out in the order they were made.
        while let Some(msg) = inner.session.poll_transmit() {
            let _ = self.out.send(Message::Binary(msg.into()));
        }
        let mut deliveries = Vec::new();
        let mut changed = false;
        while let Some(event) = inner.session.poll_event() {
            match event {
                SessionEvent::Reply { call, result } => {
                    if let Some(w) = inner.waiters.remove(&call) {
                        let _ = w.send(result);
                    }
                }
                SessionEvent::StateChanged | SessionEvent::FeaturesChanged | SessionEvent::EventsDropped { .. } => {
                    changed = true
                }
                SessionEvent::Event { ty, archive } => {
                    if let Some(listeners) = inner.listeners.get(&ty).filter(|l| !l.is_empty()) {
                        deliveries.push((listeners.clone(), archive));
                    }
                }
                SessionEvent::Closed { .. } => {
                    // Dropping the senders ends every event stream with `Closed`.
                    inner.listeners.clear();
                    changed = true;
                }
            }
        }
        drop(inner);
        if changed {
            self.version.send_modify(|v| *v += 1);
        }
        (r, deliveries)
    }

    /// Hands events to their streams, waiting while a stream is full.
    pub(crate) async fn deliver(&self, deliveries: Deliveries) {
        for (listeners, bytes) in deliveries {
            let mut gone = false;
            for tx in &listeners {
                gone |= tx.send(bytes.clone()).await.is_err();
            }
            if gone {
                for list in self.lock().listeners.values_mut() {
                    list.retain(|tx| !tx.is_closed());
                }
            }
        }
    }
}
