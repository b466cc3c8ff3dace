//! The command line, run as a user runs it: the real binary on real files.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::{Value, json};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn cli() -> Command {
    let mut command = Command::cargo_bin("proxy-injector").unwrap();
    command.env_remove("KUBECONFIG").env_remove("LINKERD_NAMESPACE").env_remove("LINKERD_DOCKER_REGISTRY");
    command
}

fn values() -> String {
    examples().join("values.yaml").display().to_string()
}

fn documents(text: &str) -> Vec<Value> {
    manifest::parse_stream(text).unwrap().into_iter().map(|d| d.value).collect()
}

fn run_ok(command: &mut Command) -> (String, String) {
    let output = command.output().unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "failed: {stderr}");
    (String::from_utf8(output.stdout).unwrap(), stderr)
}

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: ns\nspec:\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: web\n        image: web:v1\n        ports:\n        - containerPort: 80\n";

#[test]
fn default_inject_adds_only_the_annotation_and_keeps_other_documents_verbatim() {
    let path = examples().join("manifests/emojivoto.yaml");
    let (stdout, stderr) = run_ok(cli().args(["inject", "--ignore-cluster"]).arg(&path));
    let docs = documents(&stdout);
    assert_eq!(docs[1]["spec"]["template"]["metadata"]["annotations"], json!({"linkerd.io/inject": "enabled"}));
    assert!(stdout.contains(
        "# Settings that are not workloads pass through untouched, comments included.\napiVersion: v1\nkind: ConfigMap"
    ));
    assert!(!stdout.contains("creationTimestamp") && !stdout.contains("resources: {}"));
    assert_eq!(
        stderr,
        "\nservice \"web-svc\" skipped\ndeployment \"web\" injected\nconfigmap \"settings\" skipped\n\n"
    );
}

#[test]
fn manual_inject_is_idempotent_and_uninject_restores_the_input() {
    let input = examples().join("manifests/database.yaml");
    let (once, _) = run_ok(cli().args(["inject", "--manual", "--values", &values()]).arg(&input));
    let injected = documents(&once);
    let template = &injected[0]["spec"]["template"];
    let inits: Vec<&str> =
        template["spec"]["initContainers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(inits, ["linkerd-init", "linkerd-proxy"]);
    assert_eq!(template["metadata"]["labels"]["linkerd.io/proxy-statefulset"], "mysql");
    let proxy = &template["spec"]["initContainers"][1];
    assert_eq!(proxy["resources"], json!({"limits": {"memory": "128Mi"}, "requests": {"cpu": "250m"}}));
    assert_eq!(
        injected[1]["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]["linkerd.io/proxy-cronjob"],
        "backup"
    );

    let (twice, _) = run_ok(cli().args(["inject", "--manual", "--values", &values(), "-"]).write_stdin(once.clone()));
    assert_eq!(twice, once);

    let (uninjected, stderr) = run_ok(cli().args(["uninject", "-"]).write_stdin(once));
    assert_eq!(documents(&uninjected), documents(&std::fs::read_to_string(&input).unwrap()));
    assert_eq!(stderr, "\nstatefulset \"mysql\" uninjected\ncronjob \"backup\" uninjected\n\n");
}

#[test]
fn manual_inject_without_trust_anchors_fails_without_output() {
    cli()
        .args(["inject", "--manual", "--ignore-cluster", "-"])
        .write_stdin(DEPLOYMENT)
        .assert()
        .failure()
        .stdout("")
        .stderr(predicate::str::contains(
            "<stdin>: document 1 (deployment/web): Please provide the identity trust anchors",
        ));
}

#[test]
fn json_input_and_output() {
    let pod =
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}});
    let (stdout, _) =
        run_ok(cli().args(["inject", "--ignore-cluster", "-o", "json", "-"]).write_stdin(pod.to_string()));
    assert!(stdout.ends_with("}\n") && !stdout.contains("---"));
    let out: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(out["metadata"]["annotations"]["linkerd.io/inject"], "enabled");
}

#[test]
fn lists_are_transformed_item_by_item() {
    let list = format!(
        "apiVersion: v1\nkind: List\nitems:\n- {}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: c\n",
        DEPLOYMENT.replace('\n', "\n  ").trim_end()
    );
    let (stdout, stderr) = run_ok(cli().args(["inject", "--ignore-cluster", "-"]).write_stdin(list));
    let out = &documents(&stdout)[0];
    assert_eq!(out["kind"], "List");
    assert_eq!(out["items"][0]["spec"]["template"]["metadata"]["annotations"]["linkerd.io/inject"], "enabled");
    assert_eq!(out["items"][1]["metadata"]["name"], "c");
    assert!(stderr.contains("deployment \"web\" injected\nconfigmap \"c\" skipped"));
}

