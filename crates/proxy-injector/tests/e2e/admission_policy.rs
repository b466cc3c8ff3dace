//! Injection by the MutatingAdmissionPolicy, on the real apiserver: for a matrix of pods, the
//! policy stores exactly what the webhook stores; pods the policy does not support reach the
//! webhook; pods the policy supports are injected with the webhook down; and the Rust twin of
//! the policy's conditions (what `explain` says) agrees with the apiserver's CEL on every pod.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::{Map, Value, json};
use webhook::ErrorPolicy;
use webhook::registration::{Endpoint, Registration};

use crate::harness::*;
use crate::install::{apply, install};

/// The webhook's values as the tests give them, and the injector the policy is compiled from.
fn injector(values: &Value) -> inject::Injector {
    let mut document = values.clone();
    document["identityTrustAnchorsPEM"] = json!(trust_anchors());
    let values = inject::values::ValuesDocument::from_value(document).unwrap();
    inject::Injector::new(values, "linkerd").unwrap()
}

/// The policy compiled from `values`, named for `test` and limited to namespaces labelled with
/// any of `labels`.
fn compiled_policy(values: &Value, test: &str, labels: &[&str]) -> (Vec<Value>, admission_policy::Support) {
    let injector = injector(values);
    let mut namespace_selector = webhook::registration::namespace_selector();
    namespace_selector["matchExpressions"]
        .as_array_mut()
        .unwrap()
        .push(json!({"key": TEST_LABEL, "operator": "In", "values": labels}));
    // Fail, not install's Ignore: an expression that errs fails the test instead of passing the
    // pod on to the webhook unnoticed.
    let name = format!("{}-{test}", admission_policy::POLICY_NAME);
    let options = admission_policy::Options {
        name,
        failure_policy: "Fail",
        namespace_selector,
        object_selector: webhook::registration::object_selector(),
        control_plane_ns: "linkerd".into(),
    };
    let compiled = admission_policy::compile(&injector, &options).unwrap();
    (vec![compiled.policy, compiled.binding], admission_policy::support(&injector).unwrap())
}

/// Registers the webhook for the namespaces labelled with any of `labels`.
async fn register_for(client: &kube::Client, test: &str, webhook: &WebhookProcess, labels: &[&str]) {
    let registration = Registration {
        control_plane_ns: "linkerd".into(),
        endpoint: Endpoint::Url(webhook.url()),
        ca_bundle: Some(webhook.pki.ca_pem.clone()),
        error_policy: ErrorPolicy::Deny,
        timeout_seconds: 10,
        sees_opted_out_pods: false,
    };
    let mut configuration = registration.render();
    configuration["metadata"]["name"] = json!(format!("{}-{test}", webhook::registration::CONFIGURATION_NAME));
    for entry in configuration["webhooks"].as_array_mut().unwrap() {
        let expressions = entry["namespaceSelector"]["matchExpressions"].as_array_mut().unwrap();
        expressions.push(json!({"key": TEST_LABEL, "operator": "In", "values": labels}));
    }
    apply(client, &[configuration]).await;
}

/// What injection adds to a stored pod, comparable across namespaces and paths: its labels, its
/// annotations (without the fingerprint, which names the path) and its spec, with the
/// namespace's name and the apiserver's per-pod token volume name made constant.
fn injected_parts(pod: &Pod) -> Value {
    let namespace = pod.metadata.namespace.clone().unwrap();
    let mut annotations = pod.metadata.annotations.clone().unwrap_or_default();
    annotations.remove(inject::FINGERPRINT);
    let parts = json!({"labels": pod.metadata.labels, "annotations": annotations, "spec": pod.spec});
    let text = parts.to_string().replace(&namespace, "NAMESPACE");
    let mut pieces = text.split("kube-api-access-");
    let mut normalized = pieces.next().unwrap_or_default().to_string();
    for rest in pieces {
        normalized.push_str("kube-api-access-TOKEN");
        normalized.push_str(rest.get(5..).unwrap_or_default());
    }
    serde_json::from_str(&normalized).unwrap()
}

fn fingerprint(pod: &Pod) -> String {
    pod.metadata.annotations.as_ref().and_then(|a| a.get(inject::FINGERPRINT)).cloned().unwrap_or_default()
}

pub fn injected_by_policy(pod: &Pod) -> bool {
    is_injected(pod) && fingerprint(pod).starts_with(admission_policy::FINGERPRINT_PREFIX)
}

fn injected_by_webhook(pod: &Pod) -> bool {
    is_injected(pod) && !fingerprint(pod).is_empty() && !injected_by_policy(pod)
}

fn pod(name: &str, annotations: Value, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": annotations}, "spec": spec})
}

fn app(name: &str) -> Value {
    json!({"name": name, "image": "nginx:1.27"})
}

/// A pod without a token mount: the webhook leaves it alone unless Linkerd projects its own.
fn no_token_pod() -> Value {
    pod("no-token", json!({}), json!({"automountServiceAccountToken": false, "containers": [app("app")]}))
}

