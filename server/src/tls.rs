//! The node's TLS (issue 19): the client listener's configuration and the peer links' mutual
//! TLS, both built from the `[tls]` files and reloaded when those change (see
//! [`odradek_client::tls::ReloadingFiles`]). Only I/O: nothing here decides permissions; the
//! client listener hands each connection its TLS principal (the client certificate's first DNS
//! name) for the layers above.

use std::sync::Arc;

use odradek_client::tls::{ClientTls, Pem, ReloadingFiles, ServerTlsFiles, TlsError, RELOAD_CHECK_INTERVAL};
use odradek_consensus::transport::PeerTls;

use crate::config::TlsSettings;

/// The client listener's TLS configuration, reloaded as its files change.
pub type ListenerTls = Arc<ReloadingFiles<rustls::ServerConfig>>;

/// The client listener's TLS (None: plaintext).
pub fn listener(settings: &TlsSettings) -> Result<Option<ListenerTls>, TlsError> {
    let (Some(cert), Some(key)) = (&settings.cert, &settings.key) else { return Ok(None) };
    let files = ServerTlsFiles { cert: cert.clone(), key: key.clone(), client_ca: settings.client_ca.clone() };
    Ok(Some(Arc::new(ReloadingFiles::server(files, RELOAD_CHECK_INTERVAL)?)))
}

/// Peer links' mutual TLS (None: plaintext).
pub fn peers(settings: &TlsSettings) -> Result<Option<Arc<dyn PeerTls>>, TlsError> {
    let (Some(cert), Some(key), Some(ca)) = (&settings.peer_cert, &settings.peer_key, &settings.peer_ca) else { return Ok(None) };
    let files = ServerTlsFiles { cert: cert.clone(), key: key.clone(), client_ca: Some(ca.clone()) };
    let acceptor = ReloadingFiles::server(files, RELOAD_CHECK_INTERVAL)?;
    let dialer =
        ClientTls { ca: Pem::File(ca.clone()), identity: Some((Pem::File(cert.clone()), Pem::File(key.clone()))), server_name: None };
    let paths = vec![cert.clone(), key.clone(), ca.clone()];
    let connector = ReloadingFiles::new(paths, move || dialer.config(), RELOAD_CHECK_INTERVAL)?;
    Ok(Some(Arc::new(NodePeerTls { acceptor, connector })))
}

struct NodePeerTls {
    acceptor: ReloadingFiles<rustls::ServerConfig>,
    connector: ReloadingFiles<rustls::ClientConfig>,
}

impl PeerTls for NodePeerTls {
    fn acceptor_config(&self) -> Arc<rustls::ServerConfig> {
        self.acceptor.current()
    }

    fn connector_config(&self) -> Arc<rustls::ClientConfig> {
        self.connector.current()
    }
}
