//! The serving certificate: loaded from PEM files, validated (the key must match the
//! certificate), and swapped atomically so rotation never fails a handshake.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate/key pair was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: no PEM certificate found")]
    NoCertificate { path: PathBuf },
    #[error("{path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("{cert} and {key} do not belong together: {reason}")]
    Mismatch { cert: PathBuf, key: PathBuf, reason: String },
    #[error("{path}: the certificate cannot be parsed: {reason}")]
    Parse { path: PathBuf, reason: String },
}

/// A validated pair, with the leaf's expiry.
#[derive(Debug)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// `notAfter` of the leaf certificate, in seconds since the epoch.
    pub not_after: i64,
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read { path: path.into(), source })
}

/// Reads and validates a PEM certificate chain and its private key.
pub fn load(cert_path: &Path, key_path: &Path) -> Result<LoadedCert, CertError> {
    from_pem(&read(cert_path)?, &read(key_path)?, cert_path, key_path)
}

pub fn from_pem(cert_pem: &[u8], key_pem: &[u8], cert_path: &Path, key_path: &Path) -> Result<LoadedCert, CertError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::Parse { path: cert_path.into(), reason: e.to_string() })?;
    let leaf = chain.first().ok_or_else(|| CertError::NoCertificate { path: cert_path.into() })?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| CertError::Parse { path: cert_path.into(), reason: e.to_string() })?;
    let not_after = parsed.validity().not_after.timestamp();
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| CertError::Key { path: key_path.into(), reason: format!("no usable PEM private key ({e})") })?;
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| CertError::Key { path: key_path.into(), reason: e.to_string() })?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|e| CertError::Mismatch {
        cert: cert_path.into(),
        key: key_path.into(),
        reason: e.to_string(),
    })?;
    Ok(LoadedCert { key: Arc::new(certified), not_after })
}

/// Serves whatever pair is current; empty until the first successful load.
#[derive(Debug, Default)]
pub struct CertResolver {
    current: ArcSwapOption<CertifiedKey>,
}

impl CertResolver {
    pub fn install(&self, key: Arc<CertifiedKey>) {
        self.current.store(Some(key));
    }

    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.load_full()
    }
}

/// TLS 1.2 and 1.3 with ring, ALPN h2 and http/1.1, certificates from `resolver`.
pub fn server_config(resolver: Arc<CertResolver>) -> rustls::ServerConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    #[test]
    fn loads_a_matching_pair_with_its_expiry() {
        let (cert, key) = pair("a.example");
        let loaded = from_pem(cert.as_bytes(), key.as_bytes(), Path::new("c"), Path::new("k")).unwrap();
        assert!(loaded.not_after > 1_700_000_000);
    }

    #[test]
    fn rejects_mismatched_half_written_and_garbage_pairs() {
        let (cert_a, _) = pair("a.example");
        let (_, key_b) = pair("b.example");
        let err = from_pem(cert_a.as_bytes(), key_b.as_bytes(), Path::new("c"), Path::new("k")).unwrap_err();
        assert!(matches!(err, CertError::Mismatch { .. }), "{err}");
        let half = &cert_a[..cert_a.len() / 2];
        assert!(from_pem(half.as_bytes(), key_b.as_bytes(), Path::new("c"), Path::new("k")).is_err());
        let err = from_pem(b"", key_b.as_bytes(), Path::new("c"), Path::new("k")).unwrap_err();
        assert!(matches!(err, CertError::NoCertificate { .. }), "{err}");
        let err = from_pem(cert_a.as_bytes(), b"garbage", Path::new("c"), Path::new("k")).unwrap_err();
        assert!(matches!(err, CertError::Key { .. }), "{err}");
    }
}