#[test]
fn directories_are_read_recursively_in_lexical_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("b")).unwrap();
    std::fs::write(dir.path().join("b/x.yaml"), DEPLOYMENT.replace("name: web", "name: second")).unwrap();
    std::fs::write(dir.path().join("a.yml"), DEPLOYMENT.replace("name: web", "name: first")).unwrap();
    std::fs::write(dir.path().join("c.txt"), DEPLOYMENT.replace("name: web", "name: third")).unwrap();
    let (stdout, stderr) = run_ok(cli().args(["inject", "--ignore-cluster"]).arg(dir.path()));
    let names: Vec<Value> = documents(&stdout).iter().map(|d| d["metadata"]["name"].clone()).collect();
    assert_eq!(names, [json!("first"), json!("second"), json!("third")]);
    assert_eq!(stderr.matches("injected").count(), 3);
}

#[test]
fn flags_write_override_annotations_and_bad_flags_name_the_flag() {
    let (stdout, _) = run_ok(
        cli()
            .args([
                "inject",
                "--ignore-cluster",
                "--admin-port",
                "1234",
                "--ingress",
                "--skip-inbound-ports",
                "25,8000-8100",
                "-",
            ])
            .write_stdin(DEPLOYMENT),
    );
    let annotations = &documents(&stdout)[0]["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        annotations,
        &json!({"config.linkerd.io/admin-port": "1234", "config.linkerd.io/skip-inbound-ports": "25,8000-8100", "linkerd.io/inject": "ingress"})
    );
    cli()
        .args(["inject", "--ignore-cluster", "--proxy-uid", "root", "-"])
        .write_stdin(DEPLOYMENT)
        .assert()
        .failure()
        .stdout("")
        .stderr(predicate::str::contains("invalid value \"root\" for --proxy-uid"));
}

#[test]
fn existing_ingress_mode_is_kept_on_reinjection() {
    let ingress = DEPLOYMENT
        .replace("      labels:\n", "      annotations:\n        linkerd.io/inject: ingress\n      labels:\n");
    let (stdout, _) = run_ok(cli().args(["inject", "--ignore-cluster", "-"]).write_stdin(ingress));
    assert_eq!(documents(&stdout)[0]["spec"]["template"]["metadata"]["annotations"]["linkerd.io/inject"], "ingress");
}

#[test]
fn parse_errors_name_the_input_document_and_line() {
    let broken = format!("{DEPLOYMENT}---\nkind: Pod\nmetadata:\n  name: x\n   bad: indent\n");
    cli()
        .args(["inject", "--ignore-cluster", "-"])
        .write_stdin(broken)
        .assert()
        .failure()
        .stdout("")
        .stderr(predicate::str::contains("Error: <stdin>: document 2 (line 18): line 21"));
}

#[test]
fn host_network_is_an_error_only_when_it_would_be_injected() {
    let host = DEPLOYMENT.replace("      containers:", "      hostNetwork: true\n      containers:");
    cli().args(["inject", "--ignore-cluster", "-"])
        .write_stdin(host.clone())
        .assert()
        .failure()
        .stdout("")
        .stderr(predicate::str::contains(
            "Error transforming resources:\n<stdin>: document 1 (deployment/web): failed to inject deployment/web: hostNetwork is enabled",
        ));
    let disabled =
        host.replace("      labels:\n", "      annotations:\n        linkerd.io/inject: disabled\n      labels:\n");
    let (_, stderr) = run_ok(cli().args(["inject", "--ignore-cluster", "--verbose", "-"]).write_stdin(disabled));
    assert!(stderr.contains("‼ \"hostNetwork: true\" detected in deployment/web"), "{stderr}");
    assert!(stderr.contains("‼ \"linkerd.io/inject: disabled\" annotation set on deployment/web"), "{stderr}");
    assert!(stderr.contains("√ pod specs do not include UDP ports"), "{stderr}");
    assert!(stderr.contains("deployment \"web\" skipped"), "{stderr}");
}

