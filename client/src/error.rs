//! Errors opening a connection.

use std::time::Duration;

/// Why [`crate::Connection::connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL is not a valid `ws://` URL.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// TCP connect or the upgrade did not finish in time.
    #[error("connecting timed out after {0:?}")]
    Timeout(Duration),
    /// The server answered the upgrade with an HTTP error (for example 400
    /// for a protocol version it does not speak, or the application's 401).
    #[error("server refused the connection with HTTP {status}: {body}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Response body: the server's explanation.
        body: String,
    },
    /// The server accepted a WebSocket but not the HardLight subprotocol.
    #[error("server did not select the HardLight subprotocol: {0}")]
    Protocol(String),
    /// TLS failed: the certificate is not trusted (see
    /// `ClientConfig::trust_pem`), the name does not match, or the peer
    /// does not speak TLS.
    #[error("TLS error: {0}")]
    Tls(String),
    /// The on-connect hook failed (its error, or a timeout).
    #[error("on-connect hook failed: {0}")]
    Hook(String),
    /// Network or WebSocket failure.
    #[error("connection failed: {0}")]
    Io(String),
}
