//! `install` and `check` against the real apiserver.

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};

use crate::harness::*;

pub fn install(args: &[&str]) -> Vec<Value> {
    let output =
        Command::new(binary()).args(["install", "--kubeconfig"]).arg(kubeconfig()).args(args).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    manifest::parse_stream(&String::from_utf8(output.stdout).unwrap()).unwrap().into_iter().map(|d| d.value).collect()
}

fn find<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects.iter().find(|o| o["kind"] == kind).unwrap_or_else(|| panic!("no {kind}"))
}

fn secret_text(objects: &[Value], key: &str) -> String {
    let encoded = find(objects, "Secret")["data"][key].as_str().unwrap();
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()).unwrap()
}

/// Server-side applies every object, as `kubectl apply --server-side` does.
pub async fn apply(client: &kube::Client, objects: &[Value]) {
    for object in objects {
        let (group, version) = match object["apiVersion"].as_str().unwrap().split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", object["apiVersion"].as_str().unwrap()),
        };
        let gvk = GroupVersionKind::gvk(group, version, object["kind"].as_str().unwrap());
        let (resource, capabilities) = kube::discovery::pinned_kind(client, &gvk).await.unwrap();
        let api: Api<DynamicObject> = match (capabilities.scope, object["metadata"]["namespace"].as_str()) {
            (kube::discovery::Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
            _ => Api::all_with(client.clone(), &resource),
        };
        let typed: DynamicObject = serde_json::from_value(object.clone()).unwrap();
        let name = typed.metadata.name.clone().unwrap();
        api.patch(&name, &PatchParams::apply("proxy-injector-e2e").force(), &Patch::Apply(&typed))
            .await
            .unwrap_or_else(|e| panic!("{} {name} refused: {e}", object["kind"]));
    }
}

/// Gives a rendered registration this test's own name and limits it to this test's namespaces,
/// as the harness does for the other tests.
fn isolate(objects: &mut [Value], test: &str) {
    for object in objects.iter_mut().filter(|o| o["kind"] == "MutatingWebhookConfiguration") {
        object["metadata"]["name"] = json!(configuration_name(test));
        limit_to_test(object, test);
    }
}

fn configuration_name(test: &str) -> String {
    format!("{}-{test}", webhook::registration::CONFIGURATION_NAME)
}

fn check(test: &str, namespace: &str, test_namespace: &str) -> (bool, String) {
    let output = Command::new(binary())
        .args(["check", "--namespace", namespace, "-L", namespace, "--test-namespace", test_namespace])
        .args([
            "--configuration",
            &configuration_name(test),
            "--policy",
            &format!("{}-{test}", admission_policy::POLICY_NAME),
        ])
        .arg("--kubeconfig")
        .arg(kubeconfig())
        .output()
        .unwrap();
    (
        output.status.success(),
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn install_is_accepted_drives_injection_and_check_verifies_it() {
    let client = client().await;
    let (system, apps) = ("i01-system", "i01-apps");
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}/");
    let values = examples().join("values.yaml").display().to_string();
    let common = ["--standalone", "--namespace", system, "-L", system, "--values", &values, "--webhook-url", &url];
    let mut objects = install(&[&common[..], &["--ignore-cluster"]].concat());
    let kinds: Vec<&str> = objects.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "ConfigMap",
            "Secret",
            "Deployment",
            "Service",
            "MutatingWebhookConfiguration"
        ]
    );
    let container = &find(&objects, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    isolate(&mut objects, "i01");
    apply(&client, &objects).await;

    // Re-installing reads the certificate back instead of rotating it.
    let again = install(&common);
    assert_eq!(secret_text(&again, "tls.crt"), secret_text(&objects, "tls.crt"), "the certificate was not rotated");

    // The installed pieces drive injection: a local webhook serving the installed Secret.
    let webhook = WebhookProcess::start(WebhookOptions {
        port: Some(port),
        tls: Some((secret_text(&objects, "tls.crt"), secret_text(&objects, "tls.key"))),
        ..WebhookOptions::default()
    });
    namespace(&client, "i01", apps, json!({"linkerd.io/inject": "enabled"}), json!({})).await;
    wait_until_active(&client, apps).await;
    let (ok, output) = check("i01", system, apps);
    assert!(ok, "{output}");
    for line in [
        "√ the webhook configuration proxy-injector-webhook-config-i01 exists",
        "√ the caBundle verifies the serving certificate for 127.0.0.1",
        "√ a dry-run pod in namespace i01-apps comes back injected",
    ] {
        assert!(output.contains(line), "missing {line:?} in:\n{output}");
    }

    // A caBundle that does not sign the served certificate is reported.
    let mut wrong = objects.iter().find(|o| o["kind"] == "MutatingWebhookConfiguration").unwrap().clone();
    wrong["webhooks"][0]["clientConfig"]["caBundle"] =
        json!(base64::engine::general_purpose::STANDARD.encode(Pki::new().ca_pem));
    apply(&client, &[wrong]).await;
    let (ok, output) = check("i01", system, apps);
    assert!(!ok, "{output}");
    assert!(output.contains("× the caBundle does not verify the serving certificate for 127.0.0.1"), "{output}");
    drop(webhook);
}

