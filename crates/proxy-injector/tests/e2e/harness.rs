//! The end-to-end harness: a real kube-apiserver (started by `cargo xtask e2e`), the real
//! `proxy-injector webhook` process, and per-test namespaces and webhook registrations so tests
//! run in parallel without seeing each other.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::{Value, json};
use webhook::ErrorPolicy;
use webhook::registration::{Endpoint, Registration};

pub const TEST_LABEL: &str = "e2e.proxy-injector/test";

pub fn kubeconfig() -> PathBuf {
    match std::env::var_os("PROXY_INJECTOR_E2E_KUBECONFIG") {
        Some(path) => PathBuf::from(path),
        None => panic!(
            "the end-to-end suite needs a Kubernetes API server: run it with `cargo xtask e2e` (which starts etcd and \
             kube-apiserver), or set PROXY_INJECTOR_E2E_KUBECONFIG to the kubeconfig of a disposable cluster"
        ),
    }
}

pub async fn client() -> kube::Client {
    let file = kube::config::Kubeconfig::read_from(kubeconfig()).expect("readable kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default()).await.unwrap();
    kube::Client::try_from(config).unwrap()
}

/// The binary under test: the one this suite built, or `PROXY_INJECTOR_E2E_BINARY` (benchmarks
/// run the release build).
pub fn binary() -> &'static str {
    static BINARY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        std::env::var("PROXY_INJECTOR_E2E_BINARY").unwrap_or_else(|_| env!("CARGO_BIN_EXE_proxy-injector").into())
    });
    &BINARY
}

pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// The example trust anchor, as the webhook reads it from its trust-roots file.
pub fn trust_anchors() -> String {
    let text = std::fs::read_to_string(examples().join("values.yaml")).unwrap();
    let values = manifest::parse_stream(&text).unwrap().remove(0).value;
    values["identityTrustAnchorsPEM"].as_str().unwrap().to_string()
}

/// A CA, and serving certificates it signs for 127.0.0.1.
pub struct Pki {
    pub ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn new() -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "proxy-injector e2e webhook CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_pem = params.self_signed(&key).unwrap().pem();
        Pki { ca_pem, issuer: Issuer::new(params, key) }
    }

    /// A serving certificate valid for `days` days (different validity tells rotations apart).
    pub fn serving(&self, days: i64) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, "proxy-injector e2e webhook");
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
        (params.signed_by(&key, &self.issuer).unwrap().pem(), key.serialize_pem())
    }
}

/// A directory laid out like a Kubernetes Secret or ConfigMap volume: each file is a symlink
/// through `..data`, which points at a timestamped directory and is swapped atomically.
pub struct ProjectedDir {
    pub path: PathBuf,
    generation: std::cell::Cell<u32>,
}

impl ProjectedDir {
    pub fn new(path: PathBuf, files: &[(&str, &str)]) -> ProjectedDir {
        std::fs::create_dir_all(&path).unwrap();
        let dir = ProjectedDir { path, generation: std::cell::Cell::new(0) };
        dir.update(files);
        for (name, _) in files {
            std::os::unix::fs::symlink(format!("..data/{name}"), dir.path.join(name)).unwrap();
        }
        dir
    }

    /// Writes a new generation and swaps `..data` to it, as the kubelet does.
    pub fn update(&self, files: &[(&str, &str)]) {
        let generation = self.generation.get() + 1;
        self.generation.set(generation);
        let target = format!("..gen_{generation}");
        std::fs::create_dir_all(self.path.join(&target)).unwrap();
        for (name, content) in files {
            std::fs::write(self.path.join(&target).join(name), content).unwrap();
        }
        let tmp = self.path.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp).unwrap();
        std::fs::rename(&tmp, self.path.join("..data")).unwrap();
    }
}

