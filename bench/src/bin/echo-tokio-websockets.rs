//! `echo-tokio-websockets`: a plain WebSocket echo server written the way
//! tokio-websockets' `echo_server` example is, as a per-message peer for
//! loadgen's `raw-echo` scenario.
//!
//! Why this peer: tokio-websockets was the fastest server at one message per
//! wake-up in the sitting recorded in platform-notes.md, so it is the bar for
//! HardLight's closed 64x1 and open-loop cases.
//!
//! `ServerBuilder::accept` does the upgrade; each received text or binary
//! message is sent back with `SinkExt::send`, which flushes it at once (one
//! write per message: the per-message-flush behaviour this peer stands for).
//! The library answers pings and closes by itself. Differences from the
//! example: no subprotocol is ever selected (the builder has no hook for
//! one, so a client requiring `hl/1` in the 101 is refused by its own check:
//! use `raw-echo`), TCP_NODELAY, and the shared command line and pinned
//! runtime of the baseline servers.
//!
//! Usage: `echo-tokio-websockets --listen ADDR [--cpu N] [--threads T]`;
//! prints `listening on ADDR`, then serves until killed.

use std::process::ExitCode;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_websockets::ServerBuilder;

fn main() -> ExitCode {
    hardlight_bench::baseline::run("echo-tokio-websockets", accept_connection)
}

async fn accept_connection(stream: TcpStream) {
    let Ok((_request, mut ws)) = ServerBuilder::new().accept(stream).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            return;
        }
    }
}
