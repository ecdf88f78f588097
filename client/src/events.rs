//! Typed streams of the events a server pushes.

use std::sync::Arc;

use hardlight_core::AlignedBuf;
use tokio::sync::mpsc;

/// Events buffered per [`EventStream`]. When a stream's buffer is full the
/// connection's reader waits for it (back-pressure, no silent loss): the
/// server then holds further messages for this connection and applies its
/// slow-consumer policy. Keep streams drained, or drop them.
pub const DEFAULT_EVENT_BUFFER: usize = 4096;

/// Why [`EventStream::recv`] returned no event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The connection closed; no more events will come.
    #[error("connection closed")]
    Closed,
    /// An event did not validate as `E` (client and server disagree on it).
    #[error("event failed validation: {0}")]
    Invalid(String),
    /// `E` is not an event type of the service the connection was opened
    /// for (`ClientConfig::schema`), so no event is delivered as `E`.
    #[error(
        "event type `{event}` is not declared by service `{service}`; list it in \
         #[hardlight::rpc(events(...))] or subscribe to one of the declared types"
    )]
    Undeclared {
        /// The Rust type asked for.
        event: &'static str,
        /// The service's trait name.
        service: &'static str,
    },
}

/// Typed events of one type pushed by the server, in order.
pub struct EventStream<E> {
    pub(crate) rx: mpsc::Receiver<Arc<[u8]>>,
    /// Set when `E` is not declared by the connection's schema: every
    /// receive answers it.
    pub(crate) refused: Option<EventError>,
    pub(crate) _event: std::marker::PhantomData<fn() -> E>,
}

impl<E: hardlight_core::Event> EventStream<E> {
    /// Waits for the next event.
    pub async fn recv(&mut self) -> Result<E, EventError> {
        if let Some(e) = &self.refused {
            return Err(e.clone());
        }
        match self.rx.recv().await {
            Some(bytes) => Self::decode(&bytes),
            None => Err(EventError::Closed),
        }
    }

    /// The next event if one is already here.
    pub fn try_recv(&mut self) -> Option<Result<E, EventError>> {
        use tokio::sync::mpsc::error::TryRecvError;
        if let Some(e) = &self.refused {
            return Some(Err(e.clone()));
        }
        match self.rx.try_recv() {
            Ok(bytes) => Some(Self::decode(&bytes)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Err(EventError::Closed)),
        }
    }

    fn decode(bytes: &[u8]) -> Result<E, EventError> {
        let mut buf = AlignedBuf::with_capacity(bytes.len());
        E::decode(hardlight_core::wire::align_into(&mut buf, bytes)).map_err(|e| EventError::Invalid(e.0))
    }
}
