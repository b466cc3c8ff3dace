//! The reconciler and `status` against real controllers: pods admitted fail-open, stale proxies
//! after a values change, an opted-out namespace, and two replicas behind one Lease.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};
use webhook::ErrorPolicy;

use crate::harness::*;

/// A Deployment whose rollouts finish without a kubelet: its pods stay Pending, so it may replace
/// all of them at once.
fn deployment(name: &str, replicas: u32) -> Deployment {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": {
        "replicas": replicas, "selector": {"matchLabels": {"app": name}},
        "strategy": {"rollingUpdate": {"maxUnavailable": "100%", "maxSurge": 0}},
        "template": {"metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "app", "image": "nginx", "ports": [{"containerPort": 8080}]}]}}}}))
    .unwrap()
}

async fn create_deployment(client: &kube::Client, ns: &str, name: &str, replicas: u32) {
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &deployment(name, replicas))
        .await
        .unwrap();
}

/// `proxy-injector` with the webhook's configuration files and the test's kubeconfig.
fn command(webhook: &WebhookProcess, args: &[&str]) -> Command {
    let mut command = Command::new(binary());
    command
        .args(args)
        .arg("--values")
        .arg(webhook.config.path.join("values"))
        .arg("--trust-roots")
        .arg(webhook.config.path.join("ca-bundle.crt"))
        .arg("--kubeconfig")
        .arg(kubeconfig());
    command
}

