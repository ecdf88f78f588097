//! `baseline-tokio`: the HardLight protocol served the ordinary way, on tokio
//! and tokio-tungstenite, as the baseline the glommio server is measured
//! against.
//!
//! It speaks exactly what `hardlight-server` speaks: the `hl/1` subprotocol
//! (anything else is refused with HTTP 400 and the same message), the
//! initial FEATURES message (every method enabled), the same envelopes, the
//! same call-id rules and call errors, and the same
//! `BenchService<BenchHandler>` dispatch (validate, decode, run, encode). What
//! differs is only the machinery, written as a good tokio engineer would:
//!
//! - a multi-thread runtime (`--threads`, 1 by default when pinned with
//!   `--cpu`), one task per connection, TCP_NODELAY;
//! - tokio-tungstenite's message API (one `Bytes` per received message, one
//!   `Vec` per reply) instead of HardLight's in-place framing;
//! - writes batched as in tokio-tungstenite's echo example: replies are fed
//!   into the sink's buffer while more input is immediately ready, and
//!   flushed (one write syscall) once it is not;
//! - calls on a connection run concurrently in a `FuturesUnordered` that the
//!   connection task drives alongside the reader.
//!
//! Usage: `baseline-tokio --listen ADDR [--cpu N] [--threads T]`; prints
//! `listening on ADDR`, then serves until killed.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::process::ExitCode;

use futures::stream::FuturesUnordered;
use futures::{FutureExt, SinkExt, StreamExt};
use hardlight::protocol::calls::CallTable;
use hardlight::protocol::envelope::{self, ClientMessage};
use hardlight::protocol::handshake::{HandshakeError, SUBPROTOCOL};
use hardlight::protocol::service::Reply;
use hardlight::protocol::wire::{self, AlignedBuf};
use hardlight::server::Limits;
use hardlight::FeatureSet;
use hardlight::{CallErrorCode, CloseCode, Service};
use hardlight_bench::{BenchHandler, BenchReply, BenchService};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

fn main() -> ExitCode {
    hardlight_bench::baseline::run("baseline-tokio", serve)
}

/// The upgrade callback: selects `hl/1` if the client offered it, otherwise
/// refuses with 400 and the body the real server sends.
#[allow(clippy::result_large_err)] // the signature tungstenite's `Callback` wants
fn select_subprotocol(req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
    let offered: Vec<&str> =
        req.headers().get_all("sec-websocket-protocol").iter().filter_map(|v| v.to_str().ok()).collect();
    if offered.iter().flat_map(|v| v.split(',')).any(|p| p.trim() == SUBPROTOCOL) {
        resp.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static(SUBPROTOCOL));
        return Ok(resp);
    }
    let err = HandshakeError::UnsupportedProtocol(if offered.is_empty() { None } else { Some(offered.join(", ")) });
    let mut refusal = ErrorResponse::new(Some(format!("{err}\n")));
    *refusal.status_mut() = StatusCode::BAD_REQUEST;
    Err(refusal)
}

/// One connection, from the upgrade to the end.
async fn serve(stream: TcpStream) {
    let limits = Limits::default();
    let config = WebSocketConfig::default()
        .max_message_size(Some(limits.max_message_size))
        .max_frame_size(Some(limits.max_message_size));
    let Ok(ws) = tokio_tungstenite::accept_hdr_async_with_config(stream, select_subprotocol, Some(config)).await else {
        return;
    };
    // I/O errors end the connection; there is nobody to report them to.
    let _ = run(ws, limits.max_validation_depth).await;
}

type Panic = Box<dyn Any + Send>;

/// The service every connection runs.
type Svc = BenchService<BenchHandler>;

/// What woke the connection task.
enum Input {
    /// The reader produced a message, an error, or the end of the stream.
    Message(Option<Result<Message, WsError>>),
    /// Call `id` finished (or its handler panicked).
    Finished(u8, Result<BenchReply, Panic>),
}

