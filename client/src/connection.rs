//! A connection: opening it, calls, and what the server told it.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hardlight_core::handshake;
use hardlight_core::session::{CallToken, ClientSession};
use hardlight_core::{AlignedBuf, CallError, Caller, ConnectionState, FeatureSet, RawReply, Schema};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::{
    self, client::IntoClientRequest, http::HeaderValue, protocol::WebSocketConfig, Message,
};

use crate::config::tls_config;
use crate::driver::{read_loop, write_loop};
use crate::events::{EventError, EventStream, DEFAULT_EVENT_BUFFER};
use crate::mirror::StateMirror;
use crate::shared::Shared;
use crate::{ClientConfig, ConnectError};

/// Size of tungstenite's read buffer in the client.
pub const CLIENT_READ_BUFFER: usize = 8 * 1024;

/// A connection to a HardLight server. Cheap to clone; clones share the
/// socket. Dropping the last clone closes the connection.
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
    call_timeout: Duration,
    schema: Option<&'static Schema>,
    _closer: Arc<Closer>,
}

/// Sends a Close frame when the last handle goes away.
struct Closer(mpsc::UnboundedSender<Message>);
impl Drop for Closer {
    fn drop(&mut self) {
        let _ = self.0.send(Message::Close(None));
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("closed", &self.close_reason()).finish()
    }
}

impl Connection {
    /// Connects with default settings.
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        Self::connect_with(url, ClientConfig::default()).await
    }

    /// Connects with `config`.
    pub async fn connect_with(url: &str, config: ClientConfig) -> Result<Self, ConnectError> {
        let mut req = url
            .into_client_request()
            .map_err(|e| ConnectError::InvalidUrl { url: url.to_string(), reason: e.to_string() })?;
        let bad = |reason: String| ConnectError::InvalidUrl { url: url.to_string(), reason };
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(&config.subprotocol).map_err(|e| bad(e.to_string()))?,
        );
        if let Some(schema) = config.schema {
            let value = hardlight_core::schema::format_fingerprint(schema.fingerprint);
            req.headers_mut().insert(
                hardlight_core::schema::SCHEMA_HEADER,
                HeaderValue::from_str(&value).map_err(|e| bad(e.to_string()))?,
            );
        }
        for (k, v) in &config.headers {
            let name = tungstenite::http::HeaderName::from_bytes(k.as_bytes()).map_err(|e| bad(e.to_string()))?;
            req.headers_mut().append(name, HeaderValue::from_str(v).map_err(|e| bad(e.to_string()))?);
        }
        // tungstenite zero-fills its whole read buffer before each socket
        // read; its 128 KiB default costs ~1 µs per read (measured in
        // results/microbench.md). RPC replies are small; large ones simply
        // take a few more reads.
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(CLIENT_READ_BUFFER)
            .max_message_size(Some(config.max_message_size))
            .max_frame_size(Some(config.max_message_size));
        let connector = if url.starts_with("wss://") {
            Some(tokio_tungstenite::Connector::Rustls(Arc::new(tls_config(&config.extra_roots)?)))
        } else {
            None
        };
        let connecting = tokio_tungstenite::connect_async_tls_with_config(req, Some(ws_config), true, connector);
        let (ws, resp) = match tokio::time::timeout(config.connect_timeout, connecting).await {
            Err(_) => return Err(ConnectError::Timeout(config.connect_timeout)),
            Ok(Err(tungstenite::Error::Http(resp))) => {
                let status = resp.status().as_u16();
                let body =
                    resp.body().as_deref().map(|b| String::from_utf8_lossy(b).trim().to_string()).unwrap_or_default();
                return Err(ConnectError::Refused { status, body });
            }
            Ok(Err(tungstenite::Error::Protocol(p))) => return Err(ConnectError::Protocol(p.to_string())),
            Ok(Err(tungstenite::Error::Tls(e))) => return Err(ConnectError::Tls(e.to_string())),
            Ok(Err(tungstenite::Error::Io(e))) if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) => {
                return Err(ConnectError::Tls(e.to_string()))
            }
            Ok(Err(e)) => return Err(ConnectError::Io(e.to_string())),
            Ok(Ok(x)) => x,
        };
        let selected = resp.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok());
        handshake::check_selected_protocol(selected).map_err(|e| ConnectError::Protocol(e.to_string()))?;

        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::new(ClientSession::with_max_waiting(config.max_waiting_calls), tx.clone()));
        let (sink, stream) = ws.split();
        let mut changes = shared.version.subscribe();
        tokio::spawn(write_loop(sink, rx));
        tokio::spawn(read_loop(stream, shared.clone()));
        let conn =
            Self { shared, call_timeout: config.call_timeout, schema: config.schema, _closer: Arc::new(Closer(tx)) };
        // The server sends the initial state and then the feature set right
        // behind the 101; return once they are in, so that the mirror is
        // populated from the first moment.
        let initial = async {
            loop {
                if conn.shared.lock().session.is_ready() || conn.is_closed() {
                    return;
                }
                if changes.changed().await.is_err() {
                    return;
                }
            }
        };
        if tokio::time::timeout(config.connect_timeout, initial).await.is_err() {
            return Err(ConnectError::Protocol("server sent no initial feature set".into()));
        }
        if let Some(reason) = conn.close_reason() {
            return Err(ConnectError::Io(reason));
        }
        Ok(conn)
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

    /// Starts the closing handshake. Pending calls fail with `Disconnected`
    /// once the server's Close arrives.
    pub fn close(&self) {
        let _ = self.shared.out.send(Message::Close(None));
    }

    /// Sends a call and waits for its reply, with this handle's timeout.
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
            let call = inner.session.start_call_within(method, input, Some(self.call_timeout))?;
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
