//! The task that owns a connection's transports: opens each one, waits for
//! the server's initial state and feature set, runs the on-connect hook,
//! releases the calls that waited, and after a drop waits its backoff delay
//! (`hardlight_core::backoff`) and starts over, until the connection closes.

use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Weak};

use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::connection::Closer;
use crate::driver::{read_loop, write_loop};
use crate::shared::Shared;
use crate::transport::{self, Transport};
use crate::{ClientConfig, ConnectError, Connection, Status};

/// Runs until the connection closes. `ready` hears how the first transport
/// went: the caller of `connect` gets its error.
pub(crate) async fn supervise(
    shared: Arc<Shared>,
    closer: Weak<Closer>,
    url: String,
    config: ClientConfig,
    first: Transport,
    ready: oneshot::Sender<Result<(), ConnectError>>,
) {
    let mut ready = Some(ready);
    let mut next = Some(first);
    let mut attempt: u32 = 0;
    let mut jitter = Jitter::new();
    loop {
        let transport = match next.take() {
            Some(t) => t,
            None => {
                let Some(backoff) = config.reconnect else { break };
                shared.set_status(Status::Reconnecting { attempt });
                let delay = backoff.delay(attempt, jitter.sample());
                attempt = attempt.saturating_add(1);
                if shared.sleep_unless_closing(delay).await {
                    break;
                }
                match transport::open(&url, &config).await {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::debug!(error = %e, attempt, "reconnect attempt failed");
                        continue;
                    }
                }
            }
        };
        match establish(&shared, &closer, &config, transport).await {
            Ok(reader) => {
                attempt = 0;
                if let Some(r) = ready.take() {
                    let _ = r.send(Ok(()));
                }
                let _ = reader.await;
            }
            Err((e, reader)) => {
                tracing::debug!(error = %e, "transport failed before it was ready");
                if let Some(r) = ready.take() {
                    // The first connection: its caller gets the error, and
                    // nothing reconnects.
                    shared.request_close();
                    let _ = reader.await;
                    let _ = r.send(Err(e));
                    break;
                }
                shared.send(Message::Close(None));
                let _ = reader.await;
            }
        }
        if shared.is_closing() || shared.close_reason().is_some() {
            break;
        }
    }
    // Whatever ended the loop, the session is closed now.
    if shared.close_reason().is_none() {
        shared.with_session(|s| s.handle_close("connection closed"));
    }
    shared.set_status(Status::Closed);
}

/// Starts the transport's tasks, waits for its initial state and feature
/// set, runs the hook, releases waiting calls. Returns the reader task.
async fn establish(
    shared: &Arc<Shared>,
    closer: &Weak<Closer>,
    config: &ClientConfig,
    t: Transport,
) -> Result<JoinHandle<()>, (ConnectError, JoinHandle<()>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (sink, stream) = t.ws.split();
    let mut changes = shared.version.subscribe();
    shared.attach(tx, t.resumes);
    tokio::spawn(write_loop(sink, rx));
    let reader = tokio::spawn(read_loop(stream, shared.clone()));
    // The server sends the initial state and then the feature set right
    // behind the 101; the connection is ready once they are in, so that
    // the mirror is populated from the first moment.
    let initial = async {
        loop {
            {
                let inner = shared.lock();
                if inner.session.is_ready() {
                    return Ok(());
                }
                if inner.out.is_none() {
                    return Err(ConnectError::Io(
                        inner.session.close_reason().unwrap_or("connection lost before it was ready").to_string(),
                    ));
                }
            }
            if changes.changed().await.is_err() {
                return Err(ConnectError::Io("connection closed".into()));
            }
        }
    };
    match tokio::time::timeout(config.connect_timeout, initial).await {
        Err(_) => return Err((ConnectError::Protocol("server sent no initial feature set".into()), reader)),
        Ok(Err(e)) => return Err((e, reader)),
        Ok(Ok(())) => {}
    }
    if let Some(hook) = &config.on_connect {
        let Some(closer) = closer.upgrade() else {
            return Err((ConnectError::Io("every handle was dropped".into()), reader));
        };
        let conn = Connection::for_hook(shared.clone(), config, closer);
        match tokio::time::timeout(config.connect_timeout, (hook.0)(conn)).await {
            Err(_) => {
                return Err((ConnectError::Hook(format!("timed out after {:?}", config.connect_timeout)), reader))
            }
            Ok(Err(reason)) => return Err((ConnectError::Hook(reason), reader)),
            Ok(Ok(())) => {}
        }
    }
    let (released, _) = shared.with_session(|s| {
        s.release();
        s.link() == &hardlight_core::session::Link::Up
    });
    if !released {
        return Err((ConnectError::Io("connection lost while its on-connect hook ran".into()), reader));
    }
    shared.set_status(Status::Connected);
    Ok(reader)
}

/// Jitter samples in [0, 1): xorshift seeded from the process's random
/// hasher keys (no dependency; quality is irrelevant, spread is the point).
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u8(0);
        Self(h.finish() | 1)
    }

    fn sample(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}