pub struct WebhookOptions {
    pub values: Value,
    /// The values and trust roots as files hold them, instead of `values` and the test anchors.
    pub config_files: Option<(String, String)>,
    pub on_error: &'static str,
    pub max_in_flight: usize,
    /// Listen on this port instead of a free one.
    pub port: Option<u16>,
    /// Serve this certificate and key (PEM) instead of one from the process's own CA.
    pub tls: Option<(String, String)>,
    /// More `webhook` flags.
    pub extra_args: Vec<String>,
    /// Start with this soft and hard open-file limit (through util-linux's `prlimit`).
    pub open_files: Option<(u64, u64)>,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            values: json!({}),
            config_files: None,
            on_error: "admit",
            max_in_flight: 4096,
            port: None,
            tls: None,
            extra_args: Vec::new(),
            open_files: None,
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `proxy-injector webhook`, killed on drop.
pub struct WebhookProcess {
    child: Child,
    _dir: tempfile::TempDir,
    pub port: u16,
    pub admin_port: u16,
    pub pki: Pki,
    pub tls: ProjectedDir,
    pub config: ProjectedDir,
    log: PathBuf,
}

impl WebhookProcess {
    pub fn start(options: WebhookOptions) -> WebhookProcess {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new();
        let (cert, key) = options.tls.clone().unwrap_or_else(|| pki.serving(30));
        let tls = ProjectedDir::new(dir.path().join("tls"), &[("tls.crt", &cert), ("tls.key", &key)]);
        let (values, anchors) = options
            .config_files
            .clone()
            .unwrap_or_else(|| (serde_json::to_string(&options.values).unwrap(), trust_anchors()));
        let config = ProjectedDir::new(dir.path().join("config"), &[("values", &values), ("ca-bundle.crt", &anchors)]);
        let (port, admin_port) = (options.port.unwrap_or_else(free_port), free_port());
        let log = dir.path().join("webhook.log");
        let mut command = match options.open_files {
            Some((soft, hard)) => {
                let mut prlimit = Command::new("prlimit");
                prlimit.arg(format!("--nofile={soft}:{hard}")).arg("--").arg(binary());
                prlimit
            }
            None => Command::new(binary()),
        };
        let child = command
            .args([
                "webhook",
                "--addr",
                &format!("127.0.0.1:{port}"),
                "--admin-addr",
                &format!("127.0.0.1:{admin_port}"),
            ])
            .arg("--values")
            .arg(config.path.join("values"))
            .arg("--trust-roots")
            .arg(config.path.join("ca-bundle.crt"))
            .arg("--tls-cert")
            .arg(tls.path.join("tls.crt"))
            .arg("--tls-key")
            .arg(tls.path.join("tls.key"))
            .arg("--kubeconfig")
            .arg(kubeconfig())
            .args(["--on-error", options.on_error, "--max-in-flight", &options.max_in_flight.to_string()])
            .args(["--reload-interval", "100ms", "--log-format", "json"])
            // As the image sets them: the allocator returns freed memory at once.
            .env("MIMALLOC_PURGE_DELAY", "0")
            .env("MIMALLOC_PURGE_DECOMMITS", "1")
            .args(&options.extra_args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the proxy-injector binary starts");
        let mut process = WebhookProcess { child, _dir: dir, port, admin_port, pki, tls, config, log };
        process.wait_ready();
        process
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Ok((200, _)) = self.admin_get("/ready") {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the webhook exited ({status}):\n{}", self.logs());
            }
            assert!(started.elapsed() < Duration::from_secs(60), "webhook not ready after 60 s:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The process's peak resident memory (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        self.status_bytes("VmHWM:")
    }

    /// The process's resident memory now (VmRSS), in bytes.
    pub fn rss(&self) -> u64 {
        self.status_bytes("VmRSS:")
    }

    fn status_bytes(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line =
            status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("{field} in /proc/PID/status"));
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A plain HTTP GET on the admin listener: (status, body).
    pub fn admin_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.admin_port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        Ok((status, body))
    }

    /// The value of one metric sample, e.g. `proxy_injector_config_reloads_total{source="certificate"}`.
    pub fn metric(&self, sample: &str) -> f64 {
        let (_, body) = self.admin_get("/metrics").unwrap();
        body.lines().find_map(|line| line.strip_prefix(sample).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.port)
    }

    /// An HTTPS client that trusts only this webhook's CA.
    pub fn agent(&self) -> ureq::Agent {
        let ca = ureq::tls::Certificate::from_pem(self.pki.ca_pem.as_bytes()).unwrap().to_owned();
        let tls =
            ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![ca]))).build();
        ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into()
    }

    pub fn rotate_certificate(&self, days: i64) {
        let (cert, key) = self.pki.serving(days);
        self.tls.update(&[("tls.crt", &cert), ("tls.key", &key)]);
    }

    pub fn set_values(&self, values: &Value) {
        let values = serde_json::to_string(values).unwrap();
        self.config.update(&[("values", &values), ("ca-bundle.crt", &trust_anchors())]);
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for WebhookProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn webhook_configurations(client: &kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration");
    Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk))
}

/// Limits every entry of a rendered registration to the namespaces labelled for `test`.
pub fn limit_to_test(configuration: &mut Value, test: &str) {
    for webhook in configuration["webhooks"].as_array_mut().expect("a registration has webhooks") {
        let expressions = webhook["namespaceSelector"]["matchExpressions"].as_array_mut().unwrap();
        expressions.push(json!({"key": TEST_LABEL, "operator": "In", "values": [test]}));
    }
}

/// Registers `url` the way `install` does, limited to namespaces labelled for this test.
pub async fn register(client: &kube::Client, test: &str, url: &str, ca_pem: &str, error_policy: ErrorPolicy) {
    register_with(client, test, url, ca_pem, error_policy, false).await
}

