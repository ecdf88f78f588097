//! The two tasks that move bytes for a connection: the writer sends what
//! the session queued, the reader feeds the session what the server sent.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::shared::Shared;

/// How long the client keeps reading after the server's Close, so that its
/// Close reply goes out.
const CLOSE_DRAIN: Duration = Duration::from_secs(2);

pub(crate) async fn write_loop<S>(mut sink: S, mut rx: mpsc::UnboundedReceiver<Message>)
where
    S: futures::Sink<Message, Error = tungstenite::Error> + Unpin,
{
    // Feed everything queued, then flush once: one write syscall for a burst of calls.
    while let Some(first) = rx.recv().await {
        let mut closing = matches!(first, Message::Close(_));
        if sink.feed(first).await.is_err() {
            break;
        }
        while !closing {
            match rx.try_recv() {
                Ok(m) => {
                    closing = matches!(m, Message::Close(_));
                    if sink.feed(m).await.is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        if sink.flush().await.is_err() || closing {
            break;
        }
    }
}

/// Feeds the session until the transport ends, then tells the shared
/// state (calls fail at once, not after the close drain).
pub(crate) async fn read_loop<S>(mut stream: S, shared: Arc<Shared>)
where
    S: futures::Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    let reason = loop {
        let msg = match stream.next().await {
            None => break "connection closed by the server".to_string(),
            Some(Err(e)) => break format!("connection lost: {e}"),
            Some(Ok(m)) => m,
        };
        match msg {
            Message::Binary(bytes) => {
                let (handled, deliveries) = shared.with_session(|s| s.handle_message(&bytes));
                if let Err(e) = handled {
                    tracing::warn!(error = %e, "ignoring a message from the server");
                }
                shared.deliver(deliveries).await;
            }
            Message::Close(frame) => {
                let reason = match frame {
                    Some(f) => format!("server closed the connection: {} {}", u16::from(f.code), f.reason),
                    None => "server closed the connection".to_string(),
                };
                // Fail pending calls now, then keep reading until the stream
                // ends: that is what lets tungstenite send its Close reply,
                // so the server sees a clean closing handshake instead of
                // waiting for one (or for a reset).
                shared.transport_ended(reason.clone());
                let _ = tokio::time::timeout(CLOSE_DRAIN, async { while stream.next().await.is_some() {} }).await;
                tracing::debug!(%reason, "connection closed");
                return;
            }
            _ => {}
        }
    };
    tracing::debug!(%reason, "connection closed");
    shared.transport_ended(reason);
}
