//! How a client connects: timeouts, limits, headers, trusted certificates.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use hardlight_core::backoff::Backoff;

use hardlight_core::handshake::SUBPROTOCOL;
use hardlight_core::Schema;

use crate::ConnectError;

/// Default time to open a connection (TCP and upgrade).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a call waits for its response.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Default largest message the client accepts from the server.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 << 20;

/// The on-connect hook (see [`ClientConfig::on_connect`]).
#[derive(Clone)]
pub struct OnConnect(pub(crate) Arc<dyn Fn(crate::Connection) -> BoxFuture<'static, Result<(), String>> + Send + Sync>);

impl std::fmt::Debug for OnConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnConnect(..)")
    }
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Time allowed for TCP connect plus the upgrade.
    pub connect_timeout: Duration,
    /// Time each call waits for its response (per handle; see
    /// [`crate::Connection::with_call_timeout`]).
    pub call_timeout: Duration,
    /// Largest message accepted from the server.
    pub max_message_size: usize,
    /// Calls allowed to wait for a free call id while all 256 are in
    /// flight (see [`hardlight_core::session::DEFAULT_MAX_WAITING_CALLS`]).
    pub max_waiting_calls: usize,
    /// Extra headers for the upgrade request (cookies, tokens).
    pub headers: Vec<(String, String)>,
    /// Subprotocol offered; only tests of version negotiation change it.
    pub subprotocol: String,
    /// Certificates trusted for wss:// in addition to the public web PKI
    /// roots (for a private CA or a development self-signed certificate).
    /// There is no way to turn certificate verification off.
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// The service schema this connection is for (see [`Self::schema`]).
    pub schema: Option<&'static Schema>,
    /// Reconnect after a drop with this backoff; `None` (the default): a
    /// drop closes the connection for good.
    pub reconnect: Option<Backoff>,
    /// While reconnecting, calls wait for the new transport within their
    /// timeout (`true`, the default) or fail at once with `Disconnected`.
    pub wait_while_disconnected: bool,
    /// Methods that are safe to run twice: a call of one in flight when the
    /// transport drops is sent again on the next one. Every other call
    /// fails with `Disconnected` instead; none is ever sent twice.
    pub idempotent: Vec<u16>,
    /// Run on every transport before the connection is reported ready.
    pub on_connect: Option<OnConnect>,
    /// Opt in to event resume (default on): topic events carry their
    /// position, and a reconnect resumes them without loss or duplicates,
    /// or reports a gap ([`crate::Connection::gaps`]). A server that does
    /// not know resume ignores the opt-in.
    pub resume: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_waiting_calls: hardlight_core::session::DEFAULT_MAX_WAITING_CALLS,
            headers: Vec::new(),
            subprotocol: SUBPROTOCOL.to_string(),
            extra_roots: Vec::new(),
            schema: None,
            reconnect: None,
            wait_while_disconnected: true,
            idempotent: Vec::new(),
            on_connect: None,
            resume: true,
        }
    }
}

impl ClientConfig {
    /// Adds a header to the upgrade request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the per-call timeout.
    pub fn call_timeout(mut self, t: Duration) -> Self {
        self.call_timeout = t;
        self
    }

    /// Trusts the certificate(s) in `pem` for wss://, in addition to the
    /// public roots. Use it for a development self-signed certificate or a
    /// private CA.
    pub fn trust_pem(mut self, pem: &str) -> Result<Self, ConnectError> {
        use rustls::pki_types::pem::PemObject;
        let certs = rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConnectError::Tls(format!("invalid PEM certificate: {e}")))?;
        if certs.is_empty() {
            return Err(ConnectError::Tls("no certificate in the PEM given to trust_pem".into()));
        }
        self.extra_roots.extend(certs);
        Ok(self)
    }

    /// Opens the connection for the service `schema`
    /// (`<Trait>Method::SCHEMA`): its fingerprint goes to the server in the
    /// `HardLight-Schema` upgrade header, and a server built from another
    /// version of the trait refuses the upgrade
    /// ([`ConnectError::Refused`] with status 400 and a body naming both
    /// fingerprints), before any call. Event streams of this connection
    /// then accept only the service's declared event types, and the
    /// methods the trait marks `#[idempotent]` are resent after a drop
    /// ([`Self::idempotent`]).
    pub fn schema(mut self, schema: &'static Schema) -> Self {
        self.schema = Some(schema);
        self
    }

    /// Reconnects after every drop with `backoff`
    /// ([`Backoff::default`]: 100 ms doubling to a 10 s cap, half jitter),
    /// until [`crate::Connection::close`] or the last handle is dropped.
    pub fn reconnect(mut self, backoff: Backoff) -> Self {
        self.reconnect = Some(backoff);
        self
    }

    /// Calls made while reconnecting fail at once with `Disconnected`
    /// instead of waiting for the new transport.
    pub fn fail_fast_while_disconnected(mut self) -> Self {
        self.wait_while_disconnected = false;
        self
    }

    /// Marks method `id` (`<Trait>Method::X as u16`) idempotent: resent
    /// after a drop instead of failing. Methods marked `#[idempotent]` in
    /// the `#[rpc]` trait are idempotent without this when the connection
    /// is opened with the trait's schema ([`Self::schema`]); this is for
    /// clients without one, or to add methods the trait does not mark.
    pub fn idempotent(mut self, method: u16) -> Self {
        self.idempotent.push(method);
        self
    }

    /// Runs `hook` on every transport (the first and each reconnect) after
    /// the server's initial state and feature set arrived and before the
    /// connection is ready: the application's calls wait until it returns
    /// `Ok`, while the hook's own calls, through the handle it is given,
    /// go out at once. The place to re-authenticate (a token or cookie
    /// login that widens the feature set). An `Err` (or not finishing
    /// within the connect timeout) fails `connect` on the first transport,
    /// and drops the transport for another attempt on later ones.
    pub fn on_connect<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(crate::Connection) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.on_connect = Some(OnConnect(Arc::new(move |c| Box::pin(hook(c)))));
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }
}

/// The rustls client configuration: public web PKI roots plus `extra`.
/// Verification is always on.
pub(crate) fn tls_config(
    extra: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<rustls::ClientConfig, ConnectError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra {
        roots.add(cert.clone()).map_err(|e| ConnectError::Tls(format!("cannot trust the given certificate: {e}")))?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}