/// [`register`], with opted-out pods sent to the webhook as a `meshRequired` rule needs.
pub async fn register_with(
    client: &kube::Client,
    test: &str,
    url: &str,
    ca_pem: &str,
    error_policy: ErrorPolicy,
    sees_opted_out_pods: bool,
) {
    let registration = Registration {
        control_plane_ns: "linkerd".into(),
        endpoint: Endpoint::Url(url.into()),
        ca_bundle: Some(ca_pem.into()),
        error_policy,
        timeout_seconds: 10,
        sees_opted_out_pods,
    };
    let mut configuration = registration.render();
    configuration["metadata"]["name"] = json!(format!("{}-{test}", webhook::registration::CONFIGURATION_NAME));
    limit_to_test(&mut configuration, test);
    let object: DynamicObject = serde_json::from_value(configuration).unwrap();
    let name = object.metadata.name.clone().unwrap();
    webhook_configurations(client)
        .patch(&name, &PatchParams::apply("e2e").force(), &Patch::Apply(&object))
        .await
        .expect("the webhook configuration is accepted");
}

/// A namespace for one test (labelled so only that test's webhook sees it), returned once the
/// real service-account controller has given it its `default` ServiceAccount (pods need it).
pub async fn namespace(client: &kube::Client, test: &str, name: &str, annotations: Value, labels: Value) {
    let mut labels = labels;
    labels[TEST_LABEL] = json!(test);
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name, "annotations": annotations, "labels": labels}}))
            .unwrap();
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.expect("namespace created");
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), name);
    let started = Instant::now();
    while accounts.get_opt("default").await.unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(60), "no default ServiceAccount in {name} after 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn pod_json(name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": annotations},
        "spec": {"automountServiceAccountToken": false,
            "containers": [{"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 80, "name": "http"}]}]}})
}

pub async fn create_pod(client: &kube::Client, namespace: &str, pod: &Value) -> Result<Pod, kube::Error> {
    let pod: Pod = serde_json::from_value(pod.clone()).unwrap();
    Api::<Pod>::namespaced(client.clone(), namespace).create(&PostParams::default(), &pod).await
}

/// The pods matching `selector` once the controllers have created at least `count` of them.
pub async fn wait_for_pods(client: &kube::Client, namespace: &str, selector: &str, count: usize) -> Vec<Pod> {
    let api = Api::<Pod>::namespaced(client.clone(), namespace);
    let started = Instant::now();
    loop {
        let pods = api.list(&kube::api::ListParams::default().labels(selector)).await.unwrap().items;
        if pods.len() >= count {
            return pods;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{} of {count} pods {selector} in {namespace} after 90 s",
            pods.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn is_injected(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref().unwrap();
    spec.containers.iter().chain(spec.init_containers.iter().flatten()).any(|c| c.name == "linkerd-proxy")
}

/// Waits until the apiserver calls the newly registered webhook: dry-run pods in an injecting
/// namespace come back injected.
pub async fn wait_until_active(client: &kube::Client, injecting_namespace: &str) {
    let opted_in = json!({"linkerd.io/inject": "enabled"});
    wait_until_injected(client, injecting_namespace, opted_in, "the webhook registration never took effect").await;
}

/// Waits until a dry-run pod with `annotations` in `namespace` comes back injected. The webhook
/// reads namespaces from its watch cache, as the reference does, so a namespace annotated a moment
/// ago may not be seen yet by the next admission.
pub async fn wait_until_injected(client: &kube::Client, namespace: &str, annotations: Value, failure: &str) {
    let api = Api::<Pod>::namespaced(client.clone(), namespace);
    let probe: Pod = serde_json::from_value(pod_json("activation-probe", annotations)).unwrap();
    let started = Instant::now();
    loop {
        if let Ok(pod) = api.create(&PostParams { dry_run: true, ..PostParams::default() }, &probe).await
            && is_injected(&pod)
        {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{failure}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the apiserver answered a raw request: status, Warning headers, body.
pub struct Answer {
    pub status: u16,
    pub warnings: Vec<String>,
    pub body: Value,
}

pub async fn send(client: &kube::Client, method: &str, path: &str, content_type: &str, body: &Value) -> Answer {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(serde_json::to_vec(body).unwrap())
        .unwrap();
    let response = client.send(request.map(kube::client::Body::from)).await.unwrap();
    let status = response.status().as_u16();
    let warnings = response.headers().get_all("warning").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    let bytes = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    Answer { status, warnings, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
}

pub async fn create(client: &kube::Client, path: &str, object: &Value) -> Answer {
    send(client, "POST", path, "application/json", object).await
}
