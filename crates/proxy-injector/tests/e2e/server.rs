//! The webhook process on its own: AdmissionReviews sent over real TLS by a client that trusts
//! only the generated CA. The namespace lookups go to the real apiserver.

use std::io::Write;
use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use crate::harness::*;

pub fn review(uid: &str, namespace: &str, object: Value) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "kind": {"group": "", "version": "v1", "kind": object["kind"]},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": namespace, "operation": "CREATE", "object": object, "dryRun": true}})
}

pub fn post(agent: &ureq::Agent, url: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut response =
        agent.post(url).header("content-type", "application/json").send(body).expect("the request is answered");
    (response.status().as_u16(), response.body_mut().read_to_vec().unwrap())
}

pub fn admit(webhook: &WebhookProcess, uid: &str, namespace: &str, object: &Value) -> Value {
    let (status, body) =
        post(&webhook.agent(), &webhook.url(), review(uid, namespace, object.clone()).to_string().as_bytes());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["response"]["uid"], uid);
    answer
}

/// Applies the response's patch to the object, as the apiserver would.
fn patched(object: &Value, answer: &Value) -> Value {
    let encoded = answer["response"]["patch"].as_str().expect("a patch");
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
    let patch: json_patch::Patch =
        serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()).unwrap();
    let mut result = object.clone();
    json_patch::patch(&mut result, &patch).expect("the patch applies to the request object");
    result
}

