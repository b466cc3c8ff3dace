//! The webhook under load: realistic AdmissionReviews over keep-alive TLS, against the release
//! binary in inject mode and in `--no-op` mode (the floor), with a real control plane behind it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::{Value, json};

use crate::controlplane::ControlPlane;

const CONNECTIONS: usize = 16;
const RUN: Duration = Duration::from_secs(10);
const BURST: usize = 3000;
/// mimalloc returns freed pages to the OS at once, so RSS comes back down after a burst.
const ALLOCATOR_ENV: [(&str, &str); 2] = [("MIMALLOC_PURGE_DELAY", "0"), ("MIMALLOC_PURGE_DECOMMITS", "1")];

struct Webhook {
    child: Child,
    url: String,
    ca_pem: String,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_webhook(
    root: &Path,
    dir: &Path,
    plane: &ControlPlane,
    no_op: bool,
    extra_args: &[&str],
) -> anyhow::Result<Webhook> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca_pem = ca.self_signed(&ca_key)?.pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])?.signed_by(&key, &issuer)?.pem();
    std::fs::write(dir.join("tls.crt"), cert)?;
    std::fs::write(dir.join("tls.key"), key.serialize_pem())?;
    let values = std::fs::read_to_string(root.join("examples/values.yaml"))?;
    let anchors: String = values
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .take_while(|l| !l.is_empty() && !l.ends_with(':'))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.join("values"), "{}\n")?;
    std::fs::write(dir.join("ca-bundle.crt"), anchors)?;
    let (port, admin) = (free_port()?, free_port()?);
    let mut command = Command::new(root.join("target/release/proxy-injector"));
    command
        .args(["webhook", "--addr", &format!("127.0.0.1:{port}"), "--admin-addr", &format!("127.0.0.1:{admin}")])
        .arg("--values")
        .arg(dir.join("values"))
        .arg("--trust-roots")
        .arg(dir.join("ca-bundle.crt"))
        .arg("--tls-cert")
        .arg(dir.join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.join("tls.key"))
        .arg("--kubeconfig")
        .arg(&plane.kubeconfig)
        .args(["--log-format", "json"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(if no_op { "no-op.log" } else { "inject.log" }))?);
    if no_op {
        command.arg("--no-op");
    }
    command.args(extra_args);
    // The allocator's options as the installed Deployment sets them (see install).
    for (name, value) in ALLOCATOR_ENV {
        command.env(name, value);
    }
    let webhook = Webhook { child: command.spawn()?, url: format!("https://127.0.0.1:{port}/"), ca_pem };
    let started = Instant::now();
    loop {
        let ready =
            ureq::get(&format!("http://127.0.0.1:{admin}/ready")).call().map(|r| r.status() == 200).unwrap_or(false);
        if ready {
            return Ok(webhook);
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the webhook did not become ready");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn agent(ca_pem: &str) -> ureq::Agent {
    let ca = ureq::tls::Certificate::from_pem(ca_pem.as_bytes()).expect("generated CA").to_owned();
    let tls = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![ca]))).build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// A pod as a Deployment's ReplicaSet creates it: two containers, probes, env, resources.
