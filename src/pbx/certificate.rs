//! The emulator's TLS identity: a self-signed certificate made at start (and written where bots
//! can trust it), or a certificate and key from files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

use crate::connection::tls::provider;

/// Where the certificate comes from.
#[derive(Clone, Debug)]
pub enum CertificateSource {
    /// Generate one for these host names and addresses; write its PEM to `out` when given.
    SelfSigned {
        names: Vec<String>,
        out: Option<PathBuf>,
    },
    /// PEM files.
    Files { cert: PathBuf, key: PathBuf },
}

#[derive(Debug, Error)]
pub enum CertificateError {
    #[error("cannot make a certificate: {0}")]
    Generate(String),
    #[error("{path}: {problem}")]
    File { path: String, problem: String },
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The server config, and the certificate's PEM (what a client must trust).
pub struct Identity {
    pub config: Arc<ServerConfig>,
    pub certificate_pem: String,
}

fn file_error(path: &Path) -> impl Fn(String) -> CertificateError + '_ {
    move |problem| CertificateError::File {
        path: path.display().to_string(),
        problem,
    }
}

pub fn identity(source: &CertificateSource) -> Result<Identity, CertificateError> {
    let (chain, key, pem) = match source {
        CertificateSource::SelfSigned { names, out } => {
            let certified = rcgen::generate_simple_self_signed(names.clone())
                .map_err(|e| CertificateError::Generate(e.to_string()))?;
            let pem = certified.cert.pem();
            if let Some(out) = out {
                std::fs::write(out, &pem).map_err(|e| file_error(out)(e.to_string()))?;
            }
            let key = PrivateKeyDer::try_from(certified.signing_key.serialize_der())
                .map_err(|e| CertificateError::Generate(e.to_string()))?;
            (vec![certified.cert.der().clone()], key, pem)
        }
        CertificateSource::Files { cert, key } => {
            let pem = crate::input_file::read_to_string(cert)
                .map_err(|e| file_error(cert)(e.to_string()))?;
            let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| file_error(cert)(e.to_string()))?;
            if chain.is_empty() {
                return Err(file_error(cert)("no certificate in the file".into()));
            }
            let key = crate::input_file::read(key)
                .map_err(|e| e.to_string())
                .and_then(|pem| PrivateKeyDer::from_pem_slice(&pem).map_err(|e| e.to_string()))
                .map_err(file_error(key))?;
            (chain, key, pem)
        }
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Identity {
        config: Arc::new(config),
        certificate_pem: pem,
    })
}