/// Bare pods the policy supports, named for what they exercise.
fn supported_pods(support: &admission_policy::Support) -> Vec<Value> {
    let ports = json!({"name": "app", "image": "nginx:1.27",
        "ports": [{"containerPort": 8080, "name": "http"}, {"containerPort": 3306, "name": "mysql"}, {"containerPort": 9090}],
        "livenessProbe": {"httpGet": {"path": "/live", "port": 9091}},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}}});
    vec![
        pod("plain", json!({}), json!({"containers": [app("app")]})),
        pod("own-opt-in", json!({"linkerd.io/inject": "enabled"}), json!({"containers": [app("app")]})),
        pod(
            "ports-and-probes",
            json!({}),
            json!({"initContainers": [{"name": "setup", "image": "busybox", "ports": [{"containerPort": 11211, "name": "cache"}]}],
                "containers": [ports, {"name": "second", "image": "redis", "ports": [{"containerPort": 6379}, {"containerPort": 8080}]}]}),
        ),
        pod(
            "opaque-ports",
            json!({"config.linkerd.io/opaque-ports": "3306, http,8000-8010,9000-9000,080,,"}),
            json!({"containers": [{"name": "app", "image": "nginx", "ports": [{"containerPort": 8080, "name": "http"}]}]}),
        ),
        pod(
            "capabilities",
            json!({}),
            json!({"containers": [{"name": "app", "image": "nginx", "securityContext": {"capabilities":
                {"add": ["NET_BIND_SERVICE"], "drop": ["ALL", "NET_RAW"]}}}]}),
        ),
        pod(
            "app-native-sidecar",
            json!({"other.example/annotation": "kept"}),
            json!({"initContainers": [{"name": "log-shipper", "image": "fluent-bit", "restartPolicy": "Always"}],
                "containers": [app("app")]}),
        ),
        pod(
            "owned-by-daemonset",
            json!({}),
            json!({"containers": [app("app")]}),
        ),
    ]
    .into_iter()
    .chain(support.token_projection.then(no_token_pod))
    .map(|mut pod| {
        if pod["metadata"]["name"] == "owned-by-daemonset" {
            pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agents",
                "uid": "00000000-0000-0000-0000-000000000001", "controller": true}]);
        }
        pod
    })
    .collect()
}

/// Pods the policy leaves to the webhook, and whether the webhook injects them. All are created
/// in namespaces opted in with `enabled`, where a pod's own `ingress` does not count (the
/// namespace's value wins), except `ingress`, which opts in by itself.
fn webhook_pods(support: &admission_policy::Support) -> Vec<(Value, bool)> {
    vec![
        (pod("ingress", json!({"linkerd.io/inject": "ingress"}), json!({"containers": [app("app")]})), true),
        (
            pod(
                "cpu-override",
                json!({"config.linkerd.io/proxy-cpu-request": "200m"}),
                json!({"containers": [app("app")]}),
            ),
            true,
        ),
        (
            pod(
                "unknown-opaque-name",
                json!({"config.linkerd.io/opaque-ports": "nope"}),
                json!({"containers": [app("app")]}),
            ),
            true,
        ),
        (pod("host-network", json!({}), json!({"hostNetwork": true, "containers": [app("app")]})), false),
        (pod("owned-by-job", json!({}), json!({"restartPolicy": "Never", "containers": [app("app")]})), true),
    ]
    .into_iter()
    .chain((!support.token_projection).then(|| (no_token_pod(), false)))
    .map(|(mut pod, injected)| {
        if pod["metadata"]["name"] == "owned-by-job" {
            pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "batch",
                "uid": "00000000-0000-0000-0000-000000000002", "controller": true}]);
        }
        (pod, injected)
    })
    .collect()
}

/// A pod as the policy sees it: after the apiserver's built-in admission (the service-account
/// plugin adds the token mount), before any mutation of ours. A dry run where nothing injects.
async fn admitted(client: &kube::Client, plain_namespace: &str, pod: &Value) -> Value {
    let typed: Pod = serde_json::from_value(pod.clone()).unwrap();
    let api = Api::<Pod>::namespaced(client.clone(), plain_namespace);
    let stored = api.create(&PostParams { dry_run: true, ..PostParams::default() }, &typed).await.unwrap();
    serde_json::to_value(stored).unwrap()
}