fn status(webhook: &WebhookProcess, ns: &str) -> Value {
    let output = command(webhook, &["status", "-o", "json", "-n", ns]).output().unwrap();
    assert!(output.status.success(), "status failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// `reconcile --once -o json` in `ns`: the plan it acted on.
fn reconcile_once(webhook: &WebhookProcess, ns: &str) -> Value {
    let once = command(webhook, &["reconcile", "--once", "-o", "json", "-n", ns]).output().unwrap();
    assert!(once.status.success(), "{}", String::from_utf8_lossy(&once.stderr));
    serde_json::from_slice(&once.stdout).unwrap()
}

fn workload<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {status}"))
}

/// A running `proxy-injector reconcile`, killed on drop.
struct Reconciler {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Reconciler {
    fn start(webhook: &WebhookProcess, ns: &[&str], extra: &[&str]) -> Reconciler {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut command = command(webhook, &["reconcile", "--admin-addr", &format!("127.0.0.1:{}", free_port())]);
        for ns in ns {
            command.args(["--namespace", ns]);
        }
        let child = command
            .args(["--resync", "1s", "--log-format", "json"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        Reconciler { child, log }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Reconciler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn pods(client: &kube::Client, ns: &str, app: &str) -> Vec<Pod> {
    let api = Api::<Pod>::namespaced(client.clone(), ns);
    let list = api.list(&ListParams::default().labels(&format!("app={app}"))).await.unwrap();
    list.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect()
}

/// Waits until `app`'s pods are exactly `count`, all satisfying `done`.
async fn converge(
    client: &kube::Client,
    ns: &str,
    app: &str,
    count: usize,
    done: impl Fn(&Pod) -> bool,
    logs: impl Fn() -> String,
) {
    let started = Instant::now();
    loop {
        let pods = pods(client, ns, app).await;
        if pods.len() == count && pods.iter().all(&done) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{app} did not converge:\n{}", logs());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn restart_events(client: &kube::Client, ns: &str, name: &str) -> Vec<Event> {
    let events = Api::<Event>::namespaced(client.clone(), ns).list(&ListParams::default()).await.unwrap().items;
    events
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("ProxyRestart") && e.involved_object.name.as_deref() == Some(name))
        .collect()
}

fn restarted_at(deployment: &Deployment) -> Option<String> {
    let annotations = deployment.spec.as_ref()?.template.metadata.as_ref()?.annotations.as_ref()?;
    annotations.get("kubectl.kubernetes.io/restartedAt").cloned()
}

fn proxy_version(pod: &Pod) -> Option<&str> {
    pod.metadata.annotations.as_ref()?.get("linkerd.io/proxy-version").map(String::as_str)
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_admitted_while_the_webhook_was_down_are_meshed_by_one_restart() {
    let client = client().await;
    let ns = "r01-down";
    namespace(&client, "r01", ns, json!({"linkerd.io/inject": "enabled"}), json!({})).await;
    // Registered, failurePolicy Ignore, nothing listening yet: pods are admitted without the proxy.
    let port = free_port();
    let ca = Pki::new();
    register(&client, "r01", &format!("https://127.0.0.1:{port}/"), &ca.ca_pem, ErrorPolicy::Admit).await;
    create_deployment(&client, ns, "web", 2).await;
    let unmeshed = wait_for_pods(&client, ns, "app=web", 2).await;
    assert!(unmeshed.iter().all(|p| !is_injected(p)), "admitted fail-open");

    let webhook = WebhookProcess::start(WebhookOptions { port: Some(port), ..WebhookOptions::default() });
    register(&client, "r01", &webhook.url(), &webhook.pki.ca_pem, ErrorPolicy::Admit).await;
    wait_until_active(&client, ns).await;
    let before = status(&webhook, ns);
    let web = workload(&before, "web");
    assert_eq!(web["kind"], "Deployment");
    assert_eq!(web["expected"]["meshed"], "yes");
    assert_eq!(web["pods"]["unmeshed"], 2, "{before}");
    assert_eq!(web["action"], "restart");
    assert_eq!(web["reason"], "2 pods without the proxy");
    let table = command(&webhook, &["status", "-n", ns]).output().unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.contains("restart: 2 pods without the proxy"), "{table}");

    // --dry-run --once prints the same plan and changes nothing.
    let dry = command(&webhook, &["reconcile", "--dry-run", "--once", "-o", "json", "-n", ns]).output().unwrap();
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    let dry: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(workload(&dry, "web")["action"], "restart");
    let deployments = Api::<Deployment>::namespaced(client.clone(), ns);
    assert_eq!(restarted_at(&deployments.get("web").await.unwrap()), None, "a dry run restarts nothing");

    let reconciler = Reconciler::start(&webhook, &[ns], &["--no-leader-election"]);
    converge(&client, ns, "web", 2, is_injected, || reconciler.logs()).await;
    let after = status(&webhook, ns);
    let web = workload(&after, "web");
    assert_eq!(web["pods"]["meshed"], 2, "fresh pods carry the fingerprint the reconciler expects: {after}");
    assert_eq!(web["action"], "none");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(restart_events(&client, ns, "web").await.len(), 1, "one restart, recorded as an Event");
    assert!(restarted_at(&deployments.get("web").await.unwrap()).is_some());
    let logs = reconciler.logs();
    assert!(logs.contains("\"restarted\"") || logs.contains("restarted"), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_proxy_version_rolls_stale_workloads_one_at_a_time() {
    let client = client().await;
    let ns = "r02-stale";
    namespace(&client, "r02", ns, json!({"linkerd.io/inject": "enabled"}), json!({})).await;
    let webhook = WebhookProcess::start(WebhookOptions {
        values: json!({"proxy": {"image": {"version": "v1.0.0"}}}),
        ..WebhookOptions::default()
    });
    register(&client, "r02", &webhook.url(), &webhook.pki.ca_pem, ErrorPolicy::Admit).await;
    wait_until_active(&client, ns).await;
    for name in ["api", "web"] {
        create_deployment(&client, ns, name, 2).await;
    }
    for name in ["api", "web"] {
        converge(&client, ns, name, 2, |p| proxy_version(p) == Some("v1.0.0"), String::new).await;
    }
    let current = status(&webhook, ns);
    assert_eq!(workload(&current, "web")["pods"]["meshed"], 2, "{current}");

    webhook.set_values(&json!({"proxy": {"image": {"version": "v2.0.0"}}}));
    let stale = status(&webhook, ns);
    for name in ["api", "web"] {
        assert_eq!(workload(&stale, name)["pods"]["stale"], 2, "{stale}");
        assert_eq!(workload(&stale, name)["proxyVersions"], json!(["v1.0.0"]));
    }
    // Wait for the webhook to serve v2 (a dry-run pod shows it) before anything restarts.
    let probe: Pod = serde_json::from_value(pod_json("version-probe", json!({}))).unwrap();
    let dry_run = PostParams { dry_run: true, ..PostParams::default() };
    let started = Instant::now();
    loop {
        let pod = Api::<Pod>::namespaced(client.clone(), ns).create(&dry_run, &probe).await.unwrap();
        if proxy_version(&pod) == Some("v2.0.0") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the webhook did not load v2.0.0");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reconciler =
        Reconciler::start(&webhook, &[ns], &["--no-leader-election", "--max-rolling", "1", "--min-interval", "4s"]);
    for name in ["api", "web"] {
        converge(&client, ns, name, 2, |p| proxy_version(p) == Some("v2.0.0"), || reconciler.logs()).await;
    }
    let deployments = Api::<Deployment>::namespaced(client.clone(), ns);
    let mut times = Vec::new();
    for name in ["api", "web"] {
        let at = restarted_at(&deployments.get(name).await.unwrap()).expect("restarted");
        times.push(at.parse::<k8s_openapi::jiff::Timestamp>().unwrap());
    }
    times.sort();
    let gap = times[1].duration_since(times[0]);
    assert!(gap.as_secs_f64() >= 3.9, "restarts {gap:?} apart, the minimum interval is 4s");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_opted_out_namespace_is_reported_and_never_restarted() {
    let client = client().await;
    let ns = "r03-optout";
    let annotations = json!({"linkerd.io/inject": "enabled", "config.linkerd.io/reconcile": "disabled"});
    namespace(&client, "r03", ns, annotations, json!({})).await;
    let port = free_port();
    register(&client, "r03", &format!("https://127.0.0.1:{port}/"), &Pki::new().ca_pem, ErrorPolicy::Admit).await;
    create_deployment(&client, ns, "web", 1).await;
    wait_for_pods(&client, ns, "app=web", 1).await;
    let webhook = WebhookProcess::start(WebhookOptions { port: Some(port), ..WebhookOptions::default() });
    let plan = reconcile_once(&webhook, ns);
    let web = workload(&plan, "web");
    assert_eq!(web["action"], "held");
    assert_eq!(web["reason"], "1 pod without the proxy; namespace has config.linkerd.io/reconcile: disabled");
    let deployment = Api::<Deployment>::namespaced(client.clone(), ns).get("web").await.unwrap();
    assert_eq!(restarted_at(&deployment), None);
    assert!(restart_events(&client, ns, "web").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn of_two_replicas_only_the_lease_holder_restarts() {
    let client = client().await;
    let ns = "r04-lease";
    namespace(&client, "r04", ns, json!({"linkerd.io/inject": "enabled"}), json!({})).await;
    let control_plane: Namespace = serde_json::from_value(json!({"metadata": {"name": "linkerd"}})).unwrap();
    let _ = Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &control_plane).await;
    let port = free_port();
    register(&client, "r04", &format!("https://127.0.0.1:{port}/"), &Pki::new().ca_pem, ErrorPolicy::Admit).await;
    create_deployment(&client, ns, "web", 2).await;
    wait_for_pods(&client, ns, "app=web", 2).await;
    let webhook = WebhookProcess::start(WebhookOptions { port: Some(port), ..WebhookOptions::default() });
    register(&client, "r04", &webhook.url(), &webhook.pki.ca_pem, ErrorPolicy::Admit).await;
    wait_until_active(&client, ns).await;

    let lease = ["--lease-name", "r04-reconciler"];
    let first = Reconciler::start(&webhook, &[ns], &[&lease[..], &["--identity", "replica-a"]].concat());
    let second = Reconciler::start(&webhook, &[ns], &[&lease[..], &["--identity", "replica-b"]].concat());
    converge(&client, ns, "web", 2, is_injected, || format!("{}\n{}", first.logs(), second.logs())).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let events = restart_events(&client, ns, "web").await;
    assert_eq!(events.len(), 1, "one restart between the two replicas");
    let leases = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), "linkerd");
    let holder = leases.get("r04-reconciler").await.unwrap().spec.unwrap().holder_identity.unwrap();
    assert!(["replica-a", "replica-b"].contains(&holder.as_str()));
    let acted: BTreeSet<&str> = [("replica-a", &first), ("replica-b", &second)]
        .iter()
        .filter(|(_, r)| r.logs().contains("\"message\":\"restarted\""))
        .map(|(name, _)| *name)
        .collect();
    assert_eq!(acted, BTreeSet::from([holder.as_str()]), "only the holder acted");
}

/// The fleet benchmark (`cargo xtask bench fleet`, figures in BENCHMARKS.md): 100 Deployments of
/// 10 pods admitted fail-open, then the webhook and one reconciler with the default limits, until
/// no pod is without the proxy. Each Deployment is restarted once, and only once.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark of about 20 minutes; run by `cargo xtask bench fleet`"]
async fn fleet_of_a_thousand_pods_admitted_fail_open_converges() {
    const DEPLOYMENTS: usize = 100;
    const REPLICAS: u32 = 10;
    let client = client().await;
    let ns = "fleet";
    namespace(&client, "fleet", ns, json!({"linkerd.io/inject": "enabled"}), json!({})).await;
    let port = free_port();
    register(&client, "fleet", &format!("https://127.0.0.1:{port}/"), &Pki::new().ca_pem, ErrorPolicy::Admit).await;
    let created = Instant::now();
    for index in 0..DEPLOYMENTS {
        create_deployment(&client, ns, &format!("app-{index:03}"), REPLICAS).await;
    }
    let total = DEPLOYMENTS * REPLICAS as usize;
    let api = Api::<Pod>::namespaced(client.clone(), ns);
    let live = || async {
        let pods = api.list(&ListParams::default()).await.unwrap().items;
        pods.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect::<Vec<_>>()
    };
    while live().await.len() < total {
        assert!(created.elapsed() < Duration::from_secs(600), "the controllers did not create {total} pods");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!("fleet: {total} pods created fail-open in {:.0} s", created.elapsed().as_secs_f64());
    assert!(live().await.iter().all(|p| !is_injected(p)), "admitted without the proxy");

    let webhook = WebhookProcess::start(WebhookOptions { port: Some(port), ..WebhookOptions::default() });
    register(&client, "fleet", &webhook.url(), &webhook.pki.ca_pem, ErrorPolicy::Admit).await;
    wait_until_active(&client, ns).await;
    // The default limits, and the default resync.
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut reconciler = command(&webhook, &["reconcile", "--no-leader-election", "--namespace", ns])
        .args(["--admin-addr", &format!("127.0.0.1:{}", free_port()), "--log-format", "json"])
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut reported = 0;
    loop {
        let pods = live().await;
        let unmeshed = pods.iter().filter(|p| !is_injected(p)).count();
        let meshed = pods.len() - unmeshed;
        if meshed * 10 / total > reported {
            reported = meshed * 10 / total;
            println!("fleet: {meshed} of {total} pods meshed after {:.0} s", started.elapsed().as_secs_f64());
        }
        if unmeshed == 0 && pods.len() == total {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(2400), "{unmeshed} pods unmeshed after 40 minutes");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let _ = reconciler.kill();
    let _ = reconciler.wait();
    let events = Api::<Event>::namespaced(client.clone(), ns).list(&ListParams::default()).await.unwrap().items;
    let restarted: BTreeSet<&str> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("ProxyRestart"))
        .filter_map(|e| e.involved_object.name.as_deref())
        .collect();
    assert_eq!(restarted.len(), DEPLOYMENTS, "every Deployment has its restart Event");
    let logs = std::fs::read_to_string(log.path()).unwrap();
    assert_eq!(logs.matches("\"message\":\"restarted\"").count(), DEPLOYMENTS, "none restarted twice:\n{logs}");
    println!(
        "fleet: 0 of {total} pods unmeshed {:.0} s after the reconciler started ({DEPLOYMENTS} restarts, \
         {:.1} s apart on average)",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() / DEPLOYMENTS as f64
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disruption_budget_the_real_controller_says_allows_nothing_holds_the_restart() {
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    let client = client().await;
    let ns = "r05-budget";
    namespace(&client, "r05", ns, json!({"linkerd.io/inject": "enabled"}), json!({})).await;
    let port = free_port();
    register(&client, "r05", &format!("https://127.0.0.1:{port}/"), &Pki::new().ca_pem, ErrorPolicy::Admit).await;
    create_deployment(&client, ns, "web", 2).await;
    wait_for_pods(&client, ns, "app=web", 2).await;
    let budget: PodDisruptionBudget = serde_json::from_value(json!({"metadata": {"name": "web"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}))
    .unwrap();
    let budgets = Api::<PodDisruptionBudget>::namespaced(client.clone(), ns);
    budgets.create(&PostParams::default(), &budget).await.unwrap();
    // The disruption controller computes the budget: no pod is ready (no kubelet), so none may go.
    let started = Instant::now();
    loop {
        let status = budgets.get("web").await.unwrap().status;
        if status.as_ref().and_then(|s| s.observed_generation).is_some() {
            assert_eq!(status.unwrap().disruptions_allowed, Some(0));
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the disruption controller did not report");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let webhook = WebhookProcess::start(WebhookOptions { port: Some(port), ..WebhookOptions::default() });
    register(&client, "r05", &webhook.url(), &webhook.pki.ca_pem, ErrorPolicy::Admit).await;
    wait_until_active(&client, ns).await;
    let plan = reconcile_once(&webhook, ns);
    let web = workload(&plan, "web");
    assert_eq!(web["action"], "held", "{plan}");
    assert_eq!(web["reason"], "2 pods without the proxy; PodDisruptionBudget web allows no disruption now");
    let deployment = Api::<Deployment>::namespaced(client.clone(), ns).get("web").await.unwrap();
    assert_eq!(restarted_at(&deployment), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stateful_set_admitted_fail_open_is_restarted_and_its_controller_recreates_injected_pods() {
    use k8s_openapi::api::apps::v1::StatefulSet;
    let client = client().await;
    let ns = "r06-stateful";
    namespace(&client, "r06", ns, json!({"linkerd.io/inject": "enabled"}), json!({})).await;
    let port = free_port();
    register(&client, "r06", &format!("https://127.0.0.1:{port}/"), &Pki::new().ca_pem, ErrorPolicy::Admit).await;
    let set: StatefulSet = serde_json::from_value(json!({"metadata": {"name": "db"}, "spec": {
        "replicas": 2, "serviceName": "db", "podManagementPolicy": "Parallel",
        "selector": {"matchLabels": {"app": "db"}},
        "template": {"metadata": {"labels": {"app": "db"}},
            "spec": {"containers": [{"name": "db", "image": "postgres", "ports": [{"containerPort": 5432}]}]}}}}))
    .unwrap();
    let sets = Api::<StatefulSet>::namespaced(client.clone(), ns);
    sets.create(&PostParams::default(), &set).await.unwrap();
    let unmeshed = wait_for_pods(&client, ns, "app=db", 2).await;
    assert!(unmeshed.iter().all(|p| !is_injected(p)));
    let webhook = WebhookProcess::start(WebhookOptions { port: Some(port), ..WebhookOptions::default() });
    register(&client, "r06", &webhook.url(), &webhook.pki.ca_pem, ErrorPolicy::Admit).await;
    wait_until_active(&client, ns).await;
    let plan = reconcile_once(&webhook, ns);
    assert_eq!(workload(&plan, "db")["kind"], "StatefulSet");
    assert_eq!(workload(&plan, "db")["action"], "restart", "{plan}");
    let restarted = sets.get("db").await.unwrap();
    let annotations = restarted.spec.unwrap().template.metadata.unwrap().annotations.unwrap_or_default();
    assert!(annotations.contains_key("kubectl.kubernetes.io/restartedAt"));
    assert_eq!(restart_events(&client, ns, "db").await.len(), 1);
    // The StatefulSet controller replaces the highest ordinal first; its new pod is injected.
    let started = Instant::now();
    loop {
        let pods = pods(&client, ns, "db").await;
        let replaced = pods.iter().find(|p| p.metadata.name.as_deref() == Some("db-1")).filter(|p| is_injected(p));
        if replaced.is_some() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "db-1 was not recreated with the proxy: {pods:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_set_admitted_fail_open_is_restarted_and_its_controller_recreates_injected_pods() {
    use k8s_openapi::api::apps::v1::DaemonSet;
    use k8s_openapi::api::core::v1::Node;
    let client = client().await;
    let ns = "r07-daemon";
    namespace(&client, "r07", ns, json!({"linkerd.io/inject": "enabled"}), json!({})).await;
    // The DaemonSet controller makes a pod per node: a Node object, with no kubelet behind it.
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "r07-node",
        "labels": {"kubernetes.io/hostname": "r07-node", "r07": "yes"}}}))
    .unwrap();
    let _ = Api::<Node>::all(client.clone()).create(&PostParams::default(), &node).await;
    let port = free_port();
    register(&client, "r07", &format!("https://127.0.0.1:{port}/"), &Pki::new().ca_pem, ErrorPolicy::Admit).await;
    let set: DaemonSet = serde_json::from_value(json!({"metadata": {"name": "agent"}, "spec": {
        "selector": {"matchLabels": {"app": "agent"}},
        "template": {"metadata": {"labels": {"app": "agent"}},
            "spec": {"nodeSelector": {"r07": "yes"}, "tolerations": [{"operator": "Exists"}],
                "containers": [{"name": "agent", "image": "agent", "ports": [{"containerPort": 9100}]}]}}}}))
    .unwrap();
    let sets = Api::<DaemonSet>::namespaced(client.clone(), ns);
    sets.create(&PostParams::default(), &set).await.unwrap();
    let unmeshed = wait_for_pods(&client, ns, "app=agent", 1).await;
    assert!(unmeshed.iter().all(|p| !is_injected(p)));
    let webhook = WebhookProcess::start(WebhookOptions { port: Some(port), ..WebhookOptions::default() });
    register(&client, "r07", &webhook.url(), &webhook.pki.ca_pem, ErrorPolicy::Admit).await;
    wait_until_active(&client, ns).await;
    // The controller reports its status before the reconciler reads the rollout as finished.
    let started = Instant::now();
    while sets.get("agent").await.unwrap().status.is_none_or(|s| s.desired_number_scheduled != 1) {
        assert!(started.elapsed() < Duration::from_secs(30), "the DaemonSet controller did not report");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let plan = reconcile_once(&webhook, ns);
    assert_eq!(workload(&plan, "agent")["kind"], "DaemonSet");
    assert_eq!(workload(&plan, "agent")["action"], "restart", "{plan}");
    assert_eq!(restart_events(&client, ns, "agent").await.len(), 1);
    converge(&client, ns, "agent", 1, is_injected, String::new).await;
}
