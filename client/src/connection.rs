//! A connection: opening it, calls, and what the server told it.

use std::sync::Arc;
use std::time::Duration;

use hardlight_core::resume::GapNotice;
use hardlight_core::session::{CallToken, ClientSession};
use hardlight_core::{AlignedBuf, CallError, Caller, ConnectionState, FeatureSet, RawReply, Schema};
use tokio::sync::{mpsc, oneshot, watch};

use crate::events::{EventError, EventStream, DEFAULT_EVENT_BUFFER};
use crate::mirror::StateMirror;
use crate::shared::Shared;
use crate::{ClientConfig, ConnectError, Status};

/// A connection to a HardLight server. Cheap to clone; clones share the
/// socket. Dropping the last clone closes the connection.
///
/// With [`ClientConfig::reconnect`] the connection outlives its transports:
/// after a drop it reconnects with backoff, runs the on-connect hook, and
/// resumes topic events; see [`Status`].
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
    call_timeout: Duration,
    schema: Option<&'static Schema>,
    /// The on-connect hook's handle: its calls go out while the transport
    /// is held, ahead of the application's.
    priority: bool,
    _closer: Arc<Closer>,
}

/// Closes the connection when the last handle goes away.
pub(crate) struct Closer(Arc<Shared>);
impl Drop for Closer {
    fn drop(&mut self) {
        self.0.request_close();
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("status", &self.status()).field("closed", &self.close_reason()).finish()
    }
}