/// A standalone installation for `test` into `<test>-system`, registered at a local webhook that
/// serves the installed Secret: the installed objects and that webhook.
async fn installed(client: &kube::Client, test: &str, extra: &[&str]) -> (Vec<Value>, WebhookProcess) {
    let system = format!("{test}-system");
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}/");
    let values = examples().join("values.yaml").display().to_string();
    let args = [
        "--standalone",
        "--ignore-cluster",
        "--namespace",
        &system,
        "-L",
        &system,
        "--values",
        &values,
        "--webhook-url",
        &url,
    ];
    let mut objects = install(&[&args[..], extra].concat());
    isolate(&mut objects, test);
    apply(client, &objects).await;
    let webhook = WebhookProcess::start(WebhookOptions {
        port: Some(port),
        tls: Some((secret_text(&objects, "tls.crt"), secret_text(&objects, "tls.key"))),
        ..WebhookOptions::default()
    });
    (objects, webhook)
}

#[tokio::test(flavor = "multi_thread")]
async fn check_reports_an_expired_certificate() {
    let client = client().await;
    let (_, webhook) = installed(&client, "i02", &["--cert-validity", "2s"]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (ok, output) = check("i02", "i02-system", "default");
    assert!(!ok, "{output}\nwebhook log:\n{}", webhook.logs());
    assert!(output.contains("× the serving certificate has expired"), "{output}");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_without_an_installation_fails_clearly() {
    let output = Command::new(binary())
        .args(["check", "--configuration", "no-such-webhook-config", "--policy", "no-such-policy", "--kubeconfig"])
        .arg(kubeconfig())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(
            "× neither the webhook configuration no-such-webhook-config nor the admission policy no-such-policy exists"
        ),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_warns_about_a_certificate_near_expiry() {
    let client = client().await;
    let (_objects, _webhook) = installed(&client, "i03", &["--cert-validity", "240h"]).await;
    namespace(&client, "i03", "i03-apps", json!({"linkerd.io/inject": "enabled"}), json!({})).await;
    wait_until_active(&client, "i03-apps").await;
    let (ok, output) = check("i03", "i03-system", "i03-apps");
    assert!(ok, "a warning is not a failure:\n{output}");
    assert!(output.contains("‼ the serving certificate expires in ") && output.contains(" days; re-run"), "{output}");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_reports_a_service_without_ready_endpoints() {
    let client = client().await;
    let system = "i04-system";
    let values = examples().join("values.yaml").display().to_string();
    let mut objects =
        install(&["--standalone", "--ignore-cluster", "--namespace", system, "-L", system, "--values", &values]);
    isolate(&mut objects, "i04");
    apply(&client, &objects).await;
    // No kubelet runs here, so the installed Deployment never becomes ready.
    let (ok, output) = check("i04", system, "default");
    assert!(!ok, "{output}");
    assert!(output.contains("√ the webhook configuration points at service i04-system/proxy-injector"), "{output}");
    assert!(output.contains("× service i04-system/proxy-injector has no ready endpoints"), "{output}");
}

/// The `values` key of `linkerd-config` exactly as `linkerd install` writes it.
const INSTALL_DEFAULT_VALUES: &str = include_str!("../../../../fixtures/linkerd-config/install-default.values.yaml");

#[tokio::test(flavor = "multi_thread")]
async fn next_to_a_real_linkerd_config_the_webhook_and_the_cli_inject_with_its_values() {
    let client = client().await;
    let (system, apps) = ("i05-linkerd", "i05-apps");
    // What a real `linkerd install` leaves in its namespace: the two ConfigMaps, unedited.
    let anchors = manifest::parse_stream(INSTALL_DEFAULT_VALUES).unwrap()[0].value["identityTrustAnchorsPEM"]
        .as_str()
        .unwrap()
        .to_string();
    let linkerd = [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": system,
            "labels": {"config.linkerd.io/admission-webhooks": "disabled"}}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "linkerd-config", "namespace": system},
            "data": {"values": INSTALL_DEFAULT_VALUES}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "linkerd-identity-trust-roots", "namespace": system},
            "data": {"ca-bundle.crt": anchors}}),
    ];
    apply(&client, &linkerd).await;

    // The default install mode, alongside Linkerd.
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}/");
    let mut objects = install(&["--namespace", system, "-L", system, "--webhook-url", &url]);
    assert!(!objects.iter().any(|o| o["kind"] == "ConfigMap"), "alongside Linkerd, its ConfigMaps are not rendered");
    isolate(&mut objects, "i05");
    apply(&client, &objects).await;

    // The webhook reads the ConfigMaps as their volumes would hold them: read back from the cluster.
    let configmaps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), system);
    let stored = |name: &'static str, key: &'static str| {
        let configmaps = configmaps.clone();
        async move { configmaps.get(name).await.unwrap().data.unwrap()[key].clone() }
    };
    let values = stored("linkerd-config", "values").await;
    assert_eq!(values, INSTALL_DEFAULT_VALUES);
    let roots = stored("linkerd-identity-trust-roots", "ca-bundle.crt").await;
    let webhook = WebhookProcess::start(WebhookOptions {
        port: Some(port),
        tls: Some((secret_text(&objects, "tls.crt"), secret_text(&objects, "tls.key"))),
        config_files: Some((values, roots)),
        ..WebhookOptions::default()
    });
    namespace(&client, "i05", apps, json!({"linkerd.io/inject": "enabled"}), json!({})).await;
    wait_until_active(&client, apps).await;
    let pod = create_pod(&client, apps, &pod_json("web", json!({}))).await.unwrap();
    let spec = pod.spec.as_ref().unwrap();
    let proxy = spec.init_containers.iter().flatten().find(|c| c.name == "linkerd-proxy").expect("injected");
    assert_eq!(proxy.image.as_deref(), Some("cr.l5d.io/linkerd/proxy:dev-undefined"), "{}", webhook.logs());
    let annotations = pod.metadata.annotations.unwrap();
    assert_eq!(annotations["linkerd.io/proxy-version"], "dev-undefined");
    let anchors_env = proxy.env.iter().flatten().find(|e| e.name == "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS").unwrap();
    assert_eq!(anchors_env.value.as_deref().map(str::trim), Some(anchors.trim()));

    // `inject` without --values reads the same linkerd-config from the cluster.
    let output = Command::new(binary())
        .args(["inject", "--manual", "-L", system, "--kubeconfig"])
        .arg(kubeconfig())
        .arg(examples().join("manifests/emojivoto.yaml"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("image: cr.l5d.io/linkerd/proxy:dev-undefined"), "{stdout}");

    // `--injection both` compiles the policy from the same linkerd-config, read from the cluster.
    let both = install(&["--namespace", system, "-L", system, "--webhook-url", &url, "--injection", "both"]);
    let mut policy: Vec<Value> =
        both.into_iter().filter(|o| o["kind"].as_str().unwrap().starts_with("MutatingAdmissionPolicy")).collect();
    let mutation = policy[0]["spec"]["mutations"][0]["jsonPatch"]["expression"].as_str().unwrap();
    assert!(mutation.contains("cr.l5d.io/linkerd/proxy:dev-undefined"), "{mutation}");
    crate::admission_policy::isolate_policies(&mut policy, "i05");
    apply(&client, &policy).await;
    let (ok, output) = check("i05", system, apps);
    assert!(ok, "{output}");
    assert!(output.contains("is compiled from the current linkerd-config (policy-"), "{output}");
    crate::admission_policy::wait_until_injecting(&client, apps, crate::admission_policy::injected_by_policy).await;

    // An upgrade changes linkerd-config: the policy is reported stale until it is re-rendered.
    let upgraded = INSTALL_DEFAULT_VALUES.replace("logLevel: warn,linkerd=info,hickory=error", "logLevel: debug");
    assert_ne!(upgraded, INSTALL_DEFAULT_VALUES);
    let mut config = linkerd[1].clone();
    config["data"]["values"] = json!(upgraded);
    apply(&client, &[config]).await;
    let (ok, output) = check("i05", system, apps);
    assert!(!ok, "{output}");
    assert!(output.contains("is stale: it was compiled from another configuration"), "{output}");
    let mut again = install(&["--namespace", system, "-L", system, "--webhook-url", &url, "--injection", "both"]);
    again.retain(|o| o["kind"].as_str().unwrap().starts_with("MutatingAdmissionPolicy"));
    crate::admission_policy::isolate_policies(&mut again, "i05");
    apply(&client, &again).await;
    let (ok, output) = check("i05", system, apps);
    assert!(ok, "re-installing renews the policy: {output}");
    drop(webhook);
}
