//! `echo-fastwebsockets`: a plain WebSocket echo server written the way
//! fastwebsockets' documentation shows one, as a per-message peer for
//! loadgen's `raw-echo` scenario.
//!
//! Why this peer: fastwebsockets is among the fastest WebSocket servers on
//! tokio when each message is its own wake-up (platform-notes.md measured it
//! beside tokio-websockets), so it is the fair bar for HardLight's
//! one-message-per-wake-up cases, where the batching tokio-tungstenite echo
//! is not.
//!
//! hyper 1 serves the HTTP/1.1 upgrade (`fastwebsockets::upgrade::upgrade`);
//! the upgraded stream is read frame by frame through a `FragmentCollector`
//! (so fragmented messages come back whole) and every text or binary frame
//! is written back at once (`write_frame` writes and flushes). Pings and
//! closes are answered by the library (`auto_pong`, `auto_close`, on by
//! default). The only additions: the first offered subprotocol is selected
//! (so a client offering `hl/1` gets an answer its handshake check accepts),
//! TCP_NODELAY, and the shared command line and pinned runtime of the
//! baseline servers.
//!
//! Usage: `echo-fastwebsockets --listen ADDR [--cpu N] [--threads T]`;
//! prints `listening on ADDR`, then serves until killed.

use std::process::ExitCode;

use fastwebsockets::{upgrade, FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

fn main() -> ExitCode {
    hardlight_bench::baseline::run("echo-fastwebsockets", accept_connection)
}

async fn accept_connection(stream: TcpStream) {
    // Errors end the connection; there is nobody to report them to.
    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(on_request)).with_upgrades().await;
}

/// Answers the upgrade request and spawns the echo loop on the upgraded stream.
async fn on_request(mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    if !upgrade::is_upgrade_request(&req) {
        let mut refusal = Response::new(Empty::new());
        *refusal.status_mut() = StatusCode::BAD_REQUEST;
        return Ok(refusal);
    }
    let first_protocol = req
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').map(str::trim).find(|p| !p.is_empty()))
        .and_then(|p| p.parse().ok());
    let (mut response, fut) = upgrade::upgrade(&mut req)?;
    if let Some(p) = first_protocol {
        response.headers_mut().insert("sec-websocket-protocol", p);
    }
    // The upgraded stream exists only once hyper has sent the 101, so the
    // echo loop must run in its own task.
    tokio::spawn(async move {
        let _ = echo(fut).await;
    });
    Ok(response)
}

/// The echo loop of the crate's examples: every data frame straight back.
async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}
