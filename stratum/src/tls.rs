//! TLS for stratum (`stratum+ssl://`), with rustls and its ring provider.
//!
//! The pool loads a certificate chain and a private key from PEM files; the miner
//! trusts Mozilla's root certificates (webpki-roots, compiled in) plus, when
//! given, the CA certificates in one PEM file (for a pool with a private CA or a
//! self-signed certificate).

use std::{io, path::Path, sync::Arc};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
pub use tokio_rustls::{
    client::TlsStream as ClientTlsStream, server::TlsStream as ServerTlsStream, TlsAcceptor,
    TlsConnector,
};

/// Why TLS could not be set up; each names the file and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("{path} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate { path: String },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: String },
    #[error("the certificate and key are not usable together: {0}")]
    Config(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Every certificate in a PEM file.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::NoCertificate {
            path: path.display().to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

/// The pool's TLS acceptor from a PEM certificate chain and a PEM private key.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let chain = certificates(cert)?;
    let pem = read(key)?;
    let key_der: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &pem[..])
        .ok()
        .flatten()
        .ok_or_else(|| TlsError::NoKey {
            path: key.display().to_string(),
        })?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The miner's TLS connector: Mozilla's roots, plus the certificates in `extra_ca`.
pub fn connector(extra_ca: Option<&Path>) -> Result<TlsConnector, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        for c in certificates(path)? {
            roots.add(c).map_err(|e| {
                TlsError::Config(format!("{}: not a CA certificate: {e}", path.display()))
            })?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Opens TLS over `tcp` to `host` (checked against the pool's certificate). The
/// error says when the certificate is not trusted and what to pass.
pub async fn connect(
    connector: &TlsConnector,
    host: &str,
    tcp: TcpStream,
) -> io::Result<ClientTlsStream<TcpStream>> {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host:?}: {e}")))?;
    connector.connect(name, tcp).await.map_err(|e| {
        let hint = if e.to_string().contains("certificate") {
            " (a pool with its own CA or a self-signed certificate: pass its CA file with --tls-ca)"
        } else {
            ""
        };
        io::Error::new(
            e.kind(),
            format!("TLS handshake with {host} failed: {e}{hint}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(r: Result<TlsAcceptor, TlsError>) -> String {
        match r {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_files_are_refused_with_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem\n").unwrap();
        let e = err(acceptor(&empty, &empty));
        assert!(e.contains("holds no PEM certificate"), "{e}");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let c = dir.path().join("cert.pem");
        std::fs::write(&c, cert.cert.pem()).unwrap();
        let e = err(acceptor(&c, &c));
        assert!(e.contains("holds no PEM private key"), "{e}");
        let e = err(acceptor(&dir.path().join("missing.pem"), &c));
        assert!(
            e.contains("cannot read") && e.contains("missing.pem"),
            "{e}"
        );
        let k = dir.path().join("key.pem");
        std::fs::write(&k, cert.key_pair.serialize_pem()).unwrap();
        assert!(acceptor(&c, &k).is_ok());
        assert!(connector(Some(&c)).is_ok());
    }
}
