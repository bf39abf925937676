//! `wss://`: a rustls acceptor from PEM files.

use crate::config::TlsConfig;
use crate::error::{Error, ErrorKind, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

pub(crate) fn acceptor(tls: &TlsConfig) -> Result<TlsAcceptor> {
    let invalid = |m: String| Error::new(ErrorKind::InvalidConfig, format!("invalid config: {m}"));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| invalid(format!("tls.cert {:?}: {e}", tls.cert)))?;
    if certs.is_empty() {
        return Err(invalid(format!(
            "tls.cert {:?} holds no certificate",
            tls.cert
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| invalid(format!("tls.key {:?}: {e}", tls.key)))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("tls: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid(format!("tls: certificate and key do not fit: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
