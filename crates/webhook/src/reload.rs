//! Configuration files that change under a running webhook: the values, the trust roots and the
//! serving certificate. Kubernetes updates ConfigMap and Secret volumes by swapping a `..data`
//! symlink, so the files are re-read by path on every check rather than watched.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use governance::Policy;
use inject::Injector;
use inject::values::ValuesDocument;

use crate::certs::{self, CertResolver};
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct Paths {
    pub values: PathBuf,
    pub trust_roots: PathBuf,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
}

/// What the values file configures: the engine and the governance rules, swapped together so an
/// admission never sees one without the other.
pub struct Loaded {
    pub injector: Injector,
    pub policy: Policy,
}

/// Keeps the configuration and the certificate current, remembering what was loaded last.
pub struct Reloader {
    paths: Paths,
    control_plane_ns: String,
    loaded: Arc<ArcSwapOption<Loaded>>,
    certs: Arc<CertResolver>,
    metrics: Arc<Metrics>,
    config_seen: Option<Vec<u8>>,
    cert_seen: Option<Vec<u8>>,
}

impl Reloader {
    pub fn new(
        paths: Paths,
        control_plane_ns: String,
        loaded: Arc<ArcSwapOption<Loaded>>,
        certs: Arc<CertResolver>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Reloader { paths, control_plane_ns, loaded, certs, metrics, config_seen: None, cert_seen: None }
    }

    /// Re-reads every file; anything changed and valid replaces what is served. A change that does
    /// not load is logged and counted, and the previous version stays.
    pub fn check(&mut self) {
        self.check_config();
        self.check_certificate();
    }

    fn check_config(&mut self) {
        let read = |path: &PathBuf| std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()));
        let (values, roots) = match (read(&self.paths.values), read(&self.paths.trust_roots)) {
            (Ok(values), Ok(roots)) => (values, roots),
            (Err(e), _) | (_, Err(e)) => {
                if self.config_seen.is_some() || self.loaded.load().is_none() {
                    tracing::warn!(error = %e, "configuration not (re)loaded");
                }
                return;
            }
        };
        let mut fingerprint = values.clone();
        fingerprint.push(0);
        fingerprint.extend_from_slice(&roots);
        if self.config_seen.as_ref() == Some(&fingerprint) {
            return;
        }
        match build(&values, &roots, &self.control_plane_ns) {
            Ok(loaded) => {
                self.loaded.store(Some(Arc::new(loaded)));
                self.metrics.reloaded("config", true);
                tracing::info!(values = %self.paths.values.display(), "configuration loaded");
            }
            Err(error) => {
                self.metrics.reloaded("config", false);
                tracing::error!(%error, "configuration rejected; the previous one stays in use");
            }
        }
        self.config_seen = Some(fingerprint);
    }

    fn check_certificate(&mut self) {
        let (cert, key) = (&self.paths.tls_cert, &self.paths.tls_key);
        let fingerprint = match (std::fs::read(cert), std::fs::read(key)) {
            (Ok(mut c), Ok(k)) => {
                c.extend_from_slice(&k);
                c
            }
            _ => {
                if !self.certs.is_loaded() {
                    tracing::warn!(cert = %cert.display(), key = %key.display(), "serving certificate not readable yet");
                }
                return;
            }
        };
        if self.cert_seen.as_ref() == Some(&fingerprint) {
            return;
        }
        match certs::load(cert, key) {
            Ok(loaded) => {
                self.certs.install(loaded.key);
                self.metrics.certificate_expiry.set(loaded.not_after);
                self.metrics.reloaded("certificate", true);
                tracing::info!(cert = %cert.display(), not_after = loaded.not_after, "serving certificate loaded");
            }
            Err(error) => {
                self.metrics.reloaded("certificate", false);
                tracing::error!(%error, "serving certificate rejected; the previous one stays in use");
            }
        }
        self.cert_seen = Some(fingerprint);
    }
}

/// The webhook's configuration: the values file, with the trust roots file as the trust anchors.
pub fn build(values: &[u8], trust_roots: &[u8], control_plane_ns: &str) -> Result<Loaded, String> {
    let values = std::str::from_utf8(values).map_err(|_| "the values file is not UTF-8".to_string())?;
    let roots = std::str::from_utf8(trust_roots).map_err(|_| "the trust roots file is not UTF-8".to_string())?;
    let parsed = manifest::parse_stream(values).map_err(|e| format!("values file: {e}"))?;
    let mut document = parsed.into_iter().next().map(|d| d.value).unwrap_or(serde_json::Value::Null);
    if document.is_null() {
        document = serde_json::json!({});
    }
    if let Some(map) = document.as_object_mut() {
        map.insert("identityTrustAnchorsPEM".into(), roots.into());
    }
    let values = ValuesDocument::from_value(document).map_err(|e| e.to_string())?;
    let policy = Policy::from_values(&values.values).map_err(|e| e.to_string())?;
    let injector = Injector::new(values, control_plane_ns).map_err(|e| e.to_string())?;
    Ok(Loaded { injector, policy })
}