pub async fn server_namespace(test: &str) -> String {
    let client = client().await;
    let ns = format!("{test}-ns");
    namespace(&client, test, &ns, json!({"linkerd.io/inject": "enabled"}), json!({})).await;
    ns
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_v1_and_v1beta1_with_a_patch_that_makes_a_valid_pod() {
    let ns = server_namespace("w01").await;
    let webhook = WebhookProcess::start(WebhookOptions::default());
    let pod = pod_json("web", json!({}));
    let answer = admit(&webhook, "uid-1", &ns, &pod);
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["response"]["allowed"], true);
    let result: Pod = serde_json::from_value(patched(&pod, &answer)).expect("the result is a valid Pod");
    assert!(is_injected(&result));

    let mut beta = review("uid-2", &ns, pod.clone());
    beta["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let (status, body) = post(&webhook.agent(), &format!("{}any/path", webhook.url()), beta.to_string().as_bytes());
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["apiVersion"], "admission.k8s.io/v1beta1");

    let metrics = webhook.admin_get("/metrics").unwrap().1;
    assert!(
        metrics.contains(
            "proxy_inject_admission_requests_total{owner_kind=\"pod\",namespace=\"w01-ns\",annotation_at=\"namespace\""
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("proxy_injector_admission_duration_seconds_bucket{le=\"0.0001\",outcome=\"inject\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("proxy_injector_certificate_expiry_timestamp_seconds "), "{metrics}");
    assert_eq!(webhook.admin_get("/ping").unwrap(), (200, "pong\n".into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_that_do_not_trust_the_ca_cannot_connect() {
    let webhook = WebhookProcess::start(WebhookOptions::default());
    let other = Pki::new();
    let ca = ureq::tls::Certificate::from_pem(other.ca_pem.as_bytes()).unwrap().to_owned();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(vec![ca])))
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder().tls_config(tls).build().into();
    assert!(agent.post(&webhook.url()).send(b"{}" as &[u8]).is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_bodies_get_clear_400s_and_never_crash_the_server() {
    let ns = server_namespace("w02").await;
    let webhook = WebhookProcess::start(WebhookOptions::default());
    let agent = webhook.agent();
    let catalogue: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("empty", b"".to_vec(), 400, "empty request body"),
        ("not json", b"<xml/>".to_vec(), 400, "failed to decode"),
        ("truncated", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionRe"#.to_vec(), 400, "failed to decode"),
        ("a list", b"[1,2]".to_vec(), 400, "failed to decode"),
        (
            "wrong version",
            br#"{"apiVersion":"v1","kind":"AdmissionReview","request":{"uid":"u"}}"#.to_vec(),
            400,
            "unsupported apiVersion",
        ),
        (
            "wrong kind",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod"}"#.to_vec(),
            400,
            "expected AdmissionReview",
        ),
        (
            "no request",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
            400,
            "no \"request\"",
        ),
        (
            "empty uid",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":""}}"#.to_vec(),
            400,
            "empty request.uid",
        ),
        (
            "uid not a string",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":[]}}"#.to_vec(),
            400,
            "failed to decode",
        ),
        ("invalid utf-8", vec![0xff, 0xfe, b'{'], 400, "failed to decode"),
        (
            "deep nesting",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
            400,
            "failed to decode",
        ),
    ];
    for (name, body, status, reason) in catalogue {
        let (got, text) = post(&agent, &webhook.url(), &body);
        let text = String::from_utf8_lossy(&text);
        assert_eq!(got, status, "{name}: {text}");
        assert!(text.contains(reason), "{name}: {text}");
    }
    // A body announced larger than the maximum is refused before any of it is read.
    let mut announced = stalled_request_of(&webhook, 10 * 1024 * 1024 + 1);
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut announced, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 413") && answer.contains("larger than"), "{answer}");
    // Valid reviews of odd objects are answered, not rejected.
    let odd = [
        json!({"kind": "Pod"}),
        json!({"kind": "Pod", "spec": {"containers": "nope"}}),
        json!({"kind": "ConfigMap"}),
        json!({"kind": "Pod", "metadata": []}),
    ];
    for (i, object) in odd.into_iter().enumerate() {
        let answer = admit(&webhook, &format!("odd-{i}"), &ns, &object);
        assert_eq!(answer["response"]["allowed"], true, "{answer}");
    }
    assert_eq!(webhook.admin_get("/ping").unwrap().0, 200, "still serving:\n{}", webhook.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_body_holds_no_slot_but_its_bytes_count_against_the_budget() {
    let ns = server_namespace("w03").await;
    let webhook = WebhookProcess::start(WebhookOptions {
        max_in_flight: 1,
        extra_args: vec!["--body-budget".into(), "16Ki".into()],
        ..WebhookOptions::default()
    });
    // A request whose body never arrives does not take the only slot.
    let mut stalled = stalled_request_of(&webhook, 100_000);
    let body = review("u", &ns, pod_json("p", json!({}))).to_string();
    let (status, answer) = post(&webhook.agent(), &webhook.url(), body.as_bytes());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    // Bytes held by bodies still arriving count: past the budget, refused at once.
    write!(stalled, "{}", " ".repeat(16_000)).unwrap();
    stalled.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let (status, _) = post(&webhook.agent(), &webhook.url(), body.as_bytes());
    assert_eq!(status, 503);
    assert!(started.elapsed() < Duration::from_secs(1), "refused at once, not after a timeout");
    assert_eq!(webhook.metric("proxy_injector_requests_rejected_total{reason=\"memory_budget\"}"), 1.0);
    drop(stalled);
}

/// A TLS connection that sent headers announcing a body it never sends.
pub fn stalled_request(webhook: &WebhookProcess) -> impl Write {
    stalled_request_of(webhook, 1000)
}

/// The same, announcing `declared` bytes.
pub fn stalled_request_of(webhook: &WebhookProcess, declared: usize) -> impl Write + std::io::Read {
    use rustls_pki_types::pem::PemObject;
    use std::sync::Arc;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(webhook.pki.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connection = rustls::ClientConnection::new(Arc::new(config), "127.0.0.1".try_into().unwrap()).unwrap();
    let socket = std::net::TcpStream::connect(("127.0.0.1", webhook.port)).unwrap();
    let mut stream = rustls::StreamOwned::new(connection, socket);
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n{{"
    )
    .unwrap();
    stream.flush().unwrap();
    // Let the server read the headers and take the slot.
    std::thread::sleep(Duration::from_millis(300));
    stream
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_and_configuration_rotate_under_traffic_without_a_failed_request() {
    let ns = server_namespace("w04").await;
    let webhook = WebhookProcess::start(WebhookOptions::default());
    let expiry_before = webhook.metric("proxy_injector_certificate_expiry_timestamp_seconds");
    let url = webhook.url();
    let pki_ca = webhook.pki.ca_pem.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let (stop, ns) = (stop.clone(), ns.clone());
        std::thread::spawn(move || {
            let ca = ureq::tls::Certificate::from_pem(pki_ca.as_bytes()).unwrap().to_owned();
            let (mut sent, mut failed, mut images) = (0, Vec::new(), std::collections::BTreeSet::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // A new agent per request: every request makes a fresh TLS handshake.
                let tls = ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(vec![ca.clone()])))
                    .build();
                let agent: ureq::Agent =
                    ureq::Agent::config_builder().tls_config(tls).http_status_as_error(false).build().into();
                let pod = pod_json("p", json!({}));
                match agent.post(&url).send(review(&format!("r{sent}"), &ns, pod.clone()).to_string().as_bytes()) {
                    Ok(mut response) if response.status() == 200 => {
                        let answer: Value =
                            serde_json::from_slice(&response.body_mut().read_to_vec().unwrap()).unwrap();
                        let result = patched(&pod, &answer);
                        let proxy = result["spec"]["initContainers"][1]["image"].as_str().unwrap().to_string();
                        images.insert(proxy.split(':').next().unwrap().to_string());
                    }
                    other => failed.push(format!("{other:?}")),
                }
                sent += 1;
            }
            (sent, failed, images)
        })
    };
    for round in 0..4 {
        std::thread::sleep(Duration::from_millis(400));
        webhook.rotate_certificate(40 + round);
        if round == 1 {
            webhook.set_values(&json!({"proxy": {"image": {"name": "registry.example/rotated-proxy"}}}));
        }
    }
    // A half-written certificate is rejected; the current one stays.
    std::thread::sleep(Duration::from_millis(400));
    webhook.tls.update(&[("tls.crt", "-----BEGIN CERTIFICATE-----\nMIIB"), ("tls.key", "garbage")]);
    std::thread::sleep(Duration::from_millis(600));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, failed, images) = sender.join().unwrap();
    assert!(sent > 50, "only {sent} requests sent");
    assert!(failed.is_empty(), "{} of {sent} failed: {:?}", failed.len(), &failed[..failed.len().min(3)]);
    assert!(images.contains("registry.example/rotated-proxy"), "the new values were used: {images:?}");
    let metrics = webhook.admin_get("/metrics").unwrap().1;
    assert_eq!(webhook.metric("proxy_injector_config_reloads_total{source=\"certificate\"}"), 5.0, "{metrics}");
    assert_eq!(webhook.metric("proxy_injector_config_reload_failures_total{source=\"certificate\"}"), 1.0);
    assert!(webhook.metric("proxy_injector_certificate_expiry_timestamp_seconds") > expiry_before);
    assert_eq!(webhook.admin_get("/ready").unwrap().0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_requests_finish() {
    let ns = server_namespace("w05").await;
    let mut webhook = WebhookProcess::start(WebhookOptions::default());
    assert_eq!(admit(&webhook, "before", &ns, &pod_json("p", json!({})))["response"]["allowed"], true);
    let status = webhook.terminate();
    assert!(status.success(), "exit status {status}:\n{}", webhook.logs());
    assert!(webhook.logs().contains("shutting down"), "{}", webhook.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn offers_http2_and_http1_over_tls_1_2_and_1_3() {
    use rustls_pki_types::pem::PemObject;
    use std::sync::Arc;
    let webhook = WebhookProcess::start(WebhookOptions::default());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(webhook.pki.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let cases: [(&[u8], &'static rustls::SupportedProtocolVersion); 3] =
        [(b"h2", &rustls::version::TLS13), (b"http/1.1", &rustls::version::TLS13), (b"h2", &rustls::version::TLS12)];
    for (protocol, version) in cases {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![protocol.to_vec()];
        let mut connection = rustls::ClientConnection::new(Arc::new(config), "127.0.0.1".try_into().unwrap()).unwrap();
        let mut socket = std::net::TcpStream::connect(("127.0.0.1", webhook.port)).unwrap();
        while connection.is_handshaking() {
            connection.complete_io(&mut socket).unwrap();
        }
        assert_eq!(connection.alpn_protocol(), Some(protocol));
        assert_eq!(connection.protocol_version(), Some(version.version));
    }
}
