//! TLS (wss://) for the server, with rustls.
//!
//! Certificates come from PEM files. For development, [`TlsConfig::self_signed`]
//! makes a certificate on the spot and hands back its PEM, which a client
//! must be given explicitly (`hardlight_client::ClientConfig::trust_pem`):
//! nothing ever trusts it by default, and there is no accept-any mode.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read {what} from {path}: {reason}")]
    Pem {
        /// "certificate chain" or "private key".
        what: &'static str,
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the certificate/key pair.
    #[error("invalid certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
    /// The development certificate could not be generated.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
}

/// A server TLS configuration (cheap to clone).
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) acceptor: futures_rustls::TlsAcceptor,
    /// The same configuration, for the ring backend's sans-I/O sessions.
    pub(crate) server_config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConfig { .. }")
    }
}

impl TlsConfig {
    /// Loads a certificate chain and private key from PEM files.
    pub fn from_pem_files(cert_chain: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self, TlsError> {
        let (cert_chain, key) = (cert_chain.as_ref(), key.as_ref());
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_chain)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsError::Pem {
                what: "certificate chain",
                path: cert_chain.display().to_string(),
                reason: e.to_string(),
            })?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Pem {
            what: "private key",
            path: key.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_der(certs, key)
    }

    /// Builds from DER certificate chain and key.
    pub fn from_der(certs: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        // WebSocket over TLS is HTTP/1.1.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let server_config = Arc::new(config);
        Ok(Self { acceptor: futures_rustls::TlsAcceptor::from(server_config.clone()), server_config })
    }

    /// Development mode: a fresh self-signed certificate for `names` (DNS
    /// names or IP addresses). Returns the config and the certificate's PEM,
    /// which clients must be told to trust. Never use this in production.
    pub fn self_signed(names: &[&str]) -> Result<(Self, String), TlsError> {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let cert = rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
        let pem = cert.cert.pem();
        let key =
            PrivateKeyDer::try_from(cert.signing_key.serialize_der()).map_err(|e| TlsError::Generate(e.to_string()))?;
        tracing::warn!("TLS development mode: serving a self-signed certificate; clients must trust it explicitly");
        Ok((Self::from_der(vec![cert.cert.der().clone()], key)?, pem))
    }
}
