//! A second mutating webhook, called after ours (its configuration sorts later), that appends a
//! container: what other injectors and policy engines do to pods in real clusters.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

use crate::harness::{Pki, TEST_LABEL};

pub struct LateWebhook {
    port: u16,
    ca_pem: String,
    calls: Arc<AtomicUsize>,
}

impl LateWebhook {
    pub fn start() -> LateWebhook {
        let pki = Pki::new();
        let (cert, key) = pki.serving(1);
        let chain =
            rustls_pki_types::CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (config, counter) = (config.clone(), counter.clone());
                std::thread::spawn(move || {
                    let connection = rustls::ServerConnection::new(config).unwrap();
                    let mut tls = rustls::StreamOwned::new(connection, stream);
                    while serve_one(&mut tls, &counter).is_some() {}
                });
            }
        });
        LateWebhook { port, ca_pem: pki.ca_pem, calls }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }

    pub async fn register(&self, client: &kube::Client, test: &str) {
        let configuration = json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": format!("zz-late-sidecar-{test}")},
            "webhooks": [{
                "name": "late-sidecar.e2e.proxy-injector",
                "namespaceSelector": {"matchExpressions": [{"key": TEST_LABEL, "operator": "In", "values": [test]}]},
                "clientConfig": {"url": format!("https://127.0.0.1:{}/", self.port),
                    "caBundle": base64::engine::general_purpose::STANDARD.encode(&self.ca_pem)},
                "failurePolicy": "Fail",
                "admissionReviewVersions": ["v1"],
                "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
                "sideEffects": "None",
                "timeoutSeconds": 10,
            }],
        });
        let gvk = GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration");
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk));
        let object: DynamicObject = serde_json::from_value(configuration).unwrap();
        let name = object.metadata.name.clone().unwrap();
        api.patch(&name, &PatchParams::apply("e2e").force(), &Patch::Apply(&object)).await.unwrap();
    }
}

/// Reads one HTTP/1.1 request and answers it; `None` when the connection is done.
fn serve_one<S: Read + Write>(stream: &mut S, calls: &AtomicUsize) -> Option<()> {
    // The apiserver sends one request at a time per connection, so nothing is read ahead.
    let body = {
        let mut reader = BufReader::new(&mut *stream);
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if line == "\r\n" {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().ok()?;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        body
    };
    calls.fetch_add(1, Ordering::Relaxed);
    let review: Value = serde_json::from_slice(&body).ok()?;
    let request = &review["request"];
    let has_it = request["object"]["spec"]["containers"].as_array()?.iter().any(|c| c["name"] == "late-sidecar");
    let mut response = json!({"uid": request["uid"], "allowed": true});
    if !has_it {
        let patch =
            json!([{"op": "add", "path": "/spec/containers/-", "value": {"name": "late-sidecar", "image": "busybox"}}]);
        response["patchType"] = json!("JSONPatch");
        response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(patch.to_string()));
    }
    let answer =
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}).to_string();
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
        answer.len()
    )
    .ok()?;
    stream.flush().ok()
}
