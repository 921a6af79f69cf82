//! TLS for client connections and for the server's listeners (issue 19): PEM loading, rustls
//! configurations with the `ring` provider, and [`ReloadingFiles`], which rebuilds a
//! configuration when its files change on disk.
//!
//! # Invariants
//! - Every configuration is built with the same provider ([`provider`]) and rustls' safe
//!   protocol versions (TLS 1.2 and 1.3); nothing here turns verification off.
//! - A reload never leaves a listener without a configuration: files that fail to load keep the
//!   previous configuration in force (and are logged), so a half-written rotation is harmless.
//! - Files are looked at no more often than [`RELOAD_CHECK_INTERVAL`]: a flood of connections
//!   costs at most one `stat` per file per interval.
//! - A peer's principal is the first DNS name in its certificate's subject alternative names
//!   ([`principal`]); a certificate without one has no principal.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Shortest time between two looks at a reloading configuration's files (the default of
/// [`ReloadingFiles`]' `recheck_interval`).
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Why TLS material is unusable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
}

/// PEM text, from a file or given in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pem {
    File(PathBuf),
    Bytes(Vec<u8>),
}

impl Pem {
    fn read(&self) -> Result<Vec<u8>, TlsError> {
        match self {
            Pem::File(path) => {
                std::fs::read(path).map_err(|error| TlsError::Read { path: path.display().to_string(), reason: error.to_string() })
            }
            Pem::Bytes(bytes) => Ok(bytes.clone()),
        }
    }

    fn describe(&self) -> String {
        match self {
            Pem::File(path) => path.display().to_string(),
            Pem::Bytes(_) => "PEM given in memory".to_string(),
        }
    }
}

/// The one crypto provider every configuration uses: *ring* (builds with a C compiler alone;
/// aws-lc-rs needs cmake). rustls 0.23.48 deprecates it only for lacking post-quantum key
/// exchange, which the classical suites it offers do not need.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in `pem` (at least one).
pub fn certificates(pem: &Pem) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = pem.read()?;
    let invalid = |reason: String| TlsError::Invalid { what: pem.describe(), reason };
    let certificates: Vec<_> =
        CertificateDer::pem_slice_iter(&bytes).collect::<Result<_, _>>().map_err(|error| invalid(error.to_string()))?;
    if certificates.is_empty() {
        return Err(invalid("no CERTIFICATE block".into()));
    }
    Ok(certificates)
}

/// The first private key in `pem`.
pub fn private_key(pem: &Pem) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = pem.read()?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|error| TlsError::Invalid { what: pem.describe(), reason: error.to_string() })
}

/// A trust store holding every certificate in `pem`.
pub fn roots(pem: &Pem) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for certificate in certificates(pem)? {
        store.add(certificate).map_err(|error| TlsError::Invalid { what: pem.describe(), reason: error.to_string() })?;
    }
    Ok(Arc::new(store))
}

/// A client's TLS setting: whom to trust, and optionally who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// The CA certificates that sign the servers' certificates.
    pub ca: Pem,
    /// A client certificate chain and its key, for listeners that require one (mutual TLS).
    pub identity: Option<(Pem, Pem)>,
    /// The name checked against the server's certificate; default: the host of the address
    /// dialed (an IP address is checked against the certificate's IP names).
    pub server_name: Option<String>,
}

impl ClientTls {
    /// Trusts the CA certificates in `ca`, presents no certificate.
    pub fn new(ca: Pem) -> ClientTls {
        ClientTls { ca, identity: None, server_name: None }
    }

    /// The rustls configuration (read from the files now).
    pub fn config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let roots = roots(&self.ca)?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsError::Invalid { what: "TLS versions".into(), reason: error.to_string() })?
            .with_root_certificates(roots);
        let config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder
                .with_client_auth_cert(certificates(chain)?, private_key(key)?)
                .map_err(|error| TlsError::Invalid { what: chain.describe(), reason: error.to_string() })?,
        };
        Ok(Arc::new(config))
    }

    /// The name to verify for a connection to `address` (`host:port`).
    pub fn server_name_for(&self, address: &str) -> Result<ServerName<'static>, TlsError> {
        let host = match &self.server_name {
            Some(name) => name.as_str(),
            None => address.rsplit_once(':').map_or(address, |(host, _)| host).trim_start_matches('[').trim_end_matches(']'),
        };
        ServerName::try_from(host.to_string())
            .map_err(|error| TlsError::Invalid { what: format!("server name {host:?}"), reason: error.to_string() })
    }
}

