//! Opening one WebSocket transport: URL, headers, TLS, the upgrade, and
//! the subprotocol and resume answers.

use std::sync::Arc;

use hardlight_core::handshake;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, http::HeaderValue, protocol::WebSocketConfig};

use crate::config::tls_config;
use crate::{ClientConfig, ConnectError};

/// Size of tungstenite's read buffer in the client.
pub const CLIENT_READ_BUFFER: usize = 8 * 1024;

pub(crate) type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// An open transport.
pub(crate) struct Transport {
    pub(crate) ws: Ws,
    /// The server answered the resume opt-in: send `RESUME` first.
    pub(crate) resumes: bool,
}

/// Opens a transport to `url` with `config`.
pub(crate) async fn open(url: &str, config: &ClientConfig) -> Result<Transport, ConnectError> {
    let mut req = url
        .into_client_request()
        .map_err(|e| ConnectError::InvalidUrl { url: url.to_string(), reason: e.to_string() })?;
    let bad = |reason: String| ConnectError::InvalidUrl { url: url.to_string(), reason };
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(&config.subprotocol).map_err(|e| bad(e.to_string()))?);
    if let Some(schema) = config.schema {
        let value = hardlight_core::schema::format_fingerprint(schema.fingerprint);
        req.headers_mut().insert(
            hardlight_core::schema::SCHEMA_HEADER,
            HeaderValue::from_str(&value).map_err(|e| bad(e.to_string()))?,
        );
    }
    if config.resume {
        req.headers_mut().insert(hardlight_core::resume::RESUME_HEADER, HeaderValue::from_static("1"));
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
    let resumes = config.resume
        && resp.headers().get(hardlight_core::resume::RESUME_HEADER).and_then(|v| v.to_str().ok()).map(str::trim)
            == Some("1");
    Ok(Transport { ws, resumes })
}