#[test]
fn invalid_annotations_are_reported() {
    let bad = DEPLOYMENT.replace(
        "      labels:\n",
        "      annotations:\n        config.linkerd.io/proxy-cpu-limit: lots\n      labels:\n",
    );
    let (_, stderr) = run_ok(cli().args(["inject", "--ignore-cluster", "-"]).write_stdin(bad));
    assert!(
        stderr.contains("‼ deployment/web: annotation config.linkerd.io/proxy-cpu-limit: invalid value \"lots\": expected a Kubernetes quantity"),
        "{stderr}"
    );
}

#[test]
fn missing_inputs_and_plain_http_are_refused() {
    cli()
        .args(["inject", "--ignore-cluster"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("please specify a kubernetes resource file"));
    cli()
        .args(["inject", "--ignore-cluster", "/no/such/file.yaml"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("cannot read /no/such/file.yaml"));
    cli()
        .args(["inject", "--ignore-cluster", "http://example.invalid/x.yaml"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("only HTTPS URLs are allowed"));
}

#[test]
fn an_unreachable_cluster_suggests_offline_use() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: t\n",
    )
    .unwrap();
    cli()
        .env("KUBECONFIG", &kubeconfig)
        .args(["inject", "-"])
        .write_stdin(DEPLOYMENT)
        .assert()
        .failure()
        .stdout("")
        .stderr(predicate::str::contains("cannot read the Linkerd configuration from the cluster; use --values FILE"));
}

#[test]
fn explain_answers_as_the_webhook_would() {
    let (stdout, _) = run_ok(
        cli()
            .args(["explain", "--values", &values(), "-o", "json", "--patch", "--namespace-file"])
            .arg(examples().join("namespace.yaml"))
            .arg(examples().join("not-injected/skipped.yaml"))
            .arg(examples().join("manifests/emojivoto.yaml")),
    );
    let reports: Value = serde_json::from_str(&stdout).unwrap();
    let by_name = |name: &str| reports.as_array().unwrap().iter().find(|r| r["name"] == name).unwrap().clone();
    let agent = by_name("node-agent");
    assert_eq!(agent["result"]["reasons"][0]["code"], "host_network_enabled");
    let legacy = by_name("legacy");
    assert_eq!(legacy["result"]["reasons"][0]["code"], "injection_disable_annotation_present");
    assert!(legacy["result"]["warnings"][0].as_str().unwrap().contains("config.linkerd.io/admin-port"));
    let web = by_name("web");
    assert_eq!(web["result"]["inject"], true);
    assert_eq!(web["result"]["annotationAt"], "namespace");
    let log_level =
        web["result"]["configuration"].as_array().unwrap().iter().find(|s| s["setting"] == "logLevel").unwrap();
    assert_eq!(log_level["source"], "namespace annotation");
    let patch: Vec<Value> = serde_json::from_value(web["result"]["patch"].clone()).unwrap();
    assert!(patch.iter().any(|op| op["path"] == "/metadata/labels/linkerd.io~1proxy-deployment"));
    let service = by_name("web-svc");
    assert_eq!(service["result"]["action"], "unchanged");
}

#[test]
fn explain_says_who_injects_each_pod_under_each_installation_mode() {
    let dir = tempfile::tempdir().unwrap();
    let namespace = dir.path().join("shop.yaml");
    std::fs::write(
        &namespace,
        "kind: Namespace\nmetadata:\n  name: shop\n  annotations:\n    linkerd.io/inject: enabled\n",
    )
    .unwrap();
    let explain = |injection: &str, extra: &[&str]| {
        let (stdout, _) = run_ok(
            cli()
                .args(["explain", "--values", &values(), "--injection", injection, "--namespace-file"])
                .arg(&namespace)
                .args(extra)
                .arg(examples().join("manifests")),
        );
        stdout
    };
    let reports: Value = serde_json::from_str(&explain("both", &["-o", "json"])).unwrap();
    let route = |name: &str| reports.as_array().unwrap().iter().find(|r| r["name"] == name).unwrap()["route"].clone();
    assert_eq!(route("web"), json!({"injection": "both", "by": "policy", "unmet": []}));
    assert_eq!(route("backup")["by"], "webhook");
    assert_eq!(route("backup")["unmet"][0]["condition"], "owner-known-without-lookup");
    assert_eq!(route("mysql")["unmet"][0]["condition"], "own-annotations-supported");
    assert_eq!(route("web-svc"), Value::Null, "only pods that are injected have a route");

    cli()
        .args(["explain", "--values", &values(), "--injection", "both"])
        .arg(examples().join("manifests"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("give the namespace with --namespace or --namespace-file"));

    let table = explain("policy", &[]);
    assert!(table.contains("injected by: the admission policy proxy-injector.linkerd.io"), "{table}");
    assert!(table.contains("injected by: nobody: --injection policy installs no webhook"), "{table}");

    // Without token projection the proxy needs the app's token mount, which the apiserver adds
    // to every pod that does not opt out: explain sees the pod as admission will.
    let no_projection = dir.path().join("no-projection.yaml");
    std::fs::write(&no_projection, "identity: {serviceAccountTokenProjection: false}\n").unwrap();
    let reports: Value =
        serde_json::from_str(&explain("both", &["-o", "json", "--values", no_projection.to_str().unwrap()])).unwrap();
    let web = reports.as_array().unwrap().iter().find(|r| r["name"] == "web").unwrap();
    assert_eq!(web["result"]["inject"], true, "{web}");
    assert_eq!(web["route"]["by"], "policy", "{web}");

    // A one-key values file on top: tracing, which the policy cannot compile.
    let tracing = dir.path().join("tracing.yaml");
    std::fs::write(&tracing, "proxy: {tracing: {enabled: true, collector: {endpoint: c:4317, meshIdentity: {serviceAccountName: c, namespace: t}}}}\n").unwrap();
    let reports: Value =
        serde_json::from_str(&explain("both", &["-o", "json", "--values", tracing.to_str().unwrap()])).unwrap();
    let web = reports.as_array().unwrap().iter().find(|r| r["name"] == "web").unwrap();
    assert_eq!(web["route"]["by"], "webhook");
    assert!(web["route"]["unmet"][0]["why"].as_str().unwrap().contains("proxy.tracing.enabled"), "{web}");
}

/// The init container's arguments, exactly as `inject --manual` renders them, drive `proxy-init`.
#[test]
fn proxy_init_simulate_accepts_the_injected_arguments() {
    let (injected, _) =
        run_ok(cli().args(["inject", "--manual", "-o", "json", "--values", &values(), "-"]).write_stdin(DEPLOYMENT));
    let deployment: Value = serde_json::from_str(injected.trim()).unwrap();
    let init = &deployment["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(init["name"], "linkerd-init");
    let args: Vec<&str> = init["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let (stdout, _) = run_ok(cli().args(["proxy-init", "--simulate"]).args(&args));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"*nat"));
    assert_eq!(lines.last(), Some(&"COMMIT"));
    assert!(lines.contains(
        &"-A PROXY_INIT_OUTPUT -m owner --uid-owner 2102 -j RETURN -m comment --comment proxy-init/ignore-proxy-user-id"
    ));
    assert_eq!(lines.iter().filter(|l| l.starts_with("-A ")).count(), 8, "{stdout}");
}

#[test]
fn install_renders_ha_as_json() {
    let (stdout, _) = run_ok(cli().args(["install", "--ignore-cluster", "--ha", "-o", "json"]));
    let list: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(list["kind"], "List");
    let items = list["items"].as_array().unwrap();
    let kind = |k: &str| items.iter().find(|o| o["kind"] == k).unwrap_or_else(|| panic!("no {k}")).clone();
    assert_eq!(kind("Deployment")["spec"]["replicas"], 3);
    assert!(kind("Deployment")["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"].is_object());
    assert_eq!(kind("PodDisruptionBudget")["spec"]["minAvailable"], 1);
    let webhook = &kind("MutatingWebhookConfiguration")["webhooks"][0];
    assert_eq!(webhook["failurePolicy"], "Fail");
    assert_eq!(
        webhook["clientConfig"]["service"],
        json!({"name": "proxy-injector", "namespace": "linkerd", "path": "/"})
    );
    let args = &kind("Deployment")["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(args.as_array().unwrap().contains(&json!("--on-error=deny")), "{args}");
    assert!(items.iter().all(|o| o["kind"] != "ConfigMap"), "Linkerd's ConfigMaps are mounted, not rendered");
}

#[test]
fn install_runs_the_reconciler_beside_the_webhook_only_when_asked() {
    let items = |extra: &[&str]| {
        let (stdout, _) = run_ok(cli().args(["install", "--ignore-cluster", "-o", "json"]).args(extra));
        let list: Value = serde_json::from_str(stdout.trim()).unwrap();
        list["items"].as_array().unwrap().clone()
    };
    let kind = |items: &[Value], k: &str| items.iter().find(|o| o["kind"] == k).unwrap().clone();
    let resources = |items: &[Value]| -> Vec<String> {
        let rules = kind(items, "ClusterRole")["rules"].as_array().unwrap().clone();
        rules
            .iter()
            .flat_map(|r| r["resources"].as_array().unwrap().clone())
            .map(|r| r.as_str().unwrap().to_string())
            .collect()
    };
    let plain = items(&[]);
    assert_eq!(kind(&plain, "Deployment")["spec"]["template"]["spec"]["containers"].as_array().unwrap().len(), 1);
    assert!(!resources(&plain).contains(&"pods".to_string()), "the webhook alone reads no pods");

    let with = items(&["--reconcile"]);
    let containers = kind(&with, "Deployment")["spec"]["template"]["spec"]["containers"].clone();
    let reconciler = &containers[1];
    assert_eq!(reconciler["name"], "reconciler");
    let args: Vec<&str> = reconciler["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args[0], "reconcile");
    assert!(args.contains(&"--values=/var/run/linkerd/config/values"), "{args:?}");
    assert_eq!(
        reconciler["volumeMounts"],
        json!([
        {"name": "config", "mountPath": "/var/run/linkerd/config", "readOnly": true},
        {"name": "trust-roots", "mountPath": "/var/run/linkerd/identity/trust-roots", "readOnly": true}])
    );
    assert_eq!(reconciler["env"][0]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name");
    for resource in ["pods", "deployments", "statefulsets", "daemonsets", "poddisruptionbudgets", "leases"] {
        assert!(resources(&with).contains(&resource.to_string()), "{resource}");
    }
    let rules = kind(&with, "ClusterRole")["rules"].clone();
    let deployments = rules.as_array().unwrap().iter().find(|r| r["resources"][0] == "deployments").unwrap();
    assert_eq!(deployments["verbs"], json!(["get", "list", "watch", "patch"]), "restarts are patches, never deletes");
}

#[test]
fn install_refuses_bad_options_clearly() {
    cli()
        .args(["install", "--ignore-cluster", "--standalone"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("--standalone needs the identity trust anchors"));
    cli()
        .args(["install", "--ignore-cluster", "--set", "proxyInit.iptablesMode=ebpf"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("proxyInit.iptablesMode"));
    cli()
        .args(["install", "--ignore-cluster", "--webhook-url", "http://x"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("--webhook-url"));
    cli()
        .args(["install", "--ignore-cluster", "--injection", "policy", "--reconcile", "--values", &values()])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "--reconcile configures the webhook, which --injection policy does not register",
        ));
    cli().args(["install", "--ignore-cluster", "--sync-policy"]).assert().failure().stderr(predicate::str::contains(
        "--sync-policy keeps an admission policy in sync: use it with --injection both or policy",
    ));
    // The policy compiles the trust anchors in; the chart defaults have none.
    cli()
        .args(["install", "--ignore-cluster", "--injection", "both"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("identityTrustAnchorsPEM"));
    cli()
        .args(["install", "--ignore-cluster", "--injection", "both", "--values", &values()])
        .args(["--set", "proxy.tracing.enabled=true", "--set", "proxy.tracing.collector.endpoint=collector:4317"])
        .args(["--set", "proxy.tracing.collector.meshIdentity.serviceAccountName=collector"])
        .args(["--set", "proxy.tracing.collector.meshIdentity.namespace=tracing"])
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("does not support proxy.tracing.enabled")
                .and(predicate::str::contains("use --injection webhook")),
        );
}

/// The README's first command, exactly as written there.
#[test]
fn the_readme_example_runs() {
    let readme = std::fs::read_to_string(examples().join("../README.md")).unwrap();
    let command = "cargo run --release -- inject --manual --values examples/values.yaml examples/manifests/";
    assert!(readme.contains(command), "the README shows: {command}");
    let (stdout, stderr) = run_ok(cli().current_dir(examples().join("..")).args([
        "inject",
        "--manual",
        "--values",
        "examples/values.yaml",
        "examples/manifests/",
    ]));
    assert_eq!(stdout.matches("restartPolicy: Always\n").count(), 3, "three workloads get the native-sidecar proxy");
    assert!(
        stderr.contains("deployment \"web\" injected") && stderr.contains("cronjob \"backup\" injected"),
        "{stderr}"
    );
}
