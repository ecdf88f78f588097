//! The client side of the WebSocket upgrade, done by hand, and the masked
//! request frame template.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use hardlight::protocol::frame::{self, Opcode};

/// Where to connect: a loopback address, the Host header and the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Socket address (always loopback).
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: String,
    /// Request target, e.g. `/`.
    pub path: String,
}

impl Target {
    /// A target at `addr`, path `/`.
    pub fn at(addr: SocketAddr) -> Result<Self, String> {
        check_loopback(addr)?;
        Ok(Self { addr, host: addr.to_string(), path: "/".into() })
    }

    /// Parses `ws://HOST:PORT[/path]`. Only loopback addresses are accepted:
    /// this tool generates load and must never point at another machine.
    pub fn parse_url(url: &str) -> Result<Self, String> {
        let rest =
            url.strip_prefix("ws://").ok_or_else(|| format!("`{url}`: only ws:// URLs are supported (no TLS)"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        if authority.is_empty() {
            return Err(format!("`{url}`: missing host"));
        }
        let with_port = if authority.ends_with(']') || !authority.contains(':') {
            format!("{authority}:80")
        } else {
            authority.to_string()
        };
        let addrs: Vec<SocketAddr> =
            with_port.to_socket_addrs().map_err(|e| format!("`{url}`: cannot resolve {with_port}: {e}"))?.collect();
        let addr = addrs
            .iter()
            .copied()
            .find(|a| a.ip().is_loopback())
            .ok_or_else(|| format!("`{url}` resolves to {addrs:?}: only loopback targets are allowed"))?;
        Ok(Self { addr, host: authority.to_string(), path })
    }
}

fn check_loopback(addr: SocketAddr) -> Result<(), String> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!("{addr} is not a loopback address: only loopback targets are allowed"))
    }
}

/// Base64 (standard alphabet, padded) of `bytes`.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHA: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHA[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The `Sec-WebSocket-Accept` value a server must answer for `key`.
pub fn accept_key(key: &str) -> String {
    tungstenite::handshake::derive_accept_key(key.as_bytes())
}

/// An upgraded connection: the socket (still blocking) and any bytes that
/// arrived after the 101 response.
pub struct Upgraded {
    /// The socket.
    pub stream: TcpStream,
    /// WebSocket bytes read together with the response.
    pub leftover: Vec<u8>,
}

/// Connects and performs the upgrade, offering `subprotocol` if given and
/// then requiring the server to select it.
pub fn connect(target: &Target, subprotocol: Option<&str>, nonce: u64, timeout: Duration) -> io::Result<Upgraded> {
    let deadline = Instant::now() + timeout;
    let stream = TcpStream::connect_timeout(&target.addr, timeout)?;
    stream.set_nodelay(true)?;
    let mut key_bytes = [0u8; 16];
    key_bytes[..8].copy_from_slice(&nonce.to_le_bytes());
    key_bytes[8..].copy_from_slice(&splitmix(nonce).to_le_bytes());
    let key = base64(&key_bytes);
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
        target.path, target.host
    );
    if let Some(p) = subprotocol {
        req.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    req.push_str("\r\n");
    (&stream).write_all(req.as_bytes())?;

    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no upgrade response in time"));
        }
        stream.set_read_timeout(Some(left))?;
        let n = (&stream).read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("server closed during the upgrade; got: {}", String::from_utf8_lossy(&buf)),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let used = match resp.parse(&buf) {
            Ok(httparse::Status::Complete(used)) => used,
            Ok(httparse::Status::Partial) if buf.len() < 16 * 1024 => continue,
            Ok(httparse::Status::Partial) => return Err(bad("upgrade response headers over 16 KiB")),
            Err(e) => return Err(bad(&format!("malformed upgrade response: {e}"))),
        };
        let code = resp.code.unwrap_or(0);
        if code != 101 {
            let body = String::from_utf8_lossy(&buf[used..]);
            return Err(bad(&format!("upgrade refused: HTTP {code} {}: {}", resp.reason.unwrap_or(""), body.trim())));
        }
        let header = |name: &str| {
            resp.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
        };
        if !header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
            return Err(bad("101 response without `Upgrade: websocket`"));
        }
        let want = accept_key(&key);
        match header("sec-websocket-accept") {
            Some(a) if a == want => {}
            other => return Err(bad(&format!("bad Sec-WebSocket-Accept {other:?}, expected {want}"))),
        }
        if let Some(p) = subprotocol {
            let selected = header("sec-websocket-protocol");
            if selected.as_deref() != Some(p) {
                return Err(bad(&format!("server selected subprotocol {selected:?}, this run needs `{p}`")));
            }
        }
        stream.set_read_timeout(None)?;
        let leftover = buf[used..].to_vec();
        return Ok(Upgraded { stream, leftover });
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// SplitMix64: a one-line mixer for seeds and keys.
pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A complete masked client frame, built once per connection. Requests are
/// copies with the id byte (and optional timestamp) patched in place.
///
/// The mask is random per connection and the same for every frame on it.
/// RFC 6455 asks for a fresh key per frame; the key exists to stop cache
/// poisoning through intermediaries, which cannot happen on loopback, and no
/// server can tell the difference. Re-masking per frame would cost a pass
/// over every payload on the client's hot path.
#[derive(Debug, Clone)]
pub struct FrameTemplate {
    /// The whole frame.
    pub bytes: Vec<u8>,
    id_pos: usize,
    id_mask: u8,
    id_also: Option<(usize, u8)>,
    stamp: Option<(usize, [u8; 8])>,
    header_len: usize,
    mask: [u8; 4],
}