/// Why [`ClientTls::handshake`] did not give a TLS stream.
#[derive(Debug)]
pub enum HandshakeError {
    /// The settings do not make a configuration (unreadable CA, bad server name): no byte went out.
    Config(TlsError),
    /// TLS itself rejected the peer, or the peer does not speak TLS: retrying will not help.
    Rejected(std::io::Error),
    /// The network failed during the handshake (a reset, an EOF): worth a retry.
    Network(std::io::Error),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Config(error) => write!(f, "{error}"),
            HandshakeError::Rejected(error) => {
                write!(f, "TLS handshake failed: {error} (is the listener plaintext, or its certificate not signed by the CA given?)")
            }
            HandshakeError::Network(error) => write!(f, "TLS handshake failed: {error}"),
        }
    }
}

impl ClientTls {
    /// The client side of a TLS handshake over `stream`, a connection to `address` (whose host
    /// is the name verified unless [`ClientTls::server_name`] says otherwise). Every client of
    /// the project that dials a TLS listener goes through here: the native connection
    /// (`connection::Connection::connect`) and the hand-written Kafka clients (`kafka`).
    pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        address: &str,
        stream: S,
    ) -> Result<tokio_rustls::client::TlsStream<S>, HandshakeError> {
        let name = self.server_name_for(address).map_err(HandshakeError::Config)?;
        let connector = tokio_rustls::TlsConnector::from(self.config().map_err(HandshakeError::Config)?);
        connector.connect(name, stream).await.map_err(|error| {
            // rustls reports what TLS itself rejects as InvalidData; anything else is the network's.
            if error.kind() == std::io::ErrorKind::InvalidData {
                HandshakeError::Rejected(error)
            } else {
                HandshakeError::Network(error)
            }
        })
    }
}

/// The server side of a TLS listener: its certificate and key, and optionally the CA whose
/// client certificates it requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, every client must present a certificate this CA signed (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

impl ServerTlsFiles {
    /// The rustls configuration (read from the files now).
    pub fn config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsError::Invalid { what: "TLS versions".into(), reason: error.to_string() })?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let roots = roots(&Pem::File(ca.clone()))?;
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
                    .build()
                    .map_err(|error| TlsError::Invalid { what: ca.display().to_string(), reason: error.to_string() })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let chain = certificates(&Pem::File(self.cert.clone()))?;
        let key = private_key(&Pem::File(self.key.clone()))?;
        let config = builder
            .with_single_cert(chain, key)
            .map_err(|error| TlsError::Invalid { what: self.cert.display().to_string(), reason: error.to_string() })?;
        Ok(Arc::new(config))
    }

    fn paths(&self) -> Vec<PathBuf> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()].into_iter().flatten().cloned().collect()
    }
}

/// What identifies one version of a file: its modification time and length.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

/// A configuration built from files, rebuilt when they change (see the module invariants).
/// New connections take [`ReloadingFiles::current`]; live connections keep the configuration
/// they were made with.
pub struct ReloadingFiles<C> {
    paths: Vec<PathBuf>,
    build: Box<dyn Fn() -> Result<Arc<C>, TlsError> + Send + Sync>,
    state: Mutex<Reload<C>>,
    recheck_interval: Duration,
}

struct Reload<C> {
    config: Arc<C>,
    stamps: Vec<Stamp>,
    checked_at: Instant,
}

