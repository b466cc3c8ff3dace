//! A throwaway Kubernetes control plane for the end-to-end tests: etcd, kube-apiserver and
//! kube-controller-manager on loopback, with generated certificates and an admin kubeconfig, so
//! Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and CronJobs create their pods for
//! real (they stay Pending: there is no kubelet). Everything it starts and writes is removed when
//! it is dropped, on failure, and on Ctrl-C.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

use crate::tools;

pub struct ControlPlane {
    pub kubeconfig: PathBuf,
    dir: PathBuf,
    children: Arc<Mutex<Vec<Child>>>,
    server: String,
    admin: Option<ureq::Agent>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct Pki {
    ca_pem: String,
    serving: (String, String),
    admin: (String, String),
    /// kube-controller-manager's own client identity, bound by the apiserver's bootstrap RBAC.
    controller_manager: (String, String),
    /// Signs service-account tokens (private) and verifies them (public).
    service_account: (String, String),
}

fn pki() -> anyhow::Result<Pki> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "proxy-injector e2e CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_pem = ca.self_signed(&ca_key)?.pem();
    let issuer = Issuer::new(ca, ca_key);

    let serving_key = KeyPair::generate()?;
    let mut serving = CertificateParams::new(vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        "kubernetes.default.svc".to_string(),
    ])?;
    serving.distinguished_name.push(DnType::CommonName, "kube-apiserver");
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_pem = serving.signed_by(&serving_key, &issuer)?.pem();

    let admin_key = KeyPair::generate()?;
    let mut admin = CertificateParams::new(Vec::<String>::new())?;
    admin.distinguished_name.push(DnType::CommonName, "e2e-admin");
    admin.distinguished_name.push(DnType::OrganizationName, "system:masters");
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let admin_pem = admin.signed_by(&admin_key, &issuer)?.pem();

    let manager_key = KeyPair::generate()?;
    let mut manager = CertificateParams::new(Vec::<String>::new())?;
    manager.distinguished_name.push(DnType::CommonName, "system:kube-controller-manager");
    manager.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let manager_pem = manager.signed_by(&manager_key, &issuer)?.pem();

    Ok(Pki {
        ca_pem,
        serving: (serving_pem, serving_key.serialize_pem()),
        admin: (admin_pem, admin_key.serialize_pem()),
        controller_manager: (manager_pem, manager_key.serialize_pem()),
        service_account: {
            let key = KeyPair::generate()?;
            (key.serialize_pem(), key.public_key_pem())
        },
    })
}

