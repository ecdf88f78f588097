//! The metrics endpoint: `GET /metrics` over plain HTTP/1.1, served by one
//! std thread, one request per connection.
//!
//! A plain thread, not a shard task: a scrape sums every shard's counters
//! and formats a few kilobytes of text, work that should not sit in a
//! shard's event loop between calls. Requests are read with a size limit and
//! socket timeouts, so a client that sends too much or nothing at all costs
//! a bounded amount of memory and holds the thread for a bounded time.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::expo::CONTENT_TYPE;
use super::Registry;

/// Largest request head the endpoint reads; past it the answer is 431.
pub const DEFAULT_METRICS_REQUEST_LIMIT: usize = 8 * 1024;

/// How long the endpoint waits for a request to arrive, or for its
/// response to be taken, before it drops the connection.
pub const DEFAULT_METRICS_IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Most headers a request may carry (400 past it).
const MAX_HEADERS: usize = 32;

/// Why a request got no metrics.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    /// The request head was over [`DEFAULT_METRICS_REQUEST_LIMIT`].
    #[error("request head over {0} bytes")]
    TooLarge(usize),
    /// Not parseable as HTTP/1.x.
    #[error("malformed request: {0}")]
    Malformed(httparse::Error),
    /// The client closed before sending a whole request.
    #[error("connection closed mid-request")]
    Incomplete,
    /// Reading failed (a timeout included).
    #[error("reading the request: {0}")]
    Io(#[from] io::Error),
}

/// The response to one request: status, reason, body.
fn respond(req: Result<(String, String), RequestError>, registry: &Registry) -> Option<(u16, &'static str, String)> {
    Some(match req {
        Ok((method, path)) => {
            let path = path.split('?').next().unwrap_or_default();
            match (method.as_str(), path) {
                ("GET", "/metrics") => (200, "OK", registry.render()),
                (_, "/metrics") => (405, "Method Not Allowed", "only GET\n".into()),
                _ => (404, "Not Found", "metrics are at /metrics\n".into()),
            }
        }
        Err(RequestError::TooLarge(_)) => (431, "Request Header Fields Too Large", "request too large\n".into()),
        Err(RequestError::Malformed(_)) => (400, "Bad Request", "malformed request\n".into()),
        // Nothing to answer: the peer left or sent nothing in time.
        Err(RequestError::Incomplete | RequestError::Io(_)) => return None,
    })
}

/// Reads one request head, at most `limit` bytes; returns method and path.
pub(crate) fn read_request(stream: &mut impl Read, limit: usize) -> Result<(String, String), RequestError> {
    let mut buf = vec![0u8; limit];
    let mut len = 0;
    loop {
        if len == limit {
            return Err(RequestError::TooLarge(limit));
        }
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            return Err(RequestError::Incomplete);
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                return Ok((req.method.unwrap_or_default().to_string(), req.path.unwrap_or_default().to_string()))
            }
            Ok(httparse::Status::Partial) => continue,
            Err(e) => return Err(RequestError::Malformed(e)),
        }
    }
}

fn serve_one(mut stream: TcpStream, registry: &Registry, limit: usize, timeout: Duration) -> io::Result<()> {
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let req = read_request(&mut stream, limit);
    if let Err(e) = &req {
        tracing::debug!(error = %e, "metrics request refused");
    }
    let Some((status, reason, body)) = respond(req, registry) else { return Ok(()) };
    let ctype = if status == 200 { CONTENT_TYPE } else { "text/plain; charset=utf-8" };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

/// The running endpoint; stopped (and its thread joined) on drop.
pub(crate) struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Serves `registry` on `listener` from a thread of its own.
    pub(crate) fn start(listener: TcpListener, registry: Registry) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new().name("hardlight-metrics".into()).spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::Acquire) {
                    break;
                }
                match stream {
                    Ok(s) => {
                        if let Err(e) =
                            serve_one(s, &registry, DEFAULT_METRICS_REQUEST_LIMIT, DEFAULT_METRICS_IO_TIMEOUT)
                        {
                            tracing::debug!(error = %e, "metrics response not sent");
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "metrics accept failed");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        })?;
        Ok(Self { addr, stop, thread: Some(thread) })
    }

    /// The address it listens on (port 0 resolved).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the blocking accept; it sees the flag and returns.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_head_over_the_limit_is_refused_without_reading_more() {
        let big = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100));
        let mut r = big.as_bytes();
        assert!(matches!(read_request(&mut r, 64), Err(RequestError::TooLarge(64))));
        let mut r = big.as_bytes();
        assert_eq!(read_request(&mut r, DEFAULT_METRICS_REQUEST_LIMIT).unwrap(), ("GET".into(), "/metrics".into()));
    }

    #[test]
    fn malformed_and_cut_requests_are_typed() {
        let mut r = &b"\x00\x01garbage\r\n\r\n"[..];
        assert!(matches!(read_request(&mut r, 1024), Err(RequestError::Malformed(_))));
        let mut r = &b"GET /metrics HTTP/1.1\r\n"[..];
        assert!(matches!(read_request(&mut r, 1024), Err(RequestError::Incomplete)));
    }
}
