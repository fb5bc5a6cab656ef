//! TLS configurations, for `wasmtx serve` and for the commands that talk to it: rustls with
//! the ring provider, TLS 1.2 and 1.3 only, certificates and keys read from PEM files.
//!
//! - [`server_config`]: a server's certificate chain and key, and optionally a CA whose
//!   client certificates it accepts (a client may still connect without one, and then
//!   authenticates with a bearer token);
//! - [`client_config`]: the roots a client trusts — a CA file, or the system's — and
//!   optionally its own certificate;
//! - [`TlsFiles`]: a server's files, loaded, and watched for a change.
//!
//! Every error names the file and says what was wrong with it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_platform_verifier::BuilderVerifierExt;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the {what} {}: {message}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("{0}")]
    Config(String),
}

/// The crypto provider every configuration uses: ring. rustls marks it deprecated because
/// it has no post-quantum key exchange; aws-lc-rs has one but builds a large C library,
/// which would add minutes to a cold build. Classical ECDHE (X25519, P-256) is what TLS 1.2
/// and 1.3 clients negotiate with it.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes [`provider`] the process's default, for HTTP clients built without a
/// configuration of their own (reqwest needs one even for plain HTTP). Idempotent.
pub fn install_default_provider() {
    let _ = CryptoProvider::install_default(Arc::unwrap_or_clone(provider()));
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS12, &rustls::version::TLS13];

/// The certificates of a PEM file (a chain, leaf first, or a CA bundle).
pub fn read_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_error = |message: String| TlsError::File {
        what,
        path: path.to_owned(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(file_error(
            "it holds no PEM certificate (BEGIN CERTIFICATE)".into(),
        ));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn read_key(what: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        what,
        path: path.to_owned(),
        message: format!("{e} (a PEM private key is expected: BEGIN PRIVATE KEY)"),
    })
}

fn roots(what: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(what, path)? {
        roots.add(cert).map_err(|e| TlsError::File {
            what,
            path: path.to_owned(),
            message: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

/// A server's configuration: its certificate chain and key (`cert`, `key`), and with
/// `client_ca` the CA whose client certificates it asks for and verifies (optional for
/// the client). Offers HTTP/2 and HTTP/1.1.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots("client CA", ca)?),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Config(format!("client CA {}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(read_certs("certificate", cert)?, read_key("key", key)?)
        .map_err(|e| {
            TlsError::Config(format!(
                "the certificate {} and the key {} do not go together: {e}",
                cert.display(),
                key.display()
            ))
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A client's configuration: it trusts the CAs of `ca_file`, or without one the system's
/// roots; with `identity` (certificate chain, key) it presents a client certificate.
pub fn client_config(
    ca_file: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match ca_file {
        Some(ca) => builder.with_root_certificates(roots("CA file", ca)?),
        None => builder.with_platform_verifier().map_err(|e| {
            TlsError::Config(format!(
                "cannot use the system's root certificates ({e}); give a CA file"
            ))
        })?,
    };
    match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                read_certs("client certificate", cert)?,
                read_key("client key", key)?,
            )
            .map_err(|e| {
                TlsError::Config(format!(
                    "the client certificate {} and key {} do not go together: {e}",
                    cert.display(),
                    key.display()
                ))
            }),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// The files of `[server] tls_cert`, `tls_key` and `tls_client_ca`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// The server configuration the files make now.
    pub fn load(&self) -> Result<ServerConfig, TlsError> {
        server_config(&self.cert, &self.key, self.client_ca.as_deref())
    }

    /// Size and modification time of every file, to notice a change.
    pub fn stamp(&self) -> Vec<Option<(u64, SystemTime)>> {
        let stamp = |path: &Path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.len(), meta.modified().ok()?))
        };
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(|path| stamp(path))
            .collect()
    }
}