fn base64(data: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

impl ControlPlane {
    pub fn start() -> anyhow::Result<ControlPlane> {
        let etcd_bin = tools::etcd()?;
        let apiserver_bin = tools::kube_apiserver()?;
        let controller_manager_bin = tools::kube_controller_manager()?;
        let dir = std::env::temp_dir().join(format!("proxy-injector-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let children = Arc::new(Mutex::new(Vec::new()));
        let mut plane = ControlPlane {
            kubeconfig: dir.join("kubeconfig"),
            dir: dir.clone(),
            children: children.clone(),
            server: String::new(),
            admin: None,
        };
        {
            let (children, dir) = (children.clone(), dir.clone());
            // A second Ctrl-C handler cannot be installed; the first run's handler suffices.
            let _ = ctrlc::set_handler(move || {
                stop(&children, &dir);
                std::process::exit(130);
            });
        }

        let pki = pki()?;
        let write = |name: &str, text: &str| -> anyhow::Result<PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, text)?;
            Ok(path)
        };
        let ca = write("ca.crt", &pki.ca_pem)?;
        let serving_cert = write("apiserver.crt", &pki.serving.0)?;
        let serving_key = write("apiserver.key", &pki.serving.1)?;
        let sa_key = write("service-account.key", &pki.service_account.0)?;
        let sa_public = write("service-account.pub", &pki.service_account.1)?;

        let (etcd_port, peer_port, api_port) = (free_port()?, free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        plane.spawn(
            "etcd",
            Command::new(&etcd_bin).args([
                "--name=e2e",
                &format!("--data-dir={}", dir.join("etcd").display()),
                &format!("--listen-client-urls={etcd_url}"),
                &format!("--advertise-client-urls={etcd_url}"),
                &format!("--listen-peer-urls={peer_url}"),
                &format!("--initial-advertise-peer-urls={peer_url}"),
                &format!("--initial-cluster=e2e={peer_url}"),
                "--unsafe-no-fsync",
            ]),
        )?;
        plane.spawn(
            "kube-apiserver",
            Command::new(&apiserver_bin).args([
                &format!("--etcd-servers={etcd_url}"),
                &format!("--secure-port={api_port}"),
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                &format!("--cert-dir={}", dir.join("apiserver-certs").display()),
                &format!("--tls-cert-file={}", serving_cert.display()),
                &format!("--tls-private-key-file={}", serving_key.display()),
                &format!("--client-ca-file={}", ca.display()),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                &format!("--service-account-key-file={}", sa_public.display()),
                &format!("--service-account-signing-key-file={}", sa_key.display()),
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
            ]),
        )?;

        let server = format!("https://127.0.0.1:{api_port}");
        let kubeconfig_for = |user: &str, (cert, key): &(String, String)| {
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\n\
                 contexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: {user}\ncurrent-context: e2e\nusers:\n- name: {user}\n  user:\n\
                 \x20   client-certificate-data: {}\n    client-key-data: {}\n",
                base64(&pki.ca_pem),
                base64(cert),
                base64(key)
            )
        };
        std::fs::write(&plane.kubeconfig, kubeconfig_for("admin", &pki.admin))?;
        let manager_kubeconfig =
            write("controller-manager.kubeconfig", &kubeconfig_for("controller-manager", &pki.controller_manager))?;
        let admin = admin_agent(&pki)?;
        plane.wait_ready(&server, &admin)?;
        plane.spawn(
            "kube-controller-manager",
            Command::new(&controller_manager_bin).args([
                &format!("--kubeconfig={}", manager_kubeconfig.display()),
                &format!("--authentication-kubeconfig={}", manager_kubeconfig.display()),
                &format!("--authorization-kubeconfig={}", manager_kubeconfig.display()),
                "--bind-address=127.0.0.1",
                &format!("--secure-port={}", free_port()?),
                &format!("--cert-dir={}", dir.join("controller-manager-certs").display()),
                &format!("--service-account-private-key-file={}", sa_key.display()),
                &format!("--root-ca-file={}", ca.display()),
                // Each controller acts as its own ServiceAccount, as in a real cluster: the
                // bootstrap RBAC grants the controllers, not the manager, their rights.
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                // Tests create many objects at once; the defaults (20 QPS) would make them wait.
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--concurrent-deployment-syncs=10",
                "--concurrent-replicaset-syncs=10",
            ]),
        )?;
        plane.wait_for_controllers(&server, &admin)?;
        plane.server = server;
        plane.admin = Some(admin);
        Ok(plane)
    }

    /// Creates an object as the admin user (`path` is the collection, e.g. `/api/v1/namespaces`)
    /// and returns it as stored.
    pub fn create(&self, path: &str, object: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let agent = self.admin.as_ref().context("the control plane is not started")?;
        let mut response = agent
            .post(&format!("{}{path}", self.server))
            .header("content-type", "application/json")
            .send(object.to_string().as_bytes())?;
        let body = response.body_mut().read_to_string()?;
        if !response.status().is_success() {
            bail!("POST {path}: {} {body}", response.status());
        }
        Ok(serde_json::from_str(&body)?)
    }

    fn spawn(&self, name: &str, command: &mut Command) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log")))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        self.children.lock().expect("no panics while holding the lock").push(child);
        Ok(())
    }

    /// Waits for `/readyz`, failing early (with the logs) if a process exits.
    fn wait_ready(&self, server: &str, agent: &ureq::Agent) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Ok(response) = agent.get(&format!("{server}/readyz")).call()
                && response.status() == 200
            {
                eprintln!("xtask: control plane ready in {:.1} s", started.elapsed().as_secs_f64());
                return Ok(());
            }
            for (index, child) in self.children.lock().expect("lock").iter_mut().enumerate() {
                if let Some(status) = child.try_wait()? {
                    let name = ["etcd", "kube-apiserver"][index.min(1)];
                    bail!("{name} exited ({status}) before the control plane was ready:\n{}", self.log_tail(name));
                }
            }
            if started.elapsed() > Duration::from_secs(120) {
                bail!("kube-apiserver not ready after 120 s:\n{}", self.log_tail("kube-apiserver"));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until the controllers act: the `default` ServiceAccount of `default` exists.
    fn wait_for_controllers(&self, server: &str, agent: &ureq::Agent) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let url = format!("{server}/api/v1/namespaces/default/serviceaccounts/default");
            if let Ok(response) = agent.get(&url).call()
                && response.status() == 200
            {
                eprintln!("xtask: kube-controller-manager acting after {:.1} s", started.elapsed().as_secs_f64());
                return Ok(());
            }
            if let Some(status) =
                self.children.lock().expect("lock").last_mut().map(Child::try_wait).transpose()?.flatten()
            {
                bail!("kube-controller-manager exited ({status}):\n{}", self.log_tail("kube-controller-manager"));
            }
            if started.elapsed() > Duration::from_secs(120) {
                bail!("kube-controller-manager not acting after 120 s:\n{}", self.log_tail("kube-controller-manager"));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// An HTTPS client authenticated as the cluster admin.
fn admin_agent(pki: &Pki) -> anyhow::Result<ureq::Agent> {
    let ca = ureq::tls::Certificate::from_pem(pki.ca_pem.as_bytes())?.to_owned();
    let client_cert = ureq::tls::Certificate::from_pem(pki.admin.0.as_bytes())?.to_owned();
    let client_key = ureq::tls::PrivateKey::from_pem(pki.admin.1.as_bytes())?.to_owned();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![ca])))
        .client_cert(Some(ureq::tls::ClientCert::new_with_certs(&[client_cert], client_key)))
        .build();
    Ok(ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into())
}

fn stop(children: &Mutex<Vec<Child>>, dir: &Path) {
    if let Ok(mut children) = children.lock() {
        // The apiserver first, so it does not log etcd's disappearance.
        for child in children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
        children.clear();
    }
    let _ = std::fs::remove_dir_all(dir);
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        stop(&self.children, &self.dir);
    }
}