impl<C> ReloadingFiles<C> {
    /// Builds the first configuration now (an error here is a startup error).
    pub fn new(
        paths: Vec<PathBuf>,
        build: impl Fn() -> Result<Arc<C>, TlsError> + Send + Sync + 'static,
        recheck_interval: Duration,
    ) -> Result<Self, TlsError> {
        let stamps = paths.iter().map(|path| stamp(path)).collect();
        let config = build()?;
        Ok(ReloadingFiles {
            paths,
            build: Box::new(build),
            state: Mutex::new(Reload { config, stamps, checked_at: Instant::now() }),
            recheck_interval,
        })
    }

    /// The configuration for a new connection: rebuilt first when a file changed since the
    /// last look (looked at most once per `recheck_interval`).
    pub fn current(&self) -> Arc<C> {
        let mut state = self.state.lock().expect("TLS reload lock poisoned by a panic");
        if state.checked_at.elapsed() < self.recheck_interval {
            return state.config.clone();
        }
        state.checked_at = Instant::now();
        let stamps: Vec<Stamp> = self.paths.iter().map(|path| stamp(path)).collect();
        if stamps != state.stamps {
            match (self.build)() {
                Ok(config) => {
                    tracing::info!(files = ?self.paths, "TLS files changed: new connections use them");
                    state.config = config;
                    state.stamps = stamps;
                }
                // Not recorded as seen: retried at the next look (the writer may not be done).
                Err(error) => tracing::warn!(%error, "TLS files changed but do not load; keeping the previous ones"),
            }
        }
        state.config.clone()
    }
}

impl ReloadingFiles<ServerConfig> {
    /// A listener's configuration from `files`, reloaded as they change.
    pub fn server(files: ServerTlsFiles, recheck_interval: Duration) -> Result<Self, TlsError> {
        let paths = files.paths();
        ReloadingFiles::new(paths, move || files.config(), recheck_interval)
    }
}

/// The principal a peer certificate names: its first DNS subject alternative name.
pub fn principal(certificate: &CertificateDer<'_>) -> Option<String> {
    let parsed = webpki::EndEntityCert::try_from(certificate).ok()?;
    let name = parsed.valid_dns_names().next().map(str::to_string);
    name
}

/// True when `certificate` (already verified against the trusted CA) is valid for `name`.
pub fn certificate_names(certificate: &CertificateDer<'_>, name: &str) -> bool {
    let Ok(parsed) = webpki::EndEntityCert::try_from(certificate) else { return false };
    let Ok(name) = ServerName::try_from(name) else { return false };
    parsed.verify_is_valid_for_subject_name(&name).is_ok()
}

/// A byte stream a connection runs over: plain TCP or TLS over it.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for S {}

/// A stream with bytes already read from it put back in front (the first byte a listener
/// looks at to tell TLS from plaintext).
pub struct Rewound<S> {
    prefix: Vec<u8>,
    consumed: usize,
    inner: S,
}

impl<S> Rewound<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Rewound { prefix, consumed: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewound<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.consumed < self.prefix.len() {
            let rest = &self.prefix[self.consumed..];
            let taken = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..taken]);
            self.consumed += taken;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewound<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The first byte of every TLS connection (a handshake record).
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_name_is_the_host_of_the_address_unless_overridden() {
        let mut tls = ClientTls::new(Pem::Bytes(Vec::new()));
        assert_eq!(tls.server_name_for("127.0.0.1:9092").unwrap(), ServerName::try_from("127.0.0.1").unwrap());
        assert_eq!(tls.server_name_for("broker-1.example:9092").unwrap(), ServerName::try_from("broker-1.example").unwrap());
        assert_eq!(tls.server_name_for("[::1]:9092").unwrap(), ServerName::try_from("::1").unwrap());
        tls.server_name = Some("node-1".into());
        assert_eq!(tls.server_name_for("127.0.0.1:9092").unwrap(), ServerName::try_from("node-1").unwrap());
    }

    #[test]
    fn pem_without_a_certificate_is_refused_with_its_origin() {
        let error = certificates(&Pem::Bytes(b"not pem".to_vec())).unwrap_err();
        assert!(error.to_string().contains("no CERTIFICATE block"), "{error}");
        let error = certificates(&Pem::File("/nonexistent/ca.pem".into())).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
    }
}