fn review_body(namespace: &str, replica_set: &str, uid: &str) -> Vec<u8> {
    let env: Vec<Value> =
        (0..10).map(|i| json!({"name": format!("SETTING_{i}"), "value": format!("value-{i}")})).collect();
    let container = |name: &str, port: u16| {
        json!({"name": name, "image": format!("registry.example/team/{name}:v1.4.2"), "env": env,
            "ports": [{"containerPort": port, "name": "http", "protocol": "TCP"}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": port}, "periodSeconds": 5},
            "livenessProbe": {"httpGet": {"path": "/live", "port": port}},
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
            "volumeMounts": [{"name": "kube-api-access-x7k2p", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]})
    };
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "generateName": format!("{replica_set}-"), "namespace": namespace,
            "labels": {"app": "web", "pod-template-hash": "5d4f8c"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": replica_set, "uid": uid, "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"containers": [container("web", 8080), container("worker", 9090)], "serviceAccountName": "default",
            "volumes": [{"name": "kube-api-access-x7k2p", "projected": {"sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}}]}});
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "00000000-0000-0000-0000-000000000001",
        "kind": {"group": "", "version": "v1", "kind": "Pod"}, "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": namespace, "operation": "CREATE", "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
        "object": pod, "oldObject": null, "dryRun": false}})
    .to_string()
    .into_bytes()
}

/// Latencies of one run, and how many answers were wrong.
#[derive(Default)]
struct Run {
    latencies: Vec<Duration>,
    wrong: usize,
    elapsed: Duration,
}

impl Run {
    fn merge(&mut self, other: Run) {
        self.latencies.extend(other.latencies);
        self.wrong += other.wrong;
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        sorted.get(((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied().unwrap_or_default()
    }

    fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn line(&self, name: &str) -> String {
        format!(
            "{name:<34} {:>8.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms  p99.9 {:>7.3} ms  max {:>7.3} ms  wrong {}",
            self.throughput(),
            self.percentile(0.50).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
            self.percentile(0.999).as_secs_f64() * 1e3,
            self.latencies.iter().max().copied().unwrap_or_default().as_secs_f64() * 1e3,
            self.wrong
        )
    }
}

/// A cheap check, so the generator spends no more on a patched answer than on an empty one; the
/// end-to-end suite checks the patches themselves.
fn correct(status: u16, body: &[u8], expect_patch: bool) -> bool {
    let contains = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    status == 200 && contains(b"\"allowed\":true") && contains(b"\"patch\":\"") == expect_patch
}

fn send(agent: &ureq::Agent, url: &str, body: &[u8]) -> (u16, Vec<u8>) {
    match agent.post(url).header("content-type", "application/json").send(body) {
        Ok(mut response) => (response.status().as_u16(), response.body_mut().read_to_vec().unwrap_or_default()),
        Err(_) => (0, Vec::new()),
    }
}

/// `CONNECTIONS` connections each sending as fast as answers come back, or, with `rate`, at a
/// fixed total rate with latency measured from each request's scheduled time.
fn drive(webhook: &Webhook, body: &Arc<Vec<u8>>, expect_patch: bool, rate: Option<f64>) -> Run {
    let started = Instant::now();
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            let (agent, url, body) = (agent(&webhook.ca_pem), webhook.url.clone(), body.clone());
            std::thread::spawn(move || {
                let mut run = Run::default();
                let interval = rate.map(|r| Duration::from_secs_f64(CONNECTIONS as f64 / r));
                let mut next = started + interval.map_or(Duration::ZERO, |d| d.mul_f64(i as f64 / CONNECTIONS as f64));
                while started.elapsed() < RUN {
                    if interval.is_some() {
                        if let Some(wait) = next.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    } else {
                        next = Instant::now();
                    }
                    let (status, answer) = send(&agent, &url, &body);
                    run.latencies.push(next.elapsed());
                    run.wrong += usize::from(!correct(status, &answer, expect_patch));
                    next += interval.unwrap_or_default();
                }
                run
            })
        })
        .collect();
    let mut total = Run::default();
    for thread in threads {
        total.merge(thread.join().expect("load thread"));
    }
    total.elapsed = started.elapsed();
    total
}

/// `BURST` requests sent at the same instant on already-open connections.
fn burst(webhook: &Webhook, body: &Arc<Vec<u8>>) -> Run {
    let barrier = Arc::new(Barrier::new(BURST + 1));
    let threads: Vec<_> = (0..BURST)
        .map(|_| {
            let (agent, url, body, barrier) =
                (agent(&webhook.ca_pem), webhook.url.clone(), body.clone(), barrier.clone());
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let _ = send(&agent, &url, &body); // opens the connection
                    barrier.wait();
                    let sent = Instant::now();
                    let (status, answer) = send(&agent, &url, &body);
                    (sent.elapsed(), correct(status, &answer, true))
                })
                .expect("a burst thread")
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    let mut run = Run::default();
    for thread in threads {
        let (latency, ok) = thread.join().expect("burst thread");
        run.latencies.push(latency);
        run.wrong += usize::from(!ok);
    }
    run.elapsed = started.elapsed();
    run
}

/// A control plane with the namespace, Deployment and ReplicaSet the benchmark reviews name,
/// and the body of such a review.
fn bench_plane() -> anyhow::Result<(ControlPlane, Vec<u8>)> {
    let plane = ControlPlane::start()?;
    plane.create(
        "/api/v1/namespaces",
        &json!({"metadata": {"name": "bench", "annotations": {"linkerd.io/inject": "enabled"}}}),
    )?;
    plane.create("/api/v1/namespaces/bench/serviceaccounts", &json!({"metadata": {"name": "default"}}))?;
    let template =
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web"}]}});
    let deployment = plane.create(
        "/apis/apps/v1/namespaces/bench/deployments",
        &json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template}}),
    )?;
    let replica_set = plane.create(
        "/apis/apps/v1/namespaces/bench/replicasets",
        &json!({"metadata": {"name": "web-5d4f8c", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
            "name": "web", "uid": deployment["metadata"]["uid"], "controller": true}]},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template}}),
    )?;
    let uid = replica_set["metadata"]["uid"].as_str().context("a stored ReplicaSet has a uid")?;
    let body = review_body("bench", "web-5d4f8c", uid);
    Ok((plane, body))
}

