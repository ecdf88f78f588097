//! The HTTP upgrade that opens a HardLight connection, and its version rule.
//!
//! A client must offer the WebSocket subprotocol `hl/<major>`. A server that
//! does not speak that major version refuses the upgrade with HTTP 400 and a
//! body naming the version it does speak, so the failure is visible to a
//! person reading logs on either side, not a silent close after the upgrade.

use std::fmt;

/// Major protocol version. A change to any byte layout in `docs/PROTOCOL.md` bumps it.
pub const PROTOCOL_MAJOR: u32 = 1;

/// The WebSocket subprotocol token for this version.
pub const SUBPROTOCOL: &str = "hl/1";

/// The same version spelled as a token browsers accept. The WebSocket API
/// refuses `/` in a subprotocol (RFC 6455 asks for an HTTP token, and `/`
/// is a separator), so a web page offers `hl.1`; a server speaking `hl/1`
/// accepts either spelling and selects the one the client offered.
pub const BROWSER_SUBPROTOCOL: &str = "hl.1";

/// A validated upgrade request. Handlers and connection factories read the
/// headers and cookies from here (for example a session token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// Request target, e.g. `/` or `/rpc?x=1`.
    pub path: String,
    /// Every header, names lowercased, values as sent (lossy UTF-8), in order.
    pub headers: Vec<(String, String)>,
    key: String,
    /// The subprotocol the server selects (and names in its 101), if any.
    protocol: Option<&'static str>,
}

impl UpgradeRequest {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every `name=value` pair of every `Cookie` header, parsed by the `cookie` crate.
    /// Malformed pairs are skipped.
    pub fn cookies(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "cookie")
            .flat_map(|(_, v)| cookie::Cookie::split_parse(v.clone()))
            .filter_map(Result::ok)
            .map(|c| (c.name().to_string(), c.value().to_string()))
            .collect()
    }

    /// The value of cookie `name`, if sent.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies().into_iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The subprotocol the 101 response selects: `hl/1` for HardLight
    /// connections, `None` for a plain WebSocket (see [`parse_request_for`]).
    pub fn protocol(&self) -> Option<&'static str> {
        self.protocol
    }

    /// Whether the client opted in to resume: header
    /// [`crate::resume::RESUME_HEADER`] `: 1`, or, when that header is
    /// absent, the offered subprotocol [`crate::resume::RESUME_PROTOCOL`]
    /// (a web page cannot set headers). It gets topic events with their
    /// position and sends `RESUME` first. The header wins when both are
    /// present, so a client that sends `HardLight-Resume: 0` is not opted in
    /// by a token it also offers.
    pub fn wants_resume(&self) -> bool {
        match self.header(crate::resume::RESUME_HEADER) {
            Some(v) => v.trim() == "1",
            None => self.offers_protocol(crate::resume::RESUME_PROTOCOL),
        }
    }

    /// Whether any `Sec-WebSocket-Protocol` header offers `token` (ASCII
    /// case-insensitive, as tokens are).
    pub fn offers_protocol(&self, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == "sec-websocket-protocol")
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Appends the `101 Switching Protocols` response that accepts this request.
    pub fn write_accept(&self, out: &mut Vec<u8>) {
        let accept = tungstenite::handshake::derive_accept_key(self.key.as_bytes());
        out.extend_from_slice(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
        );
        out.extend_from_slice(accept.as_bytes());
        if let Some(p) = self.protocol {
            out.extend_from_slice(b"\r\nSec-WebSocket-Protocol: ");
            out.extend_from_slice(p.as_bytes());
            if self.wants_resume() {
                // The server's half of the opt-in: a client sends RESUME only
                // to a server that answered this (older ones would close).
                out.extend_from_slice(b"\r\nHardLight-Resume: 1");
            }
        }
        out.extend_from_slice(b"\r\n\r\n");
    }
}

/// Why an upgrade request was refused. Each maps to an HTTP status and a body
/// that says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// The request grew past `max_handshake_size` without ending (HTTP 431).
    TooLarge(usize),
    /// More headers than `max_headers` (HTTP 431).
    TooManyHeaders(usize),
    /// Not parseable as HTTP/1.1 (HTTP 400).
    Malformed(String),
    /// Not a GET (HTTP 405).
    NotGet(String),
    /// Missing `Upgrade: websocket` / `Connection: upgrade` (HTTP 426).
    NotUpgrade,
    /// `Sec-WebSocket-Version` missing or not 13 (HTTP 426).
    WebSocketVersion(Option<String>),
    /// `Sec-WebSocket-Key` missing or not 16 base64-encoded bytes (HTTP 400).
    BadKey,
    /// No offered subprotocol is `hl/1` (HTTP 400). Holds what was offered.
    UnsupportedProtocol(Option<String>),
    /// The application refused the connection (its status and reason).
    Refused(u16, String),
}