fn annotations_of(value: &Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

/// Waits until dry-run pods in `namespace` come back injected the way `injected` tells (the
/// apiserver picks up new policies and registrations after a moment).
pub async fn wait_until_injecting(client: &kube::Client, namespace: &str, injected: fn(&Pod) -> bool) {
    let probe: Pod =
        serde_json::from_value(pod("activation-probe", json!({}), json!({"containers": [app("app")]}))).unwrap();
    let api = Api::<Pod>::namespaced(client.clone(), namespace);
    let started = std::time::Instant::now();
    loop {
        let last = match api.create(&PostParams { dry_run: true, ..PostParams::default() }, &probe).await {
            Ok(pod) if injected(&pod) => return,
            Ok(pod) => format!("{:?}", pod.metadata.annotations),
            Err(error) => error.to_string(),
        };
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "injection never took effect in {namespace}: {last}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The workloads whose controllers create the pods, one of each kind the policy resolves.
/// The workloads whose controllers create pods, as manifests (for `explain` as well).
fn workload_manifests() -> Vec<Value> {
    let template = |app: &str| {
        json!({"metadata": {"labels": {"app": app}}, "spec": {"containers": [{"name": "app", "image": "nginx",
            "ports": [{"containerPort": 80, "name": "http"}]}]}})
    };
    let spec = |app: &str| json!({"replicas": 1, "selector": {"matchLabels": {"app": app}}, "template": template(app)});
    let mut stateful = spec("db");
    stateful["serviceName"] = json!("db");
    vec![
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": spec("web")}),
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "bare"}, "spec": spec("bare")}),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"}, "spec": stateful}),
        json!({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "legacy"},
            "spec": {"replicas": 1, "selector": {"app": "legacy"}, "template": template("legacy")}}),
    ]
}

/// Creates `manifests` in `namespace` (their controllers then create the pods).
async fn create_workloads(client: &kube::Client, namespace: &str, manifests: &[Value]) {
    for manifest in manifests {
        let plural = format!("{}s", manifest["kind"].as_str().unwrap().to_ascii_lowercase());
        let path = match manifest["apiVersion"].as_str().unwrap() {
            "v1" => format!("/api/v1/namespaces/{namespace}/{plural}"),
            group_version => format!("/apis/{group_version}/namespaces/{namespace}/{plural}"),
        };
        let created = create(client, &path, manifest).await;
        assert_eq!(created.status, 201, "{path}: {}", created.body);
    }
}

/// What `explain --injection both --namespace NAMESPACE` says of each manifest: by whom, and the
/// first condition it fails.
fn explained_routes(values: &Value, namespace: &str, manifests: &[Value]) -> Vec<(String, String, String)> {
    let mut document = values.clone();
    document["identityTrustAnchorsPEM"] = json!(trust_anchors());
    let values_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(values_file.path(), document.to_string()).unwrap();
    let mut stream = String::new();
    for manifest in manifests {
        stream.push_str(&manifest::to_yaml(manifest).unwrap());
        stream.push_str("---\n");
    }
    let mut child = std::process::Command::new(binary())
        .args(["explain", "--injection", "both", "-o", "json", "--namespace", namespace, "--values"])
        .arg(values_file.path())
        .arg("--kubeconfig")
        .arg(kubeconfig())
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stream.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let reports: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    reports
        .iter()
        .map(|r| (text(&r["name"]), text(&r["route"]["by"]), text(&r["route"]["unmet"][0]["condition"])))
        .collect()
}

const WORKLOAD_LABELS: [(&str, &str, &str); 4] = [
    ("web", "linkerd.io/proxy-deployment", "web"),
    ("bare", "linkerd.io/proxy-replicaset", "bare"),
    ("db", "linkerd.io/proxy-statefulset", "db"),
    ("legacy", "linkerd.io/proxy-replicationcontroller", "legacy"),
];