impl Connection {
    /// Connects with default settings.
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        Self::connect_with(url, ClientConfig::default()).await
    }

    /// Connects with `config`. Returns once the server's initial state and
    /// feature set are in and the on-connect hook (if any) has succeeded;
    /// the first connection is not retried (its error is returned).
    pub async fn connect_with(url: &str, config: ClientConfig) -> Result<Self, ConnectError> {
        let first = crate::transport::open(url, &config).await?;
        let mut session = ClientSession::with_max_waiting(config.max_waiting_calls);
        if config.resume {
            session.enable_resume();
        }
        session.set_wait_while_disconnected(config.wait_while_disconnected);
        for &m in &config.idempotent {
            session.set_idempotent(m);
        }
        // Methods the trait marks `#[idempotent]`, when the schema is known.
        let marked = config.schema.map_or(&[][..], |s| s.methods);
        for (id, _) in marked.iter().enumerate().filter(|(_, m)| m.idempotent) {
            session.set_idempotent(id as u16);
        }
        let shared = Arc::new(Shared::new(session, config.reconnect.is_some()));
        let closer = Arc::new(Closer(shared.clone()));
        let conn = Self {
            shared: shared.clone(),
            call_timeout: config.call_timeout,
            schema: config.schema,
            priority: false,
            _closer: closer.clone(),
        };
        let (ready_tx, ready_rx) = oneshot::channel();
        let weak = Arc::downgrade(&closer);
        drop(closer);
        tokio::spawn(crate::reconnect::supervise(shared, weak, url.to_string(), config, first, ready_tx));
        match ready_rx.await {
            Ok(Ok(())) => Ok(conn),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ConnectError::Io("connection task ended".into())),
        }
    }

    /// The on-connect hook's handle (see [`ClientConfig::on_connect`]).
    pub(crate) fn for_hook(shared: Arc<Shared>, config: &ClientConfig, closer: Arc<Closer>) -> Self {
        Self { shared, call_timeout: config.call_timeout, schema: config.schema, priority: true, _closer: closer }
    }

    /// Where the transport is now.
    pub fn status(&self) -> Status {
        *self.shared.status.borrow()
    }

    /// A receiver that sees every status change.
    pub fn watch_status(&self) -> watch::Receiver<Status> {
        self.shared.status.subscribe()
    }

    /// Waits until the connection has closed for good ([`Status::Closed`]),
    /// and returns why.
    pub async fn closed(&self) -> String {
        let mut rx = self.shared.status.subscribe();
        let _ = rx.wait_for(|s| *s == Status::Closed).await;
        self.shared.disconnect_reason()
    }

    /// Notices of lost topic events, from now on: the topic and, where
    /// known, how many events were missed (server restarted without the
    /// history, away longer than the history reaches, or the server
    /// dropped events for a slow reader). Never silent: every loss the
    /// protocol can see is reported here. Ends when the connection closes.
    pub fn gaps(&self) -> mpsc::UnboundedReceiver<GapNotice> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut inner = self.shared.lock();
        if inner.session.close_reason().is_none() {
            inner.gap_listeners.push(tx);
        }
        rx
    }

    /// Gap notices reported on this connection so far.
    pub fn gaps_reported(&self) -> u64 {
        self.shared.gaps.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Topic events dropped as duplicates (replayed again after a
    /// reconnect and already delivered).
    pub fn duplicates_dropped(&self) -> u64 {
        self.shared.lock().session.duplicates_dropped()
    }

    /// A handle to the same connection whose calls use timeout `t`.
    pub fn with_call_timeout(&self, t: Duration) -> Self {
        Self { call_timeout: t, ..self.clone() }
    }

    /// Why the connection closed, or `None` while it is open.
    pub fn close_reason(&self) -> Option<String> {
        self.shared.close_reason()
    }

    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        self.close_reason().is_some()
    }

    /// Calls in flight (ids taken), including timed-out calls whose response
    /// has not arrived yet.
    pub fn calls_in_flight(&self) -> usize {
        self.shared.lock().session.in_flight()
    }

    /// A read-only mirror of this connection's server-side state. The server
    /// owns the state; the mirror follows every change, applied in order
    /// before any call response that was sent after it.
    pub fn state<S: ConnectionState + Default>(&self) -> StateMirror<S> {
        StateMirror {
            shared: self.shared.clone(),
            rx: self.shared.version.subscribe(),
            _state: std::marker::PhantomData,
        }
    }

    /// The limits the server announced for this connection (`LIMITS`, sent
    /// before the connection counts as open); `None` from a server that
    /// predates the announcement. A call larger than its message size limit
    /// fails with `CallError::TooLarge` without being sent.
    pub fn server_limits(&self) -> Option<hardlight_core::envelope::AnnouncedLimits> {
        self.shared.lock().session.server_limits()
    }

    /// The methods the server currently lets this connection call.
    pub fn features(&self) -> Option<FeatureSet> {
        self.shared.lock().session.features().cloned()
    }

    /// Whether `method` is enabled for this connection (as last announced).
    pub fn is_enabled(&self, method: u16) -> bool {
        self.shared.lock().session.features().is_some_and(|f| f.is_enabled(method))
    }

    /// A typed stream of the events of type `E` the server pushes to this
    /// connection, from now on. Events arrive in order with state changes
    /// and call responses.
    ///
    /// On a connection opened for a schema ([`ClientConfig::schema`]), `E`
    /// must be one of the service's declared event types, at its declared
    /// id; otherwise the stream yields [`EventError::Undeclared`] instead of
    /// decoding another type's events.
    pub fn events<E: hardlight_core::Event>(&self) -> EventStream<E> {
        let (tx, rx) = mpsc::channel(DEFAULT_EVENT_BUFFER);
        if let Some(schema) = self.schema.filter(|s| !s.declares_event::<E>(E::TYPE)) {
            let refused = EventError::Undeclared { event: std::any::type_name::<E>(), service: schema.service };
            return EventStream { rx, refused: Some(refused), _event: std::marker::PhantomData };
        }
        // Checked under the lock: closing clears the listeners under it too,
        // so a stream made here always ends.
        let mut inner = self.shared.lock();
        if inner.session.close_reason().is_none() {
            inner.listeners.entry(E::TYPE).or_default().push(tx);
        }
        EventStream { rx, refused: None, _event: std::marker::PhantomData }
    }

    /// Events the server dropped for this connection because it read too
    /// slowly (drop-oldest policy), as reported by the server.
    pub fn events_dropped(&self) -> u64 {
        self.shared.lock().session.events_dropped()
    }

    /// Starts the closing handshake; no reconnect follows. Pending calls
    /// fail with `Disconnected` once the server's Close arrives.
    pub fn close(&self) {
        self.shared.request_close();
    }

    /// Sends a call and waits for its reply, with this handle's timeout.
    ///
    /// While the transport is down (reconnecting) the call waits for the
    /// next one within its timeout, or fails at once with `Disconnected`,
    /// per [`ClientConfig::wait_while_disconnected`]. A call in flight when
    /// the transport drops fails with `Disconnected` (the server may have
    /// run it), unless its method is marked idempotent
    /// ([`ClientConfig::idempotent`]): then it is sent again.
    ///
    /// The timeout travels with the call as its deadline (`CALL_DEADLINE`),
    /// so the server drops the handler when it passes. When all 256 ids are
    /// taken the call waits for a free one; that wait counts against the
    /// timeout. A call that times out, or whose future is dropped, is
    /// cancelled on the server (`CANCEL`: the handler is dropped and the
    /// server answers at once); its id stays reserved until that answer,
    /// because the server still considers the id live until then. Servers
    /// that predate deadlines and CANCEL (their `LIMITS` lacks the flag) get
    /// plain calls and no CANCEL.
    pub async fn call(&self, method: u16, input: &[u8]) -> Result<RawReply, CallError> {
        let (tx, rx) = oneshot::channel();
        // The waiter is registered under the same lock that queues the
        // call, so the reply cannot be handled before it is there.
        let (started, _) = self.shared.with_inner(|inner| {
            let call = if self.priority {
                inner.session.start_priority_call(method, input, Some(self.call_timeout))?
            } else {
                inner.session.start_call_within(method, input, Some(self.call_timeout))?
            };
            inner.waiters.insert(call, tx);
            Ok::<_, CallError>(call)
        });
        let mut guard = Abandon { shared: &self.shared, call: Some(started?) };
        match tokio::time::timeout(self.call_timeout, rx).await {
            Ok(Ok(result)) => {
                guard.call = None;
                result
            }
            Ok(Err(_)) => {
                guard.call = None;
                Err(CallError::Disconnected(self.shared.disconnect_reason()))
            }
            Err(_) => Err(CallError::Timeout(self.call_timeout)),
        }
    }
}

/// If a call is abandoned (timeout, or its future dropped) the session
/// forgets it and sends CANCEL; a call already sent keeps its id reserved
/// until the server's answer.
struct Abandon<'a> {
    shared: &'a Shared,
    call: Option<CallToken>,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if let Some(call) = self.call {
            // Through `with_inner`, which sends what the session queued (the CANCEL).
            self.shared.with_inner(|inner| {
                inner.waiters.remove(&call);
                inner.session.abandon(call);
            });
        }
    }
}

impl Caller for Connection {
    async fn call_raw(&self, method: u16, input: AlignedBuf) -> Result<RawReply, CallError> {
        self.call(method, &input).await
    }
}