impl HandshakeError {
    /// HTTP status for the refusal.
    pub fn status(&self) -> u16 {
        match self {
            Self::TooLarge(_) | Self::TooManyHeaders(_) => 431,
            Self::Malformed(_) | Self::BadKey | Self::UnsupportedProtocol(_) => 400,
            Self::NotGet(_) => 405,
            Self::NotUpgrade | Self::WebSocketVersion(_) => 426,
            Self::Refused(s, _) => *s,
        }
    }

    /// Appends the full HTTP refusal response. The body is the error's message.
    pub fn write_response(&self, out: &mut Vec<u8>) {
        let status = self.status();
        let reason = match status {
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            405 => "Method Not Allowed",
            426 => "Upgrade Required",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            _ => "Error",
        };
        let body = format!("{self}\n");
        let extra = match self {
            Self::WebSocketVersion(_) | Self::NotUpgrade => "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n",
            _ => "",
        };
        out.extend_from_slice(
            format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge(n) => write!(f, "upgrade request larger than {n} bytes"),
            Self::TooManyHeaders(n) => write!(f, "upgrade request has more than {n} headers"),
            Self::Malformed(e) => write!(f, "malformed HTTP upgrade request: {e}"),
            Self::NotGet(m) => write!(f, "WebSocket upgrade must use GET, not {m}"),
            Self::NotUpgrade => {
                f.write_str("not a WebSocket upgrade: need `Upgrade: websocket` and `Connection: Upgrade`")
            }
            Self::WebSocketVersion(v) => write!(f, "unsupported Sec-WebSocket-Version {v:?}; this server speaks 13"),
            Self::BadKey => f.write_str("Sec-WebSocket-Key missing or not 16 base64-encoded bytes"),
            Self::UnsupportedProtocol(offered) => write!(
                f,
                "unsupported HardLight protocol version: client offered {}; this server supports {SUBPROTOCOL}",
                offered.as_deref().map(|o| format!("`{o}`")).unwrap_or_else(|| "no Sec-WebSocket-Protocol".into())
            ),
            Self::Refused(_, why) => write!(f, "connection refused: {why}"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// Parses an upgrade request from the front of `buf`.
///
/// Returns `Ok(None)` while the request is incomplete (and within limits),
/// or the request and the number of bytes it used. Bytes after it belong to
/// the WebSocket stream.
pub fn parse_request(
    buf: &[u8],
    max_size: usize,
    max_headers: usize,
) -> Result<Option<(UpgradeRequest, usize)>, HandshakeError> {
    parse_request_for(buf, max_size, max_headers, Some(SUBPROTOCOL))
}

/// [`parse_request`] with the subprotocol rule made explicit: with
/// `Some(token)` the client must offer `token` and the 101 selects it (the
/// HardLight rule, `hl/1`); with `None` nothing is required or selected, as
/// for a plain WebSocket endpoint (the echo server the Autobahn suite tests).
pub fn parse_request_for(
    buf: &[u8],
    max_size: usize,
    max_headers: usize,
    subprotocol: Option<&'static str>,
) -> Result<Option<(UpgradeRequest, usize)>, HandshakeError> {
    let mut storage = vec![httparse::EMPTY_HEADER; max_headers];
    let mut req = httparse::Request::new(&mut storage);
    let used = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= max_size { Err(HandshakeError::TooLarge(max_size)) } else { Ok(None) };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooManyHeaders(max_headers)),
        Err(e) => return Err(HandshakeError::Malformed(e.to_string())),
    };
    if used > max_size {
        return Err(HandshakeError::TooLarge(max_size));
    }
    let method = req.method.unwrap_or("");
    if method != "GET" {
        return Err(HandshakeError::NotGet(method.to_string()));
    }
    if req.version != Some(1) {
        return Err(HandshakeError::Malformed("HTTP/1.1 required".into()));
    }
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
        .collect();
    let get = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let has_token = |name: &str, token: &str| {
        headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err(HandshakeError::NotUpgrade);
    }
    match get("sec-websocket-version") {
        Some(v) if v.trim() == "13" => {}
        other => return Err(HandshakeError::WebSocketVersion(other.map(str::to_string))),
    }
    let key = get("sec-websocket-key").map(str::trim).unwrap_or("");
    if !is_valid_key(key) {
        return Err(HandshakeError::BadKey);
    }
    let selected = match subprotocol {
        Some(p) if has_token("sec-websocket-protocol", p) => Some(p),
        Some(SUBPROTOCOL) if has_token("sec-websocket-protocol", BROWSER_SUBPROTOCOL) => Some(BROWSER_SUBPROTOCOL),
        other => other,
    };
    if selected.is_some_and(|p| !has_token("sec-websocket-protocol", p)) {
        let offered: Vec<&str> =
            headers.iter().filter(|(n, _)| n == "sec-websocket-protocol").map(|(_, v)| v.as_str()).collect();
        return Err(HandshakeError::UnsupportedProtocol(if offered.is_empty() {
            None
        } else {
            Some(offered.join(", "))
        }));
    }
    Ok(Some((
        UpgradeRequest { path: req.path.unwrap_or("/").to_string(), key: key.to_string(), headers, protocol: selected },
        used,
    )))
}

/// The Origin rule: with an allow-list, a request that carries an `Origin`
/// header (every browser does) must name a listed origin, compared
/// case-insensitively. Requests without `Origin` come from non-browser
/// clients, which Origin checks cannot constrain anyway, and pass. An empty
/// list allows everything.
pub fn origin_allowed(req: &UpgradeRequest, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    match req.header("origin") {
        None => true,
        Some(o) => allowed.iter().any(|a| a.eq_ignore_ascii_case(o.trim())),
    }
}

/// A key is 16 bytes, base64: 22 symbols and `==`.
fn is_valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && b[22] == b'='
        && b[23] == b'='
        && b[..22].iter().all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

/// Client side: checks the subprotocol the server selected.
pub fn check_selected_protocol(selected: Option<&str>) -> Result<(), HandshakeError> {
    match selected {
        Some(p) if p.trim() == SUBPROTOCOL => Ok(()),
        other => Err(HandshakeError::UnsupportedProtocol(other.map(str::to_string))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn request(extra: &str) -> String {
        format!(
            "GET /rpc HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{extra}\r\n"
        )
    }

    #[test]
    fn accepts_hl1_and_answers_rfc_accept_key() {
        let r = request("Sec-WebSocket-Protocol: chat, hl/1\r\nCookie: a=1; token=abc\r\n");
        let (req, used) = parse_request(r.as_bytes(), 8192, 64).unwrap().unwrap();
        assert_eq!(used, r.len());
        assert_eq!(req.path, "/rpc");
        assert_eq!(req.cookie("token").as_deref(), Some("abc"));
        assert_eq!(req.header("HOST"), Some("x"));
        let mut out = Vec::new();
        req.write_accept(&mut out);
        let text = String::from_utf8(out).unwrap();
        // The RFC 6455 section 1.3 example key and answer.
        assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "{text}");
        assert!(text.contains("Sec-WebSocket-Protocol: hl/1\r\n"));
        assert!(text.starts_with("HTTP/1.1 101 "));
    }

    #[test]
    fn wrong_or_missing_version_is_400_naming_the_supported_one() {
        for extra in ["Sec-WebSocket-Protocol: hl/2\r\n", ""] {
            let r = request(extra);
            let err = parse_request(r.as_bytes(), 8192, 64).unwrap_err();
            assert!(matches!(err, HandshakeError::UnsupportedProtocol(_)));
            let mut out = Vec::new();
            err.write_response(&mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
            assert!(text.contains("supports hl/1"), "{text}");
        }
    }

    #[test]
    fn partial_then_too_large() {
        let r = request("Sec-WebSocket-Protocol: hl/1\r\n");
        assert_eq!(parse_request(&r.as_bytes()[..20], 8192, 64), Ok(None));
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
        assert_eq!(parse_request(huge.as_bytes(), 8192, 64), Err(HandshakeError::TooLarge(8192)));
    }

    #[test]
    fn rejects_non_upgrades() {
        let post = request("Sec-WebSocket-Protocol: hl/1\r\n").replacen("GET", "POST", 1);
        assert!(matches!(parse_request(post.as_bytes(), 8192, 64), Err(HandshakeError::NotGet(_))));
        let plain = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(parse_request(plain.as_bytes(), 8192, 64), Err(HandshakeError::NotUpgrade));
        let badkey = request("Sec-WebSocket-Protocol: hl/1\r\n").replace(KEY, "short");
        assert_eq!(parse_request(badkey.as_bytes(), 8192, 64), Err(HandshakeError::BadKey));
        let v8 = request("Sec-WebSocket-Protocol: hl/1\r\n").replace("Version: 13", "Version: 8");
        assert_eq!(status_of(&v8), 426);
        let many: String = (0..70).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(status_of(&request(&many)), 431);
        assert_eq!(status_of("GARBAGE\x01\r\n\r\n"), 400);
    }

    fn status_of(r: &str) -> u16 {
        parse_request(r.as_bytes(), 8192, 64).unwrap_err().status()
    }

    #[test]
    fn origin_allow_list() {
        let r = request("Sec-WebSocket-Protocol: hl/1\r\nOrigin: https://app.example\r\n");
        let (req, _) = parse_request(r.as_bytes(), 8192, 64).unwrap().unwrap();
        assert!(origin_allowed(&req, &[]));
        assert!(origin_allowed(&req, &["https://APP.example".into()]));
        assert!(!origin_allowed(&req, &["https://evil.example".into()]));
        let r = request("Sec-WebSocket-Protocol: hl/1\r\n");
        let (no_origin, _) = parse_request(r.as_bytes(), 8192, 64).unwrap().unwrap();
        assert!(origin_allowed(&no_origin, &["https://app.example".into()]));
    }

    #[test]
    fn plain_websocket_needs_no_subprotocol_and_selects_none() {
        for extra in ["", "Sec-WebSocket-Protocol: chat\r\n"] {
            let r = request(extra);
            let (req, _) = parse_request_for(r.as_bytes(), 8192, 64, None).unwrap().unwrap();
            assert_eq!(req.protocol(), None);
            let mut out = Vec::new();
            req.write_accept(&mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(text.starts_with("HTTP/1.1 101 "), "{text}");
            assert!(!text.to_ascii_lowercase().contains("sec-websocket-protocol"), "{text}");
        }
        // The other rules still apply.
        let v8 = request("").replace("Version: 13", "Version: 8");
        assert_eq!(parse_request_for(v8.as_bytes(), 8192, 64, None).unwrap_err().status(), 426);
    }

    #[test]
    fn browsers_offer_hl_dot_1_and_get_it_selected() {
        let text = request("Sec-WebSocket-Protocol: chat, hl.1\r\n");
        let (req, _) = parse_request(text.as_bytes(), 8192, 64).unwrap().unwrap();
        assert_eq!(req.protocol(), Some(BROWSER_SUBPROTOCOL));
        let mut out = Vec::new();
        req.write_accept(&mut out);
        assert!(String::from_utf8(out).unwrap().contains("Sec-WebSocket-Protocol: hl.1\r\n"));
        // Both offered: the canonical spelling wins; neither: refused.
        let text = request("Sec-WebSocket-Protocol: hl.1, hl/1\r\n");
        assert_eq!(parse_request(text.as_bytes(), 8192, 64).unwrap().unwrap().0.protocol(), Some(SUBPROTOCOL));
        let text = request("Sec-WebSocket-Protocol: hl.2\r\n");
        assert!(matches!(parse_request(text.as_bytes(), 8192, 64), Err(HandshakeError::UnsupportedProtocol(_))));
    }

    #[test]
    fn a_page_opts_in_to_resume_with_an_offered_token_that_is_never_selected() {
        use crate::resume::RESUME_PROTOCOL;
        assert_eq!(RESUME_PROTOCOL, "hl-resume.1");
        let accept = |extra: &str| {
            let r = request(extra);
            let (req, _) = parse_request(r.as_bytes(), 8192, 64).unwrap().unwrap();
            let mut out = Vec::new();
            req.write_accept(&mut out);
            (req.wants_resume(), String::from_utf8(out).unwrap())
        };
        let (wants, text) = accept("Sec-WebSocket-Protocol: hl.1, hl-schema.eca39c432b32e6fb, hl-resume.1\r\n");
        assert!(wants, "the token opts in");
        assert!(text.contains("Sec-WebSocket-Protocol: hl.1\r\n"), "only hl.1 is selected: {text}");
        assert!(!text.contains("hl-resume.1"), "the token is never selected: {text}");
        // Offered in its own header line, in any case: still read.
        assert!(accept("Sec-WebSocket-Protocol: hl.1\r\nSec-WebSocket-Protocol: HL-Resume.1\r\n").0);
        // Not offered, or another version of it: no resume.
        assert!(!accept("Sec-WebSocket-Protocol: hl.1\r\n").0);
        assert!(!accept("Sec-WebSocket-Protocol: hl.1, hl-resume.2\r\n").0);
        // The header, when present, decides.
        assert!(accept("Sec-WebSocket-Protocol: hl/1\r\nHardLight-Resume: 1\r\n").0);
        assert!(!accept("Sec-WebSocket-Protocol: hl.1, hl-resume.1\r\nHardLight-Resume: 0\r\n").0);
        // The token alone does not make a HardLight request.
        let r = request("Sec-WebSocket-Protocol: hl-resume.1\r\n");
        assert!(matches!(parse_request(r.as_bytes(), 8192, 64), Err(HandshakeError::UnsupportedProtocol(_))));
    }

    #[test]
    fn client_checks_selected_protocol() {
        assert!(check_selected_protocol(Some("hl/1")).is_ok());
        assert!(check_selected_protocol(Some("hl/2")).is_err());
        assert!(check_selected_protocol(None).is_err());
    }
}