/// The message loop of an upgraded connection.
///
/// Why a `FuturesUnordered` inside the connection task rather than a task per
/// call: the generated `Service::call` futures borrow the service (`use<'s>`)
/// and are not required to be `Send`, so they cannot be `tokio::spawn`ed on
/// their own, and `spawn_local` would need a `LocalSet` per worker and a
/// `'static` service. Kept inside the connection task they may borrow the
/// service from its stack, finish in the same poll that decoded them (most
/// handlers never wait), and their replies land in the same write batch.
/// The connection task itself is `Send` (and so can be `tokio::spawn`ed on
/// the multi-thread runtime) because the concrete `BenchHandler`'s futures
/// are: auto traits leak through the opaque future types once the handler
/// type is known. A server generic over any `Service` would not know that and
/// would have to run connections on a `LocalSet` instead.
async fn run(mut ws: WebSocketStream<TcpStream>, depth: usize) -> Result<(), WsError> {
    let service = BenchService::new(BenchHandler);
    let mut calls = FuturesUnordered::new();
    let mut conn = Conn {
        live: CallTable::new(),
        features: FeatureSet::all(Svc::METHOD_NAMES.len()),
        depth,
        input: AlignedBuf::new(),
        scratch: AlignedBuf::new(),
        closing: false,
    };
    // As the real server does: the LIMITS announcement and then the initial
    // feature set go out right behind the 101, before any response (the
    // bench service has no state to send).
    let announced = envelope::AnnouncedLimits {
        max_message_size: u32::try_from(Limits::default().max_message_size).unwrap_or(u32::MAX),
        // The baseline does not implement deadlines and CANCEL: clients
        // then send plain CALLs, the messages it measures.
        flags: 0,
    };
    ws.send(Message::binary(announced.encode().to_vec())).await?;
    let mut features = Vec::new();
    conn.features.encode(&mut features);
    ws.send(Message::binary(features)).await?;

    loop {
        // Sleep until a message arrives or a pending call finishes.
        let mut input = tokio::select! {
            biased;
            Some((id, out)) = calls.next(), if !calls.is_empty() => Input::Finished(id, out),
            msg = ws.next() => Input::Message(msg),
        };
        // Handle it and everything else that is ready right now, feeding the
        // replies into the sink's buffer (tungstenite writes it out by itself
        // only if it outgrows `write_buffer_size`). Tokio's cooperative budget
        // bounds this loop under a peer that never stops sending.
        loop {
            match input {
                Input::Finished(id, out) => {
                    conn.live.finish(id);
                    if !conn.closing {
                        let reply = conn.reply(id, out);
                        ws.feed(reply).await?;
                    }
                }
                Input::Message(None) => return Ok(()),
                Input::Message(Some(Err(e))) => {
                    // tungstenite reports broken framing and oversized
                    // messages without closing; close with the codes the
                    // real server uses.
                    let code = match &e {
                        WsError::Capacity(_) => Some(CloseCode::MessageTooBig),
                        WsError::Protocol(_) => Some(CloseCode::ProtocolError),
                        _ => None,
                    };
                    if let (Some(code), false) = (code, conn.closing) {
                        close_and_drain(&mut ws, code, &e.to_string()).await;
                    }
                    return ended(e);
                }
                Input::Message(Some(Ok(Message::Binary(msg)))) if !conn.closing => {
                    match envelope::decode_client(&msg) {
                        Ok(ClientMessage::Call { id, method, input, timeout_ms: None }) => {
                            match conn.start(&service, id, method, input) {
                                Ok(call) => calls.push(call),
                                Err(refusal) => ws.feed(refusal).await?,
                            }
                        }
                        // Deadlines and CANCEL were not announced (flags 0):
                        // as a server that predates them, refuse the kind.
                        Ok(_) => {
                            conn.closing = true;
                            let reason = format!("unknown message kind {:#04x}", msg[0]);
                            ws.close(Some(close_frame(CloseCode::MalformedEnvelope, &reason))).await?;
                        }
                        Err(e) => {
                            conn.closing = true;
                            ws.close(Some(close_frame(CloseCode::MalformedEnvelope, &e.to_string()))).await?;
                        }
                    }
                }
                Input::Message(Some(Ok(Message::Text(_)))) if !conn.closing => {
                    conn.closing = true;
                    ws.close(Some(close_frame(CloseCode::UnsupportedData, "HardLight accepts binary messages only")))
                        .await?;
                }
                // Ping: tungstenite queued the pong. Close: it queued the
                // echo. Both go out with the flush below. Data after our own
                // Close is dropped while we wait for the peer's.
                Input::Message(Some(Ok(_))) => {}
            }
            input = match ready_now(&mut ws, &mut calls) {
                Some(next) => next,
                None => break,
            };
        }
        if let Err(e) = ws.flush().await {
            return ended(e);
        }
    }
}

/// The next input if one is ready without waiting. Polled with a no-op
/// waker: the `select!` above polls again with the real one before sleeping.
fn ready_now<F>(ws: &mut WebSocketStream<TcpStream>, calls: &mut FuturesUnordered<F>) -> Option<Input>
where
    F: Future<Output = (u8, Result<BenchReply, Panic>)>,
{
    if !calls.is_empty() {
        if let Some(Some((id, out))) = calls.next().now_or_never() {
            return Some(Input::Finished(id, out));
        }
    }
    ws.next().now_or_never().map(Input::Message)
}

