//! `echo-tokio-tungstenite`: a plain WebSocket echo server written the way
//! tokio-tungstenite's own `echo-server` example is, for loadgen's raw-echo
//! scenario (the peers' figure in `shared/platform-notes.md`).
//!
//! Each connection's stream of messages is forwarded into its sink; the
//! sink batches, flushing only when the stream has nothing more ready. The
//! only additions to the example: any offered subprotocol is accepted (the
//! first one is selected, so that a client offering `hl/1` gets an answer
//! its handshake check accepts), TCP_NODELAY, and the shared command line
//! and pinned runtime of the baseline servers.
//!
//! Usage: `echo-tokio-tungstenite --listen ADDR [--cpu N] [--threads T]`;
//! prints `listening on ADDR`, then serves until killed.

use std::process::ExitCode;

use futures::{future, StreamExt, TryStreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

fn main() -> ExitCode {
    hardlight_bench::baseline::run("echo-tokio-tungstenite", accept_connection)
}

/// Selects the first offered subprotocol, if any.
#[allow(clippy::result_large_err)] // the signature tungstenite's `Callback` wants
fn any_subprotocol(req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
    let first = req
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').map(str::trim).find(|p| !p.is_empty()))
        .and_then(|p| p.parse().ok());
    if let Some(p) = first {
        resp.headers_mut().insert("sec-websocket-protocol", p);
    }
    Ok(resp)
}

async fn accept_connection(stream: TcpStream) {
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, any_subprotocol).await else {
        return;
    };
    let (write, read) = ws.split();
    // As in the example: forward data messages only (tungstenite answers
    // pings and closes by itself).
    let _ = read.try_filter(|msg| future::ready(msg.is_text() || msg.is_binary())).forward(write).await;
}