impl FrameTemplate {
    /// Frames `payload` as one masked binary message with `mask`.
    pub fn new(payload: &[u8], id_at: usize, stamp_at: Option<usize>, mask: [u8; 4]) -> Self {
        let mut bytes = Vec::with_capacity(payload.len() + frame::MAX_HEADER_LEN);
        frame::write_masked_frame(&mut bytes, true, Opcode::Binary, payload, mask);
        let header_len = bytes.len() - payload.len();
        let stamp = stamp_at.map(|at| {
            let mut m = [0u8; 8];
            for (i, b) in m.iter_mut().enumerate() {
                *b = mask[(at + i) & 3];
            }
            (header_len + at, m)
        });
        Self { bytes, id_pos: header_len + id_at, id_mask: mask[id_at & 3], id_also: None, stamp, header_len, mask }
    }

    /// Also patches the call id at `at` in the payload (see
    /// `RequestTemplate::id_also_at`).
    pub fn with_id_also_at(mut self, at: Option<usize>) -> Self {
        self.id_also = at.map(|at| (self.header_len + at, self.mask[at & 3]));
        self
    }

    /// Appends one request with call id `id` (and send stamp `stamp_ns`) to `out`.
    #[inline]
    pub fn push(&self, out: &mut Vec<u8>, id: u8, stamp_ns: u64) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        out[start + self.id_pos] = id ^ self.id_mask;
        if let Some((pos, m)) = self.id_also {
            out[start + pos] = id ^ m;
        }
        if let Some((pos, m)) = self.stamp {
            let s = stamp_ns.to_le_bytes();
            for i in 0..8 {
                out[start + pos + i] = s[i] ^ m[i];
            }
        }
    }
}

/// Appends a masked frame (pong, close) outside the template path.
pub fn push_control(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8], mask: [u8; 4]) {
    frame::write_masked_frame(out, true, opcode, payload, mask);
}

#[cfg(test)]
mod tests {
    use super::*;
    use hardlight::protocol::frame::{apply_mask, parse_header, Role};

    #[test]
    fn base64_matches_known_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        // RFC 6455 1.3: the key is 16 bytes, 24 characters.
        assert_eq!(base64(b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn urls_must_be_loopback() {
        let t = Target::parse_url("ws://127.0.0.1:9000/rpc").unwrap();
        assert_eq!(t.addr, "127.0.0.1:9000".parse::<std::net::SocketAddr>().unwrap());
        assert_eq!(t.path, "/rpc");
        assert_eq!(Target::parse_url("ws://localhost:1").unwrap().addr.port(), 1);
        assert!(Target::parse_url("ws://10.0.0.1:80").unwrap_err().contains("loopback"));
        assert!(Target::parse_url("wss://127.0.0.1:80").is_err());
        assert!(Target::at("192.168.1.1:80".parse().unwrap()).is_err());
    }

    #[test]
    fn template_patches_id_and_stamp_under_the_mask() {
        let payload: Vec<u8> = (0..40u8).collect();
        for mask in [[1, 2, 3, 4], [0xde, 0xad, 0xbe, 0xef]] {
            let t = FrameTemplate::new(&payload, 1, Some(5), mask);
            let mut out = vec![0xAA]; // something before, as in a batch
            t.push(&mut out, 201, 0x1122_3344_5566_7788);
            let h = parse_header(&out[1..], Role::Server, 1 << 20).unwrap().unwrap();
            assert_eq!(h.payload_len, 40);
            let mut body = out[1 + h.header_len..].to_vec();
            apply_mask(&mut body, h.mask.unwrap());
            assert_eq!(body[0], 0);
            assert_eq!(body[1], 201);
            assert_eq!(u64::from_le_bytes(body[5..13].try_into().unwrap()), 0x1122_3344_5566_7788);
            assert_eq!(&body[13..], &payload[13..]);
            assert_eq!(&body[2..5], &payload[2..5]);
            // A second id position, as the `state` scenario asks for.
            let t = FrameTemplate::new(&payload, 1, None, mask).with_id_also_at(Some(30));
            let mut out = Vec::new();
            t.push(&mut out, 99, 0);
            let h = parse_header(&out, Role::Server, 1 << 20).unwrap().unwrap();
            let mut body = out[h.header_len..].to_vec();
            apply_mask(&mut body, h.mask.unwrap());
            assert_eq!((body[1], body[30]), (99, 99));
            assert_eq!(&body[2..30], &payload[2..30]);
        }
    }
}