/// Sends a Close after a read error, then reads and discards what the peer
/// still sends until it closes (bounded in time): the rest of the stream
/// cannot be parsed any more, and closing the socket with unread bytes would
/// reset the connection before the peer reads our Close.
async fn close_and_drain(ws: &mut WebSocketStream<TcpStream>, code: CloseCode, reason: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if ws.close(Some(close_frame(code, reason))).await.is_err() {
        return;
    }
    let tcp = ws.get_mut();
    let _ = tcp.shutdown().await;
    let mut sink = [0u8; 16 * 1024];
    let drain = async {
        while let Ok(n) = tcp.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), drain).await;
}

/// A closed connection is a normal end, not an error.
fn ended(e: WsError) -> Result<(), WsError> {
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => Ok(()),
        e => Err(e),
    }
}

/// Per-connection protocol state and reused buffers.
struct Conn {
    /// Call ids in flight, to refuse a reused one as the real server does.
    live: CallTable,
    /// Methods this connection may call: all of them (sent at the start).
    features: FeatureSet,
    /// Validation depth limit for call inputs.
    depth: usize,
    /// The current call's input, copied to an aligned address.
    input: AlignedBuf,
    /// Where replies are archived.
    scratch: AlignedBuf,
    /// We sent a Close and wait for the peer's.
    closing: bool,
}

impl Conn {
    /// Starts call `id` after the checks the real server makes (live id,
    /// enabled method), validating and decoding its input. Returns the
    /// call's future, or the CALL_ERROR that answers it at once.
    fn start<'s>(
        &mut self,
        service: &'s Svc,
        id: u8,
        method: u16,
        input: &[u8],
    ) -> Result<impl Future<Output = (u8, Result<BenchReply, Panic>)> + use<'s>, Message> {
        if !self.live.begin(id) {
            return Err(call_error(
                id,
                CallErrorCode::DuplicateCallId,
                "call id is already in flight; wait for its response before reusing it",
            ));
        }
        if !self.features.is_enabled(method) {
            self.live.finish(id);
            return Err(match Svc::METHOD_NAMES.get(method as usize) {
                Some(name) => call_error(
                    id,
                    CallErrorCode::MethodDisabled,
                    &format!("method `{name}` is not enabled for this connection"),
                ),
                None => call_error(id, CallErrorCode::UnknownMethod, &format!("no method with id {method}")),
            });
        }
        // tungstenite's payload sits at any offset; rkyv needs it aligned.
        let input = wire::align_into(&mut self.input, input);
        let depth = self.depth;
        match std::panic::catch_unwind(AssertUnwindSafe(|| service.call(method, input, depth))) {
            Ok(Ok(fut)) => Ok(AssertUnwindSafe(fut).catch_unwind().map(move |out| (id, out))),
            Ok(Err(rejection)) => {
                self.live.finish(id);
                Err(call_error(id, rejection.code(), &rejection.detail()))
            }
            Err(_) => {
                self.live.finish(id);
                Err(call_error(id, CallErrorCode::HandlerPanicked, "handler panicked"))
            }
        }
    }

    /// The message answering call `id`.
    fn reply(&mut self, id: u8, out: Result<BenchReply, Panic>) -> Message {
        let Ok(reply) = out else {
            return call_error(id, CallErrorCode::HandlerPanicked, "handler panicked");
        };
        match reply.encode(&mut self.scratch) {
            Ok(ok) => {
                let mut msg = Vec::with_capacity(envelope::RESULT_HEADER_LEN + self.scratch.len());
                msg.extend_from_slice(&envelope::result_header(id, ok));
                msg.extend_from_slice(&self.scratch);
                Message::binary(msg)
            }
            Err(e) => call_error(id, CallErrorCode::EncodeFailed, &e.0),
        }
    }
}

/// A CALL_ERROR message; the detail is capped at 256 bytes like the real server's.
fn call_error(id: u8, code: CallErrorCode, detail: &str) -> Message {
    let detail = truncate(detail, 256);
    let mut msg = Vec::with_capacity(envelope::CALL_ERROR_HEADER_LEN + detail.len());
    msg.extend_from_slice(&envelope::call_error_header(id, code));
    msg.extend_from_slice(detail.as_bytes());
    Message::binary(msg)
}

/// A Close frame with a HardLight close code; the reason fits a control frame.
fn close_frame(code: CloseCode, reason: &str) -> CloseFrame {
    CloseFrame { code: WsCloseCode::from(code.as_u16()), reason: truncate(reason, 123).into() }
}

fn truncate(s: &str, max: usize) -> &str {
    let mut n = s.len().min(max);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    &s[..n]
}
