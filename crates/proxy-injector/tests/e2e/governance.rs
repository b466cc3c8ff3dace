//! Apply-time advice and governance on the real apiserver: warnings reach the client that applies
//! a workload, namespace or Service, which is stored unchanged; policy rules deny or audit pods.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use webhook::ErrorPolicy;

use crate::harness::*;

fn template(annotations: Value) -> Value {
    json!({"metadata": {"labels": {"app": "web"}, "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}})
}

/// One object of each advised kind, its pod template (or itself) carrying `annotations`.
fn objects(annotations: Value) -> Vec<(&'static str, Value)> {
    let selector = json!({"matchLabels": {"app": "web"}});
    let mut job_template = template(annotations.clone());
    job_template["spec"]["restartPolicy"] = json!("Never");
    let workload = |kind: &str, spec: Value| {
        json!({"apiVersion": if kind.ends_with("Job") { "batch/v1" } else { "apps/v1" }, "kind": kind,
            "metadata": {"name": kind.to_ascii_lowercase()}, "spec": spec})
    };
    vec![
        (
            "deployments",
            workload("Deployment", json!({"selector": selector, "template": template(annotations.clone())})),
        ),
        (
            "statefulsets",
            workload(
                "StatefulSet",
                json!({"selector": selector, "serviceName": "web", "template": template(annotations.clone())}),
            ),
        ),
        ("daemonsets", workload("DaemonSet", json!({"selector": selector, "template": template(annotations.clone())}))),
        (
            "replicasets",
            workload("ReplicaSet", json!({"selector": selector, "template": template(annotations.clone())})),
        ),
        ("jobs", workload("Job", json!({"template": job_template.clone()}))),
        (
            "cronjobs",
            workload("CronJob", json!({"schedule": "@daily", "jobTemplate": {"spec": {"template": job_template}}})),
        ),
    ]
}

fn warned(answer: &Answer, needles: &[&str]) -> bool {
    answer.warnings.iter().any(|w| needles.iter().all(|n| w.contains(n)))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_applied_kind_gets_its_warnings_and_is_stored_unchanged() {
    let client = client().await;
    let webhook = WebhookProcess::start(WebhookOptions::default());
    let ns = "g01-apply";
    namespace(&client, "g01", ns, json!({"linkerd.io/inject": "enabled"}), json!({})).await;
    register(&client, "g01", &webhook.url(), &webhook.pki.ca_pem, ErrorPolicy::Admit).await;
    wait_until_active(&client, ns).await;

    for (resource, object) in objects(json!({"config.linkerd.io/proxy-cpu-limit": "lots"})) {
        let group = if resource.contains("job") { "batch" } else { "apps" };
        let path = format!("/apis/{group}/v1/namespaces/{ns}/{resource}");
        let answer = create(&client, &path, &object).await;
        assert_eq!(answer.status, 201, "{resource}: {}", answer.body);
        assert!(
            warned(&answer, &["config.linkerd.io/proxy-cpu-limit", "lots", "Kubernetes quantity"]),
            "{resource}: {:?}",
            answer.warnings
        );
        let stored = &answer.body;
        let template = if resource == "cronjobs" {
            &stored["spec"]["jobTemplate"]["spec"]["template"]
        } else {
            &stored["spec"]["template"]
        };
        assert_eq!(
            template["metadata"]["annotations"],
            json!({"config.linkerd.io/proxy-cpu-limit": "lots"}),
            "{resource} stored unchanged"
        );
        assert_eq!(template["spec"]["containers"].as_array().unwrap().len(), 1, "{resource}: no container added");
        assert!(stored["spec"]["template"]["spec"]["initContainers"].is_null());
    }

    // Annotations at the wrong level, on a Service and on a namespace.
    let misplaced = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "misplaced", "annotations": {"linkerd.io/inject": "enabled"}},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template(json!({}))}});
    let answer = create(&client, &format!("/apis/apps/v1/namespaces/{ns}/deployments"), &misplaced).await;
    assert_eq!(answer.status, 201);
    assert!(
        warned(
            &answer,
            &["linkerd.io/inject on the Deployment's own metadata has no effect", "spec.template.metadata.annotations"]
        ),
        "{:?}",
        answer.warnings
    );
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web",
        "annotations": {"config.linkerd.io/skip-inbound-ports": "80"}}, "spec": {"ports": [{"port": 80}]}});
    let answer = create(&client, &format!("/api/v1/namespaces/{ns}/services"), &service).await;
    assert_eq!(answer.status, 201);
    assert!(
        warned(&answer, &["config.linkerd.io/skip-inbound-ports has no effect on a Service"]),
        "{:?}",
        answer.warnings
    );
    let labelled = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "g01-bad-ns",
        "labels": {TEST_LABEL: "g01"}, "annotations": {"linkerd.io/inject": "yes"}}});
    let answer = create(&client, "/api/v1/namespaces", &labelled).await;
    assert_eq!(answer.status, 201);
    assert!(warned(&answer, &["linkerd.io/inject: invalid value", "yes"]), "{:?}", answer.warnings);

    // An UPDATE that adds a bad annotation is warned; one that changes nothing injection reads is not.
    let deployments = format!("/apis/apps/v1/namespaces/{ns}/deployments/misplaced");
    let bad =
        json!({"spec": {"template": {"metadata": {"annotations": {"config.linkerd.io/proxy-memory-limit": "huge"}}}}});
    let answer = send(&client, "PATCH", &deployments, "application/merge-patch+json", &bad).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(warned(&answer, &["config.linkerd.io/proxy-memory-limit", "huge"]), "{:?}", answer.warnings);
    let unrelated = json!({"metadata": {"labels": {"team": "web"}, "annotations": {"linkerd.io/inject": "enabled"}}});
    let answer = send(&client, "PATCH", &deployments, "application/merge-patch+json", &unrelated).await;
    assert_eq!(answer.status, 200);
    assert!(answer.warnings.is_empty(), "nothing injection reads changed: {:?}", answer.warnings);

    assert!(
        webhook.metric("proxy_injector_advice_total{kind=\"deployment\",operation=\"CREATE\",warned=\"true\"}") >= 2.0
    );
    // The patch above and the deployment controller's own revision updates.
    assert!(
        webhook.metric("proxy_injector_advice_total{kind=\"deployment\",operation=\"UPDATE\",warned=\"false\"}") >= 1.0
    );
    assert!(
        webhook.metric("proxy_injector_advice_total{kind=\"cronjob\",operation=\"CREATE\",warned=\"true\"}") >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn advice_never_blocks_when_the_webhook_is_down() {
    let client = client().await;
    let mut webhook = WebhookProcess::start(WebhookOptions { on_error: "deny", ..WebhookOptions::default() });
    let ns = "g02-down";
    namespace(&client, "g02", ns, json!({"linkerd.io/inject": "enabled"}), json!({})).await;
    register(&client, "g02", &webhook.url(), &webhook.pki.ca_pem, ErrorPolicy::Deny).await;
    wait_until_active(&client, ns).await;
    webhook.terminate();
    for (resource, object) in objects(json!({"linkerd.io/inject": "enabled"})) {
        let group = if resource.contains("job") { "batch" } else { "apps" };
        let answer = create(&client, &format!("/apis/{group}/v1/namespaces/{ns}/{resource}"), &object).await;
        assert_eq!(answer.status, 201, "{resource} is applied although the webhook is down: {}", answer.body);
    }
    let pod = create_pod(&client, ns, &pod_json("web", json!({}))).await;
    assert!(pod.is_err(), "pods still follow failurePolicy Fail");
}

async fn governed(test: &str, mode: &str) -> (kube::Client, WebhookProcess) {
    let client = client().await;
    let values = json!({"proxyInjector": {"policy": {
        "images": {"mode": mode, "allowedRepositories": ["cr.l5d.io/linkerd/"]},
        "meshRequired": {"mode": mode, "namespaceSelector": {"matchLabels": {"mesh": "required"}}},
    }}});
    let webhook = WebhookProcess::start(WebhookOptions { values, ..WebhookOptions::default() });
    let ns = format!("{test}-required");
    namespace(&client, test, &ns, json!({"linkerd.io/inject": "enabled"}), json!({"mesh": "required"})).await;
    namespace(&client, test, &format!("{test}-optional"), json!({"linkerd.io/inject": "enabled"}), json!({})).await;
    register_with(&client, test, &webhook.url(), &webhook.pki.ca_pem, ErrorPolicy::Admit, true).await;
    wait_until_active(&client, &ns).await;
    (client, webhook)
}

fn api_message(error: kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message,
        other => panic!("expected the apiserver's refusal, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn enforced_rules_deny_pods_with_the_rule_and_the_remedy() {
    let (client, webhook) = governed("g03", "enforce").await;
    let evil = pod_json("evil", json!({"config.linkerd.io/proxy-image": "docker.io/evil/proxy"}));
    let message = api_message(create_pod(&client, "g03-required", &evil).await.unwrap_err());
    assert!(message.contains("policy rule proxyInjector.policy.images (enforce)"), "{message}");
    assert!(message.contains("\\\"docker.io/evil/proxy:") || message.contains("\"docker.io/evil/proxy:"), "{message}");
    assert!(message.contains("to comply, use an image from one of them"), "{message}");

    let opted_out = pod_json("opted-out", json!({"linkerd.io/inject": "disabled"}));
    let message = api_message(create_pod(&client, "g03-required", &opted_out).await.unwrap_err());
    assert!(message.contains("policy rule proxyInjector.policy.meshRequired (enforce)"), "{message}");
    assert!(message.contains("requires the mesh"), "{message}");
    let elsewhere = create_pod(&client, "g03-optional", &opted_out).await.expect("opting out is allowed elsewhere");
    assert!(!is_injected(&elsewhere));
    let fine = create_pod(&client, "g03-required", &pod_json("fine", json!({}))).await.unwrap();
    assert!(is_injected(&fine));
    assert_eq!(
        webhook.metric("proxy_injector_policy_violations_total{rule=\"images\",mode=\"enforce\",kind=\"pod\"}"),
        1.0
    );
    assert_eq!(
        webhook.metric("proxy_injector_policy_violations_total{rule=\"meshRequired\",mode=\"enforce\",kind=\"pod\"}"),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn audited_rules_admit_with_a_warning() {
    let (client, webhook) = governed("g04", "audit").await;
    let evil = pod_json("evil", json!({"config.linkerd.io/proxy-image": "docker.io/evil/proxy"}));
    let answer = create(&client, "/api/v1/namespaces/g04-required/pods", &evil).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert!(
        warned(&answer, &["policy rule proxyInjector.policy.images (audit)", "docker.io/evil/proxy"]),
        "{:?}",
        answer.warnings
    );
    let stored: Pod = serde_json::from_value(answer.body).unwrap();
    assert!(is_injected(&stored), "audited, still injected");
    let opted_out = create(
        &client,
        "/api/v1/namespaces/g04-required/pods",
        &pod_json("opted-out", json!({"linkerd.io/inject": "disabled"})),
    )
    .await;
    assert_eq!(opted_out.status, 201);
    assert!(warned(&opted_out, &["proxyInjector.policy.meshRequired (audit)"]), "{:?}", opted_out.warnings);
    assert_eq!(
        webhook.metric("proxy_injector_policy_violations_total{rule=\"images\",mode=\"audit\",kind=\"pod\"}"),
        1.0
    );

    // The same rules reach whoever applies the workload, before any pod exists.
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "evil"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": template(json!({"config.linkerd.io/proxy-image": "docker.io/evil/proxy"}))}});
    let answer = create(&client, "/apis/apps/v1/namespaces/g04-required/deployments", &deployment).await;
    assert_eq!(answer.status, 201);
    assert!(
        warned(&answer, &["pods of this Deployment will be admitted with a warning", "proxyInjector.policy.images"]),
        "{:?}",
        answer.warnings
    );
}