pub fn bench(root: &Path) -> anyhow::Result<()> {
    let (plane, body) = bench_plane()?;
    let body = Arc::new(body);
    let dir = std::env::temp_dir().join(format!("proxy-injector-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    println!(
        "AdmissionReview body: {} bytes; {CONNECTIONS} keep-alive TLS connections; generator on the same 2 cores",
        body.len()
    );

    let floor = {
        let webhook = start_webhook(root, &dir, &plane, true, &[])?;
        let run = drive(&webhook, &body, false, None);
        println!("{}", run.line("no-op, max throughput"));
        run.throughput()
    };
    // The HTTP/1.1 burst opens one connection per request, 3,000 from one address.
    let webhook =
        start_webhook(root, &dir, &plane, false, &["--max-connections-per-peer", "4096", "--max-connections", "4096"])?;
    let max = drive(&webhook, &body, true, None);
    println!("{}", max.line("inject, max throughput"));
    let half = drive(&webhook, &body, true, Some(max.throughput() / 2.0));
    println!("{}", half.line(&format!("inject, at half ({:.0} req/s)", max.throughput() / 2.0)));
    let burst = burst(&webhook, &body);
    println!("{}", burst.line(&format!("inject, {BURST} at once")));
    println!("inject / no-op throughput: {:.2}", max.throughput() / floor);
    let slow = burst.latencies.iter().filter(|l| **l > Duration::from_secs(1)).count();
    println!("burst: {} wrong answers, {slow} over 1 s", burst.wrong);
    drop(webhook);
    std::fs::remove_dir_all(&dir)?;
    if max.wrong + half.wrong + burst.wrong > 0 {
        bail!("the webhook gave wrong answers under load");
    }
    Ok(())
}

/// A body that sends all but its last byte, then waits for `release` before sending it.
struct HeldBody {
    bytes: Vec<u8>,
    sent: usize,
    release: Arc<Barrier>,
    held: bool,
}

impl std::io::Read for HeldBody {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let last = self.bytes.len() - 1;
        if self.sent == last && !self.held {
            self.held = true;
            self.release.wait();
        }
        let end = if self.sent < last {
            last.min(self.sent + out.len())
        } else {
            self.bytes.len().min(self.sent + out.len())
        };
        let n = end - self.sent;
        out[..n].copy_from_slice(&self.bytes[self.sent..end]);
        self.sent = end;
        Ok(n)
    }
}

