//! What the handles of one connection and its driver tasks share: the
//! core's [`ClientSession`] (every protocol rule), plus the runtime pieces
//! it cannot hold: the callers' wake-ups, the event and gap streams'
//! channels, the queue to the current transport's writer task, and the
//! status the application watches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hardlight_core::resume::GapNotice;
use hardlight_core::session::{CallToken, ClientSession, SessionEvent};
use hardlight_core::{CallError, RawReply};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio_tungstenite::tungstenite::Message;

use crate::Status;

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
    /// The listeners of gap notices.
    pub(crate) gap_listeners: Vec<mpsc::UnboundedSender<GapNotice>>,
    /// The current transport's writer, while one is open.
    pub(crate) out: Option<mpsc::UnboundedSender<Message>>,
}

pub(crate) struct Shared {
    inner: Mutex<Inner>,
    /// Bumped after every state, feature or drop-count change, and on close.
    pub(crate) version: watch::Sender<u64>,
    /// The transport's status.
    pub(crate) status: watch::Sender<Status>,
    /// Whether a dropped transport is followed by a new one.
    reconnects: bool,
    /// The application closed the connection (or dropped every handle).
    closing: AtomicBool,
    /// Wakes the reconnect task out of its backoff when closing.
    close_requested: Notify,
    /// Gap notices reported, in total.
    pub(crate) gaps: AtomicU64,
}

impl Shared {
    pub(crate) fn new(session: ClientSession, reconnects: bool) -> Self {
        Self {
            inner: Mutex::new(Inner {
                session,
                waiters: HashMap::new(),
                listeners: HashMap::new(),
                gap_listeners: Vec::new(),
                out: None,
            }),
            version: watch::channel(0).0,
            status: watch::channel(Status::Connecting).0,
            reconnects,
            closing: AtomicBool::new(false),
            close_requested: Notify::new(),
            gaps: AtomicU64::new(0),
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

    pub(crate) fn set_status(&self, status: Status) {
        self.status.send_if_modified(|s| {
            let changed = *s != status && *s != Status::Closed;
            if changed {
                *s = status;
            }
            changed
        });
    }

    /// Sends a message on the current transport, if any.
    pub(crate) fn send(&self, msg: Message) {
        if let Some(out) = &self.lock().out {
            let _ = out.send(msg);
        }
    }

    /// The application closes the connection: no reconnect follows.
    pub(crate) fn request_close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.close_requested.notify_waiters();
        let out = self.lock().out.clone();
        match out {
            Some(out) => {
                let _ = out.send(Message::Close(None));
            }
            None => {
                // Between transports: close the session here.
                let (_, d) = self.with_session(|s| s.handle_close("connection closed by the application"));
                drop(d);
                self.set_status(Status::Closed);
            }
        }
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Sleeps `d`; returns true if the application closed meanwhile.
    pub(crate) async fn sleep_unless_closing(&self, d: Duration) -> bool {
        let notified = self.close_requested.notified();
        if self.is_closing() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => self.is_closing(),
            _ = notified => true,
        }
    }

    /// A new transport is open: its writer queue, and the session reopened
    /// (its `RESUME`, if any, goes out first).
    pub(crate) fn attach(&self, out: mpsc::UnboundedSender<Message>, resumes: bool) {
        self.with_inner(|inner| {
            inner.out = Some(out);
            inner.session.reopen(resumes);
        });
    }

    /// The transport ended with `reason`: the session closes for good
    /// (no reconnect, or the application closed), or waits for the next
    /// transport.
    pub(crate) fn transport_ended(&self, reason: String) -> bool {
        let last = !self.reconnects || self.is_closing();
        self.with_inner(|inner| {
            inner.out = None;
            if last {
                inner.session.handle_close(reason);
            } else {
                inner.session.handle_disconnect(reason);
            }
        });
        self.set_status(if last { Status::Closed } else { Status::Reconnecting { attempt: 0 } });
        last
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
            if let Some(out) = &inner.out {
                let _ = out.send(Message::Binary(msg.into()));
            }
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
                SessionEvent::StateChanged
                | SessionEvent::FeaturesChanged
                | SessionEvent::EventsDropped { .. }
                | SessionEvent::Disconnected { .. } => changed = true,
                SessionEvent::Event { ty, archive } => {
                    if let Some(listeners) = inner.listeners.get(&ty).filter(|l| !l.is_empty()) {
                        deliveries.push((listeners.clone(), archive));
                    }
                }
                SessionEvent::Gap(notice) => {
                    tracing::debug!(?notice, "events lost");
                    self.gaps.fetch_add(1, Ordering::Relaxed);
                    inner.gap_listeners.retain(|tx| tx.send(notice.clone()).is_ok());
                }
                SessionEvent::Closed { .. } => {
                    // Dropping the senders ends every event stream with `Closed`.
                    inner.listeners.clear();
                    inner.gap_listeners.clear();
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