/// Everything the equivalence needs, for one configuration of the values.
async fn equivalence(test: &str, values: Value) {
    let client = client().await;
    let (policy_label, webhook_label, both_label, plain_label) =
        (format!("{test}-policy"), format!("{test}-webhook"), format!("{test}-both"), format!("{test}-plain"));
    let mut webhook = WebhookProcess::start(WebhookOptions { values: values.clone(), ..WebhookOptions::default() });
    let (policy_objects, support) = compiled_policy(&values, test, &[&policy_label, &both_label]);
    // Namespace settings the pods inherit: opted in, opted in with opaque ports, not opted in.
    let settings = [
        ("enabled", json!({"linkerd.io/inject": "enabled"})),
        ("opaque", json!({"linkerd.io/inject": "enabled", "config.linkerd.io/opaque-ports": "3306,7000-7002"})),
        ("own", json!({})),
    ];
    for (setting, annotations) in &settings {
        for label in [&policy_label, &webhook_label] {
            namespace(&client, label, &format!("{label}-{setting}"), annotations.clone(), json!({})).await;
        }
    }
    let both_ns = format!("{both_label}-enabled");
    namespace(&client, &both_label, &both_ns, json!({"linkerd.io/inject": "enabled"}), json!({})).await;
    let both_own_ns = format!("{both_label}-own");
    namespace(&client, &both_label, &both_own_ns, json!({}), json!({})).await;
    let plain_ns = format!("{plain_label}-dry-runs");
    namespace(&client, &plain_label, &plain_ns, json!({}), json!({})).await;
    apply(&client, &policy_objects).await;
    register_for(&client, test, &webhook, &[&webhook_label, &both_label]).await;
    wait_until_injecting(&client, &format!("{policy_label}-enabled"), injected_by_policy).await;
    wait_until_injecting(&client, &format!("{webhook_label}-enabled"), injected_by_webhook).await;

    for (setting, namespace_annotations) in &settings {
        let (policy_ns, webhook_ns) = (format!("{policy_label}-{setting}"), format!("{webhook_label}-{setting}"));
        for mut pod in supported_pods(&support) {
            if *setting == "own" {
                pod["metadata"]["annotations"]["linkerd.io/inject"] = json!("enabled");
            }
            let name = format!("{setting}/{}", pod["metadata"]["name"].as_str().unwrap());
            let seen = admitted(&client, &plain_ns, &pod).await;
            let route = admission_policy::route(&support, &seen, Some(&annotations_of(namespace_annotations)));
            assert_eq!(route, admission_policy::Route::Policy, "{name}: the Rust conditions take it");
            let by_policy = create_pod(&client, &policy_ns, &pod).await.unwrap();
            let by_webhook = create_pod(&client, &webhook_ns, &pod).await.unwrap();
            assert!(
                injected_by_policy(&by_policy),
                "{name}: the policy injects it: {:?}",
                by_policy.metadata.annotations
            );
            assert!(injected_by_webhook(&by_webhook), "{name}: the webhook injects it");
            let (policy_parts, webhook_parts) = (injected_parts(&by_policy), injected_parts(&by_webhook));
            if policy_parts != webhook_parts {
                let (a, b) = (manifest::to_yaml(&policy_parts).unwrap(), manifest::to_yaml(&webhook_parts).unwrap());
                let diff = similar::TextDiff::from_lines(&b, &a).unified_diff().header("webhook", "policy").to_string();
                panic!("{name}: the policy and the webhook store different pods:\n{diff}");
            }
        }
    }

    for (pod, injected) in webhook_pods(&support) {
        let name = pod["metadata"]["name"].as_str().unwrap().to_string();
        let (setting, both_ns) =
            if name == "ingress" { (&settings[2], &both_own_ns) } else { (&settings[0], &both_ns) };
        let seen = admitted(&client, &plain_ns, &pod).await;
        let route = admission_policy::route(&support, &seen, Some(&annotations_of(&setting.1)));
        assert!(
            matches!(route, admission_policy::Route::Webhook { .. }),
            "{name}: the Rust conditions leave it: {route:?}"
        );
        let by_policy = create_pod(&client, &format!("{policy_label}-{}", setting.0), &pod).await.unwrap();
        assert!(!is_injected(&by_policy), "{name}: the policy leaves it alone");
        let by_both = create_pod(&client, both_ns, &pod).await.unwrap();
        assert_eq!(injected_by_webhook(&by_both), injected, "{name}: the webhook handles it");
    }

    let manifests = workload_manifests();
    create_workloads(&client, &format!("{policy_label}-enabled"), &manifests).await;
    create_workloads(&client, &format!("{webhook_label}-enabled"), &manifests).await;
    for (name, by, unmet) in explained_routes(&values, &format!("{policy_label}-enabled"), &manifests) {
        assert_eq!((by.as_str(), unmet.as_str()), ("policy", ""), "explain: {name}'s pods are the policy's");
    }
    for (app, label, owner) in WORKLOAD_LABELS {
        let by_policy = wait_for_pods(&client, &format!("{policy_label}-enabled"), &format!("app={app}"), 1).await;
        let by_webhook = wait_for_pods(&client, &format!("{webhook_label}-enabled"), &format!("app={app}"), 1).await;
        assert!(injected_by_policy(&by_policy[0]), "{app}: its controller's pod is injected by the policy");
        assert_eq!(by_policy[0].metadata.labels.as_ref().unwrap()[label], owner, "{app}");
        assert_eq!(injected_parts(&by_policy[0]), injected_parts(&by_webhook[0]), "{app}: the same pod either way");
    }
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"}, "spec": {"template": {
        "metadata": {"labels": {"app": "once"}}, "spec": {"restartPolicy": "Never", "containers": [app("app")]}}}});
    create_workloads(&client, &both_ns, std::slice::from_ref(&job)).await;
    let explained = explained_routes(&values, &both_ns, std::slice::from_ref(&job));
    assert_eq!(explained, [("once".into(), "webhook".into(), "owner-known-without-lookup".into())]);
    let job_pods = wait_for_pods(&client, &both_ns, "app=once", 1).await;
    assert!(injected_by_webhook(&job_pods[0]), "a Job's pod is the webhook's, which finds the Job's owner");
    assert_eq!(job_pods[0].metadata.labels.as_ref().unwrap()["linkerd.io/proxy-job"], "once");

    // The webhook down, with failurePolicy Fail: what the policy injects is still created
    // injected; what it leaves to the webhook is refused, not created without its proxy.
    webhook.terminate();
    let served =
        create_pod(&client, &both_ns, &pod("while-down", json!({}), json!({"containers": [app("app")]}))).await;
    assert!(served.as_ref().is_ok_and(injected_by_policy), "injected with the webhook down: {served:?}");
    let overridden = pod(
        "override-while-down",
        json!({"config.linkerd.io/proxy-cpu-request": "200m"}),
        json!({"containers": [app("app")]}),
    );
    assert!(create_pod(&client, &both_ns, &overridden).await.is_err(), "the webhook's pods wait for the webhook");
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_and_webhook_store_the_same_pods_native_sidecar() {
    equivalence("p01", json!({})).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_and_webhook_store_the_same_pods_classic_sidecar() {
    equivalence("p02", json!({"proxy": {"nativeSidecar": false}})).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_and_webhook_store_the_same_pods_cni_without_token_projection() {
    equivalence(
        "p03",
        json!({"cniEnabled": true, "proxy": {"nativeSidecar": false}, "identity": {"serviceAccountTokenProjection": false}}),
    )
    .await;
}

/// Dry-runs `pod` in `namespace` until the client is warned with `needle`: the apiserver loads a
/// new admission policy a moment after it is stored.
async fn wait_until_warned(client: &kube::Client, namespace: &str, pod: &Value, needle: &str) {
    let path = format!("/api/v1/namespaces/{namespace}/pods?dryRun=All");
    let started = std::time::Instant::now();
    loop {
        let created = send(client, "POST", &path, "application/json", pod).await;
        assert_eq!(created.status, 201, "{}", created.body);
        if created.warnings.iter().any(|w| w.contains(needle)) {
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "no warning {needle:?}: {:?}",
            created.warnings
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Renames the admission policies `install` rendered for `test` and limits them to the
/// namespaces labelled for it, as [`isolate`](crate::install) does for registrations.
pub fn isolate_policies(objects: &mut [Value], test: &str) {
    for object in objects.iter_mut() {
        let kind = object["kind"].as_str().unwrap().to_string();
        let renamed = format!("{}-{test}", object["metadata"]["name"].as_str().unwrap());
        object["metadata"]["name"] = json!(renamed);
        if kind.ends_with("Binding") {
            let policy = format!("{}-{test}", object["spec"]["policyName"].as_str().unwrap());
            object["spec"]["policyName"] = json!(policy);
        } else {
            let expressions =
                object["spec"]["matchConstraints"]["namespaceSelector"]["matchExpressions"].as_array_mut().unwrap();
            expressions.push(json!({"key": TEST_LABEL, "operator": "In", "values": [test]}));
        }
    }
}

fn kinds(objects: &[Value]) -> Vec<&str> {
    objects.iter().map(|o| o["kind"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn install_renders_policies_the_apiserver_runs_and_warns_about_pods_left_without_a_webhook() {
    let client = client().await;
    let values = examples().join("values.yaml").display().to_string();
    let common = ["--ignore-cluster", "--values", &values, "-L", "p04-system"];

    // `both`: the webhook's objects, then the policy, which lets failures through to the webhook.
    let both = install(&[&common[..], &["--injection", "both"]].concat());
    let policy_kinds = ["MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"];
    assert_eq!(
        kinds(&both)[kinds(&both).len() - 3..],
        ["MutatingWebhookConfiguration", policy_kinds[0], policy_kinds[1]]
    );
    let mut both_policy: Vec<Value> =
        both.iter().filter(|o| policy_kinds.contains(&o["kind"].as_str().unwrap())).cloned().collect();
    assert_eq!(both_policy[0]["spec"]["failurePolicy"], "Ignore");

    // `policy`: no webhook, no certificate; the mutation and the warning.
    let standalone = ["--standalone", "--namespace", "p04-system"];
    let alone = install(&[&common[..], &["--injection", "policy"], &standalone[..]].concat());
    assert_eq!(
        kinds(&alone),
        [
            "Namespace",
            "ConfigMap",
            "ConfigMap",
            policy_kinds[0],
            policy_kinds[1],
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding"
        ]
    );
    let (config, mut alone) = (alone[..3].to_vec(), alone[3..].to_vec());
    assert_eq!(both_policy[0]["spec"]["mutations"], alone[0]["spec"]["mutations"], "one compiled mutation");

    isolate_policies(&mut both_policy, "p04-both");
    isolate_policies(&mut alone, "p04");
    apply(&client, &both_policy).await;
    apply(&client, &config).await;
    apply(&client, &alone).await;
    for (label, name) in [("p04-both", "p04-both-apps"), ("p04", "p04-apps")] {
        namespace(&client, label, name, json!({"linkerd.io/inject": "enabled"}), json!({})).await;
        wait_until_injecting(&client, name, injected_by_policy).await;
    }
    namespace(&client, "p04", "p04-off", json!({}), json!({})).await;

    // Created by the policy alone, with the webhook nowhere.
    let created = create(
        &client,
        "/api/v1/namespaces/p04-apps/pods",
        &pod("plain", json!({}), json!({"containers": [app("app")]})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert!(created.warnings.is_empty(), "{:?}", created.warnings);
    let stored: Pod = serde_json::from_value(created.body).unwrap();
    assert!(injected_by_policy(&stored));

    // Opted in, outside the policy's support: created without a proxy, and the client is told why
    // (once the apiserver has loaded the warning policy, which it does apart from the mutation).
    let host = pod("host", json!({}), json!({"hostNetwork": true, "containers": [app("app")]}));
    wait_until_warned(&client, "p04-apps", &host, "it uses the host's network").await;
    let created = create(&client, "/api/v1/namespaces/p04-apps/pods", &host).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let stored: Pod = serde_json::from_value(created.body).unwrap();
    assert!(!is_injected(&stored));
    assert!(
        created.warnings.iter().any(|w| w.contains("created without one")
            && w.contains("it uses the host's network")
            && w.contains("--injection both")),
        "{:?}",
        created.warnings
    );
    let ingress = pod("ingress", json!({"linkerd.io/inject": "ingress"}), json!({"containers": [app("app")]}));
    let created = create(&client, "/api/v1/namespaces/p04-off/pods", &ingress).await;
    assert!(created.warnings.iter().any(|w| w.contains("ingress mode")), "{:?}", created.warnings);

    // Not opted in: no proxy, and nothing to say.
    let created = create(&client, "/api/v1/namespaces/p04-off/pods", &host).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert!(created.warnings.is_empty(), "{:?}", created.warnings);

    // `check` of an installation without a webhook: the policy alone, current, injecting.
    let policy_name = alone[0]["metadata"]["name"].as_str().unwrap();
    let output = std::process::Command::new(binary())
        .args(["check", "-L", "p04-system", "--test-namespace", "p04-apps", "--policy", policy_name])
        .args(["--configuration", "no-webhook-p04", "--kubeconfig"])
        .arg(kubeconfig())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    for line in [
        "√ no webhook configuration no-webhook-p04: the admission policy injects alone (--injection policy)",
        &format!("√ the admission policy {policy_name} exists and is bound"),
        &format!("√ the admission policy {policy_name} is compiled from the current linkerd-config"),
        "√ a dry-run pod in namespace p04-apps comes back injected",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}

/// The policy's digest as stored, or `None` once it is gone.
async fn stored_digest(client: &kube::Client, name: &str) -> Option<String> {
    let gvk = kube::core::GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", "MutatingAdmissionPolicy");
    let api: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &kube::core::ApiResource::from_gvk(&gvk));
    let policy = api.get_opt(name).await.unwrap()?;
    policy.metadata.annotations.and_then(|a| a.get(admission_policy::COMPILED_FROM).cloned())
}

/// Polls until the stored policy's digest is `expected` (`None`: the policy is gone).
async fn wait_for_digest(client: &kube::Client, name: &str, expected: Option<String>, webhook: &WebhookProcess) {
    let started = std::time::Instant::now();
    loop {
        let stored = stored_digest(client, name).await;
        if stored == expected {
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "policy {name}: {stored:?}, expected {expected:?}\n{}",
            webhook.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn digest_of(values: &Value) -> Option<String> {
    let fingerprint = admission_policy::fingerprint(&injector(values)).unwrap();
    Some(fingerprint.trim_start_matches(admission_policy::FINGERPRINT_PREFIX).to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_keeps_the_policy_compiled_from_the_configuration_it_loads() {
    let client = client().await;
    let name = format!("{}-p05", admission_policy::POLICY_NAME);
    namespace(&client, "p05", "p05-apps", json!({"linkerd.io/inject": "enabled"}), json!({})).await;
    let extra_args =
        ["--sync-admission-policy", "--admission-policy-name", &name, "--admission-policy-namespace-label"];
    let mut extra_args: Vec<String> = extra_args.iter().map(|a| a.to_string()).collect();
    extra_args.push(format!("{TEST_LABEL}=p05"));
    // Not registered: every injection here is the synced policy's.
    let webhook = WebhookProcess::start(WebhookOptions { extra_args, ..WebhookOptions::default() });
    wait_for_digest(&client, &name, digest_of(&json!({})), &webhook).await;
    wait_until_injecting(&client, "p05-apps", injected_by_policy).await;

    // A `linkerd upgrade`: the webhook reloads linkerd-config and recompiles the policy.
    let upgraded = json!({"proxy": {"logLevel": "debug"}});
    webhook.set_values(&upgraded);
    wait_for_digest(&client, &name, digest_of(&upgraded), &webhook).await;
    let proxy_log = |pod: &Pod| {
        let spec = pod.spec.as_ref().unwrap();
        let proxy = spec.init_containers.iter().flatten().chain(&spec.containers).find(|c| c.name == "linkerd-proxy");
        let env = proxy.and_then(|p| p.env.as_ref()).into_iter().flatten();
        env.filter(|e| e.name == "LINKERD2_PROXY_LOG").find_map(|e| e.value.clone())
    };
    let started = std::time::Instant::now();
    loop {
        let pod =
            admitted(&client, "p05-apps", &pod("after-upgrade", json!({}), json!({"containers": [app("app")]}))).await;
        let pod: Pod = serde_json::from_value(pod).unwrap();
        if injected_by_policy(&pod) && proxy_log(&pod).is_some_and(|log| log.starts_with("debug,")) {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the upgraded policy never injected: {:?} {:?}",
            proxy_log(&pod),
            pod.metadata.annotations
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // A configuration the policy cannot express: the policy goes, rather than inject stale proxies.
    let tracing = json!({"proxy": {"tracing": {"enabled": true, "collector": {"endpoint": "c:4317",
        "meshIdentity": {"serviceAccountName": "c", "namespace": "t"}}}}});
    webhook.set_values(&tracing);
    wait_for_digest(&client, &name, None, &webhook).await;
    assert!(webhook.logs().contains("the configuration has no admission policy"), "{}", webhook.logs());
    assert!(webhook.metric("proxy_injector_config_reloads_total{source=\"admission-policy\"}") >= 3.0);
}

/// One histogram of the apiserver's `/metrics`, summed over the series whose labels contain
/// every one of `labels`: count, sum, and cumulative counts by upper bound.
#[derive(Debug, Default, Clone)]
struct Histogram {
    count: f64,
    sum: f64,
    buckets: Vec<(f64, f64)>,
}

impl Histogram {
    fn scrape(metrics: &str, name: &str, labels: &[&str]) -> Histogram {
        let mut histogram = Histogram::default();
        let mut buckets: std::collections::BTreeMap<String, f64> = std::collections::BTreeMap::new();
        for line in metrics.lines().filter(|l| labels.iter().all(|w| l.contains(w))) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let (metric, series_labels) = series.split_once('{').unwrap_or((series, ""));
            let value: f64 = value.parse().unwrap_or(0.0);
            match metric.strip_prefix(name) {
                Some("_count") => histogram.count += value,
                Some("_sum") => histogram.sum += value,
                Some("_bucket") => {
                    let le = series_labels.trim_end_matches('}').split(',').find_map(|l| l.strip_prefix("le="));
                    *buckets.entry(le.unwrap_or_default().trim_matches('"').to_string()).or_default() += value;
                }
                _ => {}
            }
        }
        histogram.buckets = buckets.into_iter().map(|(le, n)| (le.parse().unwrap_or(f64::INFINITY), n)).collect();
        histogram.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        histogram
    }

    fn since(&self, before: &Histogram) -> Histogram {
        let earlier = |le: f64| before.buckets.iter().find(|(l, _)| *l == le).map_or(0.0, |(_, n)| *n);
        Histogram {
            count: self.count - before.count,
            sum: self.sum - before.sum,
            buckets: self.buckets.iter().map(|(le, n)| (*le, n - earlier(*le))).collect(),
        }
    }

    /// The upper bound of the bucket holding quantile `q`.
    fn quantile_bound(&self, q: f64) -> f64 {
        let rank = q * self.count;
        self.buckets.iter().find(|(_, n)| *n >= rank).map_or(f64::INFINITY, |(le, _)| *le)
    }

    fn describe(&self) -> String {
        if self.count == 0.0 {
            return "no calls".into();
        }
        format!(
            "{} calls, mean {:.3} ms, p50 ≤ {} ms, p99 ≤ {} ms",
            self.count,
            self.sum / self.count * 1000.0,
            self.quantile_bound(0.5) * 1000.0,
            self.quantile_bound(0.99) * 1000.0
        )
    }
}

/// The admission histograms of one path.
fn admission_histograms(metrics: &str, policy: &str) -> [(String, Histogram); 4] {
    let plugin = |name: &str| {
        Histogram::scrape(
            metrics,
            "apiserver_admission_controller_admission_duration_seconds",
            &[&format!("name=\"{name}\""), "operation=\"CREATE\"", "type=\"admit\""],
        )
    };
    [
        (
            "admit step (all mutating plugins)".into(),
            Histogram::scrape(
                metrics,
                "apiserver_admission_step_admission_duration_seconds",
                &["operation=\"CREATE\"", "type=\"admit\""],
            ),
        ),
        ("MutatingAdmissionPolicy plugin".into(), plugin("MutatingAdmissionPolicy")),
        ("MutatingAdmissionWebhook plugin".into(), plugin("MutatingAdmissionWebhook")),
        (
            format!("policy {policy} (CEL)"),
            Histogram::scrape(
                metrics,
                "apiserver_mutating_admission_policy_check_duration_seconds",
                &[&format!("policy=\"{policy}\"")],
            ),
        ),
    ]
}

/// A burst of 1,000 pods through the policy, then through the webhook, on the same control plane:
/// wall time, client-side latency, and the apiserver's own admission histograms for each path.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark; run alone by `cargo xtask bench policy`, so no other test's pods count"]
async fn a_burst_of_1000_pods_through_the_policy_and_through_the_webhook() {
    use futures::StreamExt;
    let client = client().await;
    let values = json!({});
    let webhook = WebhookProcess::start(WebhookOptions { values: values.clone(), ..WebhookOptions::default() });
    let (policy_objects, _) = compiled_policy(&values, "p06", &["p06-policy"]);
    let policy_name = policy_objects[0]["metadata"]["name"].as_str().unwrap().to_string();
    for label in ["p06-policy", "p06-webhook"] {
        namespace(&client, label, &format!("{label}-apps"), json!({"linkerd.io/inject": "enabled"}), json!({})).await;
    }
    apply(&client, &policy_objects).await;
    register_for(&client, "p06", &webhook, &["p06-webhook"]).await;
    wait_until_injecting(&client, "p06-policy-apps", injected_by_policy).await;
    wait_until_injecting(&client, "p06-webhook-apps", injected_by_webhook).await;
    let scrape =
        || async { client.request_text(http::Request::get("/metrics").body(Vec::new()).unwrap()).await.unwrap() };

    for (path, injected) in [("policy", injected_by_policy as fn(&Pod) -> bool), ("webhook", injected_by_webhook)] {
        let ns = format!("p06-{path}-apps");
        let before = admission_histograms(&scrape().await, &policy_name);
        let started = std::time::Instant::now();
        let results: Vec<(std::time::Duration, Result<Pod, kube::Error>)> = futures::stream::iter(0..1000)
            .map(|i| {
                let (client, ns) = (client.clone(), ns.clone());
                async move {
                    let sent = std::time::Instant::now();
                    let created = create_pod(
                        &client,
                        &ns,
                        &pod(&format!("burst-{i}"), json!({}), json!({"containers": [app("app")]})),
                    )
                    .await;
                    (sent.elapsed(), created)
                }
            })
            .buffer_unordered(200)
            .collect()
            .await;
        let wall = started.elapsed();
        let after = admission_histograms(&scrape().await, &policy_name);
        let failed = results.iter().filter(|(_, r)| r.is_err()).count();
        assert_eq!(failed, 0, "{path}: {failed} of 1000 failed");
        assert!(results.iter().all(|(_, r)| injected(r.as_ref().unwrap())), "{path}: every pod injected by its path");
        let mut latencies: Vec<f64> = results.iter().map(|(d, _)| d.as_secs_f64() * 1000.0).collect();
        latencies.sort_by(f64::total_cmp);
        println!(
            "burst through the {path}: 1000 pods in {:.2} s ({:.0} pods/s); client create latency p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            wall.as_secs_f64(),
            1000.0 / wall.as_secs_f64(),
            latencies[499],
            latencies[989],
            latencies[999]
        );
        for ((what, after), (_, before)) in after.iter().zip(&before) {
            println!("  {what}: {}", after.since(before).describe());
        }
    }
    drop(webhook);
}

/// Polls until `name` exists (or, with `present` false, is gone): the process applies and
/// deletes the warning policy just after the mutating one.
async fn wait_for_presence(api: &Api<kube::api::DynamicObject>, name: &str, present: bool, webhook: &WebhookProcess) {
    let started = std::time::Instant::now();
    while api.get_opt(name).await.unwrap().is_some() != present {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{name}: present is not {present}\n{}",
            webhook.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_process_alone_keeps_the_policy_and_its_warning() {
    let client = client().await;
    let name = format!("{}-p07", admission_policy::POLICY_NAME);
    namespace(&client, "p07", "p07-apps", json!({"linkerd.io/inject": "enabled"}), json!({})).await;
    let mut extra_args: Vec<String> =
        ["--sync-admission-policy", "--admission-policy-alone", "--admission-policy-name", &name]
            .iter()
            .map(|a| a.to_string())
            .collect();
    extra_args.extend(["--admission-policy-namespace-label".into(), format!("{TEST_LABEL}=p07")]);
    // Registered nowhere, as `install --injection policy --sync-policy` leaves it.
    let webhook = WebhookProcess::start(WebhookOptions { extra_args, on_error: "deny", ..WebhookOptions::default() });
    wait_for_digest(&client, &name, digest_of(&json!({})), &webhook).await;
    let gvk = |kind: &str| kube::core::GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
    let policies: Api<kube::api::DynamicObject> =
        Api::all_with(client.clone(), &kube::core::ApiResource::from_gvk(&gvk("MutatingAdmissionPolicy")));
    assert_eq!(policies.get(&name).await.unwrap().data["spec"]["failurePolicy"], "Fail", "--on-error deny, alone");
    let warnings: Api<kube::api::DynamicObject> =
        Api::all_with(client.clone(), &kube::core::ApiResource::from_gvk(&gvk("ValidatingAdmissionPolicy")));
    let warning_name = admission_policy::unserved::name(&name);
    wait_for_presence(&warnings, &warning_name, true, &webhook).await;
    wait_until_injecting(&client, "p07-apps", injected_by_policy).await;

    let host = pod("host", json!({}), json!({"hostNetwork": true, "containers": [app("app")]}));
    wait_until_warned(&client, "p07-apps", &host, "it uses the host's network").await;

    // A configuration without a policy removes both.
    let tracing = json!({"proxy": {"tracing": {"enabled": true, "collector": {"endpoint": "c:4317",
        "meshIdentity": {"serviceAccountName": "c", "namespace": "t"}}}}});
    webhook.set_values(&tracing);
    wait_for_digest(&client, &name, None, &webhook).await;
    wait_for_presence(&warnings, &warning_name, false, &webhook).await;
}