/// `VmHWM` and `VmRSS` of a process, in MiB.
fn memory_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// A review of about `size` bytes: the benchmark's pod with one large annotation.
fn review_of_size(body: &[u8], size: usize) -> Vec<u8> {
    let mut review: Value = serde_json::from_slice(body).expect("the benchmark review is JSON");
    let padding = size.saturating_sub(body.len() + 64);
    review["request"]["object"]["metadata"]["annotations"]["example.com/padding"] = json!("x".repeat(padding));
    serde_json::to_vec(&review).expect("a review serializes")
}

/// Peak memory with many large reviews held open at once, and the resident memory after.
pub fn memory_bench(root: &Path) -> anyhow::Result<()> {
    let (plane, body) = bench_plane()?;
    let dir = std::env::temp_dir().join(format!("proxy-injector-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for (count, size) in [(300usize, 1024 * 1024usize), (30, 10 * 1024 * 1024 - 1024)] {
        let webhook = start_webhook(root, &dir, &plane, false, &["--body-budget", "128Mi"])?;
        let pid = webhook.child.id();
        let (_, idle_rss) = memory_of(pid);
        let review = Arc::new(review_of_size(&body, size));
        let release = Arc::new(Barrier::new(count + 1));
        let threads: Vec<_> = (0..count)
            .map(|_| {
                let (agent, url, review, release) =
                    (agent(&webhook.ca_pem), webhook.url.clone(), review.clone(), release.clone());
                std::thread::spawn(move || {
                    let mut held = HeldBody { bytes: review.to_vec(), sent: 0, release: release.clone(), held: false };
                    let answer = agent
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("content-length", review.len().to_string())
                        .send(ureq::SendBody::from_reader(&mut held));
                    if !held.held {
                        release.wait();
                    }
                    match answer {
                        Ok(response) => response.status().as_u16(),
                        Err(_) => 0,
                    }
                })
            })
            .collect();
        // Bodies arrive; those past the budget are refused while the rest are held.
        std::thread::sleep(Duration::from_secs(4));
        let (peak, _) = memory_of(pid);
        release.wait();
        let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap_or(0)).collect();
        let answered = statuses.iter().filter(|s| **s == 200).count();
        let refused = statuses.iter().filter(|s| **s == 503).count();
        std::thread::sleep(Duration::from_secs(3));
        let (_, after) = memory_of(pid);
        println!(
            "{count} x {} MiB reviews held at once (budget 128Mi): peak RSS {peak} MiB; {answered} answered, \
             {refused} refused over budget, {} closed; RSS idle {idle_rss} MiB, 3 s after {after} MiB",
            size.div_ceil(1024 * 1024),
            count - answered - refused
        );
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// Server CPU time (user + system) of a process so far, from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesized command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // Linux reports these in USER_HZ, 100 on every supported architecture.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// One h2load run against the webhook: its latencies (from h2load's per-request log), answers
/// that were not 200, and the webhook's CPU time per request.
fn h2load(webhook: &Webhook, dir: &Path, body: &Path, args: &[&str]) -> anyhow::Result<(Run, Duration)> {
    let log = dir.join("h2load.log");
    let _ = std::fs::remove_file(&log);
    let cpu_before = cpu_time(webhook.child.id());
    let started = Instant::now();
    let output = Command::new("h2load")
        .arg(format!("{}?timeout=10s", webhook.url))
        .arg("-d")
        .arg(body)
        .args(["-H", "content-type: application/json"])
        .arg(format!("--log-file={}", log.display()))
        .args(args)
        .output()
        .context("cannot run h2load (Debian's nghttp2-client)")?;
    let elapsed = started.elapsed();
    let cpu = cpu_time(webhook.child.id()).saturating_sub(cpu_before);
    if !output.status.success() {
        bail!("h2load failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let mut run = Run { elapsed, ..Run::default() };
    for line in std::fs::read_to_string(&log)?.lines() {
        let columns: Vec<&str> = line.split('\t').collect();
        let (Some(status), Some(micros)) = (columns.get(1), columns.get(2).and_then(|c| c.parse::<u64>().ok())) else {
            continue;
        };
        run.latencies.push(Duration::from_micros(micros));
        run.wrong += usize::from(*status != "200");
    }
    let per_request = cpu.checked_div(run.latencies.len().max(1) as u32).unwrap_or_default();
    Ok((run, per_request))
}

/// h2load, installed from Debian's nghttp2-client if missing.
fn ensure_h2load() -> anyhow::Result<()> {
    if Command::new("h2load").arg("--version").output().is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    eprintln!("xtask: installing nghttp2-client (h2load) with apt-get");
    let update = Command::new("apt-get").args(["update", "-qq"]).status()?;
    let install = Command::new("apt-get").args(["install", "-y", "-qq", "nghttp2-client"]).status()?;
    if !update.success() || !install.success() {
        bail!("apt-get install nghttp2-client failed: the HTTP/2 benchmark needs h2load");
    }
    Ok(())
}

/// The webhook as the apiserver calls it: HTTP/2, on one connection and on sixteen.
pub fn h2_bench(root: &Path) -> anyhow::Result<()> {
    ensure_h2load()?;
    let (plane, body) = bench_plane()?;
    let dir = std::env::temp_dir().join(format!("proxy-injector-h2-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let body_path = dir.join("review.json");
    std::fs::write(&body_path, &body)?;
    println!("AdmissionReview body: {} bytes; h2load over TLS (h2); generator on the same 2 cores", body.len());
    let report = |name: &str, (run, cpu): &(Run, Duration)| {
        println!("{}  server CPU {:>5.0} us/admission", run.line(name), cpu.as_secs_f64() * 1e6);
    };
    let mut wrong = 0;
    for no_op in [true, false] {
        let webhook = start_webhook(root, &dir, &plane, no_op, &[])?;
        let mode = if no_op { "no-op" } else { "inject" };
        let one = h2load(&webhook, &dir, &body_path, &["-c1", "-m16", "-n30000"])?;
        report(&format!("{mode}, 1 connection x 16 streams"), &one);
        let sixteen = h2load(&webhook, &dir, &body_path, &["-c16", "-m1", "-n30000"])?;
        report(&format!("{mode}, 16 connections"), &sixteen);
        wrong += one.0.wrong + sixteen.0.wrong;
        if no_op {
            continue;
        }
        let half = ((one.0.throughput() / 2.0) as u64).max(1).to_string();
        let at_half = h2load(&webhook, &dir, &body_path, &["-c1", "-m16", &format!("--rps={half}"), "-D", "10"])?;
        report(&format!("inject, 1 connection at {half}/s"), &at_half);
        let trickle = h2load(&webhook, &dir, &body_path, &["-c1", "-m1", "--rps=32", "-D", "10"])?;
        report("inject, trickle 32/s on 1 connection", &trickle);
        let burst = h2load(&webhook, &dir, &body_path, &["-c16", "-m188", "-n3008"])?;
        report("inject, 3,008 at once (16 x 188 streams)", &burst);
        let slow = burst.0.latencies.iter().filter(|l| **l > Duration::from_millis(500)).count();
        println!("HTTP/2 burst: {} not 200, {slow} over 500 ms", burst.0.wrong);
        wrong += at_half.0.wrong + trickle.0.wrong + burst.0.wrong;
    }
    std::fs::remove_dir_all(&dir)?;
    if wrong > 0 {
        bail!("{wrong} HTTP/2 admissions were not answered 200");
    }
    Ok(())
}
