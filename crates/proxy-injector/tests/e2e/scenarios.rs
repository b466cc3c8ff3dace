//! The scenarios of automatic injection, each asserting the object as the apiserver stored it.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Pod, Service};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use webhook::ErrorPolicy;

use crate::harness::*;

/// One webhook and one injecting namespace, registered and active.
async fn setup(test: &str, options: WebhookOptions, policy: ErrorPolicy) -> (kube::Client, WebhookProcess, String) {
    let client = client().await;
    let webhook = WebhookProcess::start(options);
    let ns = format!("{test}-on");
    namespace(&client, test, &ns, json!({"linkerd.io/inject": "enabled"}), json!({})).await;
    register(&client, test, &webhook.url(), &webhook.pki.ca_pem, policy).await;
    wait_until_active(&client, &ns).await;
    (client, webhook, ns)
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    let spec = &pod["spec"];
    spec["initContainers"]
        .as_array()
        .into_iter()
        .chain(spec["containers"].as_array())
        .flatten()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name} in {pod}"))
}

/// Every field `expected` sets has the same value in `actual` (the apiserver adds defaults, and
/// drops zero values, which Kubernetes treats as absent).
fn assert_subset(expected: &Value, actual: &Value, path: &str) {
    let zero = |v: &Value| matches!(v, Value::Number(n) if n.as_f64() == Some(0.0)) || v == &json!(false);
    match (expected, actual) {
        (e, Value::Null) if zero(e) => {}
        (Value::Object(e), Value::Object(a)) => {
            for (k, v) in e {
                assert_subset(v, a.get(k).unwrap_or(&Value::Null), &format!("{path}/{k}"));
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            assert_eq!(e.len(), a.len(), "length of {path}");
            for (i, (e, a)) in e.iter().zip(a).enumerate() {
                assert_subset(e, a, &format!("{path}/{i}"));
            }
        }
        _ => assert_eq!(expected, actual, "at {path}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn namespace_enabled_pod_is_injected_exactly_as_the_cli_would() {
    let (client, _webhook, ns) = setup("s01", WebhookOptions::default(), ErrorPolicy::Admit).await;
    let mut pod = pod_json("web", json!({}));
    pod["metadata"]["namespace"] = json!(ns);
    let stored = serde_json::to_value(create_pod(&client, &ns, &pod).await.unwrap()).unwrap();
    let init_names: Vec<&str> =
        stored["spec"]["initContainers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(init_names, ["linkerd-init", "linkerd-proxy"]);
    assert_eq!(stored["metadata"]["labels"]["linkerd.io/workload-ns"], json!(ns));

    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("values.yaml");
    std::fs::write(&values, serde_json::to_string(&json!({"identityTrustAnchorsPEM": trust_anchors()})).unwrap())
        .unwrap();
    let output = std::process::Command::new(binary())
        .args(["inject", "--manual", "-o", "json", "--values"])
        .arg(&values)
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(pod.to_string().as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(output.status.success());
    let cli: Value = serde_json::from_slice(&output.stdout).unwrap();
    for name in ["linkerd-init", "linkerd-proxy"] {
        assert_subset(container(&cli, name), container(&stored, name), name);
    }
    assert_subset(&cli["spec"]["volumes"], &stored["spec"]["volumes"], "volumes");
    assert_eq!(
        cli["metadata"]["annotations"]["linkerd.io/trust-root-sha256"],
        stored["metadata"]["annotations"]["linkerd.io/trust-root-sha256"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn workload_annotation_and_owner_labels() {
    let (client, _webhook, _) = setup("s02", WebhookOptions::default(), ErrorPolicy::Admit).await;
    let ns = "s02-plain";
    namespace(&client, "s02", ns, json!({}), json!({})).await;
    // The real controllers create the ReplicaSet and its pod; the owner is resolved through them.
    let deployment: Deployment = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}, "annotations": {"linkerd.io/inject": "enabled"}},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]}}}}))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), ns).create(&PostParams::default(), &deployment).await.unwrap();
    let pods = wait_for_pods(&client, ns, "app=web", 1).await;
    let stored = &pods[0];
    assert!(is_injected(stored));
    let owner = &stored.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.kind, "ReplicaSet");
    assert!(owner.name.starts_with("web-"), "{}", owner.name);
    let labels = stored.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["linkerd.io/proxy-deployment"], "web");
    assert_eq!(labels["linkerd.io/workload-ns"], ns);

    // The Event lands on the Deployment, off the admission path.
    let events = Api::<Event>::namespaced(client.clone(), ns);
    let started = std::time::Instant::now();
    loop {
        let list = events.list(&ListParams::default()).await.unwrap();
        if list
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("Injected") && e.involved_object.name.as_deref() == Some("web"))
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no Injected event on deployment/web: {:?}", list.items);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn opt_out_absent_annotation_and_later_namespace_annotation() {
    let (client, _webhook, ns) = setup("s03", WebhookOptions::default(), ErrorPolicy::Admit).await;
    let disabled =
        create_pod(&client, &ns, &pod_json("disabled", json!({"linkerd.io/inject": "disabled"}))).await.unwrap();
    assert!(!is_injected(&disabled), "disabled on the pod overrides the namespace");

    let plain = "s03-plain";
    namespace(&client, "s03", plain, json!({}), json!({})).await;
    let untouched = create_pod(&client, plain, &pod_json("before", json!({}))).await.unwrap();
    assert!(!is_injected(&untouched));
    assert!(untouched.metadata.annotations.unwrap_or_default().keys().all(|k| !k.starts_with("linkerd.io")));

    // Annotating the namespace later changes no existing pod; new pods are injected.
    let patch = json!({"metadata": {"annotations": {"linkerd.io/inject": "enabled"}}});
    Api::<Namespace>::all(client.clone()).patch(plain, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    wait_until_injected(&client, plain, json!({}), "the webhook never saw the namespace's annotation").await;
    let after = create_pod(&client, plain, &pod_json("after", json!({}))).await.unwrap();
    assert!(is_injected(&after));
    let before = Api::<Pod>::namespaced(client.clone(), plain).get("before").await.unwrap();
    assert!(!is_injected(&before), "existing pods are not changed; they must be restarted");
}

#[tokio::test(flavor = "multi_thread")]
async fn namespace_configuration_is_inherited_and_pod_annotations_win() {
    let (client, _webhook, _) = setup("s04", WebhookOptions::default(), ErrorPolicy::Admit).await;
    let ns = "s04-config";
    let ns_annotations = json!({"linkerd.io/inject": "enabled", "config.linkerd.io/proxy-log-level": "debug",
        "config.linkerd.io/admin-port": "5191"});
    namespace(&client, "s04", ns, ns_annotations, json!({})).await;
    let pod = create_pod(&client, ns, &pod_json("web", json!({"config.linkerd.io/admin-port": "6191"}))).await.unwrap();
    let pod = serde_json::to_value(pod).unwrap();
    let proxy = container(&pod, "linkerd-proxy");
    let env =
        |name: &str| proxy["env"].as_array().unwrap().iter().find(|e| e["name"] == name).unwrap()["value"].clone();
    assert_eq!(env("LINKERD2_PROXY_ADMIN_LISTEN_ADDR"), "0.0.0.0:6191");
    assert!(env("LINKERD2_PROXY_LOG").as_str().unwrap().starts_with("debug,"));
    assert_eq!(pod["metadata"]["annotations"]["config.linkerd.io/proxy-log-level"], "debug");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_annotation_is_admitted_with_a_warning_for_the_client() {
    let (client, _webhook, ns) = setup("s05", WebhookOptions::default(), ErrorPolicy::Admit).await;
    let pod = pod_json("web", json!({"config.linkerd.io/proxy-cpu-limit": "lots"}));
    let request = http::Request::post(format!("/api/v1/namespaces/{ns}/pods"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&pod).unwrap())
        .unwrap();
    let response = client.send(request.map(kube::client::Body::from)).await.unwrap();
    assert_eq!(response.status(), 201);
    let warnings: Vec<String> =
        response.headers().get_all("warning").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    assert!(
        warnings.iter().any(
            |w| w.contains("config.linkerd.io/proxy-cpu-limit") && w.contains("\\\"lots\\\"") || w.contains("lots")
        ),
        "{warnings:?}"
    );
    let stored = Api::<Pod>::namespaced(client.clone(), &ns).get("web").await.unwrap();
    assert!(is_injected(&stored), "the default is kept and the pod injected");
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_shows_the_injected_pod_and_records_no_event() {
    let (client, _webhook, ns) = setup("s06", WebhookOptions::default(), ErrorPolicy::Admit).await;
    // No replicas: only the dry-run pod below may reach the webhook.
    let deployment: Deployment = serde_json::from_value(json!({"metadata": {"name": "dry"}, "spec": {
        "replicas": 0, "selector": {"matchLabels": {"app": "dry"}},
        "template": {"metadata": {"labels": {"app": "dry"}}, "spec": {"containers": [{"name": "app", "image": "nginx"}]}}}}))
    .unwrap();
    let deployment =
        Api::<Deployment>::namespaced(client.clone(), &ns).create(&PostParams::default(), &deployment).await.unwrap();
    let mut pod = pod_json("dry-1", json!({}));
    pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "dry",
        "uid": deployment.metadata.uid.unwrap(), "controller": true}]);
    let pod: Pod = serde_json::from_value(pod).unwrap();
    let api = Api::<Pod>::namespaced(client.clone(), &ns);
    let dry = api.create(&PostParams { dry_run: true, ..PostParams::default() }, &pod).await.unwrap();
    assert!(is_injected(&dry));
    assert!(api.get_opt("dry-1").await.unwrap().is_none(), "nothing stored");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = Api::<Event>::namespaced(client.clone(), &ns).list(&ListParams::default()).await.unwrap();
    // The deployment controller records its own Events on `dry`; the injector records none.
    let ours = |e: &&Event| matches!(e.reason.as_deref(), Some("Injected" | "InjectionSkipped"));
    let injector_events: Vec<&Event> = events.items.iter().filter(ours).collect();
    assert!(injector_events.iter().all(|e| e.involved_object.name.as_deref() != Some("dry")), "{injector_events:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn services_get_the_opaque_ports_annotation() {
    let (client, _webhook, ns) = setup("s07", WebhookOptions::default(), ErrorPolicy::Admit).await;
    let service: Service = serde_json::from_value(json!({"metadata": {"name": "db"}, "spec": {"ports": [
        {"name": "mysql", "port": 3306}, {"name": "web", "port": 80, "targetPort": 8080}]}}))
    .unwrap();
    let stored =
        Api::<Service>::namespaced(client.clone(), &ns).create(&PostParams::default(), &service).await.unwrap();
    assert_eq!(stored.metadata.annotations.unwrap()["config.linkerd.io/opaque-ports"], "3306");
}

#[tokio::test(flavor = "multi_thread")]
async fn excluded_namespaces_never_reach_the_webhook() {
    let (client, webhook, _) = setup("s08", WebhookOptions::default(), ErrorPolicy::Admit).await;
    let before = webhook.metric("proxy_injector_admission_duration_seconds_count{outcome=\"inject\"}")
        + webhook.metric("proxy_injector_admission_duration_seconds_count{outcome=\"skip\"}");
    let opted_out = "s08-webhooks-off";
    namespace(
        &client,
        "s08",
        opted_out,
        json!({"linkerd.io/inject": "enabled"}),
        json!({"config.linkerd.io/admission-webhooks": "disabled"}),
    )
    .await;
    let pod = create_pod(&client, opted_out, &pod_json("web", json!({}))).await.unwrap();
    assert!(!is_injected(&pod));
    // kube-system carries this test's label too, so only the name rule keeps it out.
    let label = json!({"metadata": {"labels": {TEST_LABEL: "s08"}}});
    Api::<Namespace>::all(client.clone())
        .patch("kube-system", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap();
    let sa: k8s_openapi::api::core::v1::ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap();
    let _ = Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), "kube-system")
        .create(&PostParams::default(), &sa)
        .await;
    let system = create_pod(&client, "kube-system", &pod_json("s08-system", json!({"linkerd.io/inject": "enabled"})))
        .await
        .unwrap();
    assert!(!is_injected(&system));
    let after = webhook.metric("proxy_injector_admission_duration_seconds_count{outcome=\"inject\"}")
        + webhook.metric("proxy_injector_admission_duration_seconds_count{outcome=\"skip\"}");
    assert_eq!(before, after, "the webhook was called for an excluded namespace");
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_down_follows_the_failure_policy() {
    let client = client().await;
    let pki = Pki::new();
    let closed = format!(
        "https://127.0.0.1:{}/",
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    );
    for (test, policy) in [("s09-ignore", ErrorPolicy::Admit), ("s09-fail", ErrorPolicy::Deny)] {
        let ns = format!("{test}-ns");
        namespace(&client, test, &ns, json!({"linkerd.io/inject": "enabled"}), json!({})).await;
        register(&client, test, &closed, &pki.ca_pem, policy).await;
        // Registration takes effect asynchronously; with Fail, wait until creation is refused.
        let started = std::time::Instant::now();
        loop {
            let result =
                create_pod(&client, &ns, &pod_json(&format!("p{}", started.elapsed().as_millis()), json!({}))).await;
            match (policy, result) {
                (ErrorPolicy::Admit, Ok(pod)) => {
                    assert!(!is_injected(&pod));
                    break;
                }
                (ErrorPolicy::Deny, Err(kube::Error::Api(status))) => {
                    assert!(status.message.contains("failed calling webhook"), "{}", status.message);
                    break;
                }
                (ErrorPolicy::Deny, Ok(_)) if started.elapsed() < Duration::from_secs(30) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                (_, other) => panic!("{test}: unexpected {other:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_reads_linkerd_config_from_the_cluster() {
    let client = client().await;
    let control_plane = "s10-linkerd";
    namespace(&client, "s10", control_plane, json!({}), json!({})).await;
    let values =
        json!({"identityTrustAnchorsPEM": trust_anchors(), "proxy": {"image": {"name": "registry.example/proxy"}}});
    let config_map: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "linkerd-config"},
        "data": {"values": serde_json::to_string(&values).unwrap()}}))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), control_plane)
        .create(&PostParams::default(), &config_map)
        .await
        .unwrap();
    let output = std::process::Command::new(binary())
        .args(["inject", "--manual", "-o", "json", "-L", control_plane, "--kubeconfig"])
        .arg(kubeconfig())
        .arg(examples().join("manifests/emojivoto.yaml"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let deployment: Value =
        stdout.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).find(|d| d["kind"] == "Deployment").unwrap();
    let template = &deployment["spec"]["template"];
    assert!(container(template, "linkerd-proxy")["image"].as_str().unwrap().starts_with("registry.example/proxy:"));
    assert_eq!(template["metadata"]["labels"]["linkerd.io/control-plane-ns"], control_plane);

    // explain with a live namespace answers as the webhook would in it.
    let annotated = "s10-apps";
    namespace(
        &client,
        "s10",
        annotated,
        json!({"linkerd.io/inject": "enabled", "config.linkerd.io/admin-port": "6191"}),
        json!({}),
    )
    .await;
    let output = std::process::Command::new(binary())
        .args(["explain", "-o", "json", "-L", control_plane, "--namespace", annotated, "--kubeconfig"])
        .arg(kubeconfig())
        .arg(examples().join("manifests/emojivoto.yaml"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let reports: Value = serde_json::from_slice(&output.stdout).unwrap();
    let web = reports.as_array().unwrap().iter().find(|r| r["name"] == "web").unwrap();
    assert_eq!(web["origin"], "webhook");
    assert_eq!(web["result"]["annotationAt"], "namespace");
    let admin =
        web["result"]["configuration"].as_array().unwrap().iter().find(|s| s["setting"] == "adminPort").unwrap();
    assert_eq!((admin["value"].as_str(), admin["source"].as_str()), (Some("6191"), Some("namespace annotation")));
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_rotation_while_pods_are_created_fails_no_admission() {
    let (client, webhook, ns) = setup("s11", WebhookOptions::default(), ErrorPolicy::Deny).await;
    let creator = {
        let (client, ns) = (client.clone(), ns.clone());
        tokio::spawn(async move {
            let mut results = Vec::new();
            for i in 0..60 {
                results.push(create_pod(&client, &ns, &pod_json(&format!("rot-{i}"), json!({}))).await);
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            results
        })
    };
    for days in [50, 51, 52] {
        tokio::time::sleep(Duration::from_millis(500)).await;
        webhook.rotate_certificate(days);
    }
    let results = creator.await.unwrap();
    for result in results {
        let pod = result.expect("no admission fails during rotation (failurePolicy Fail)");
        assert!(is_injected(&pod), "{:?}", pod.metadata.name);
    }
    assert!(webhook.metric("proxy_injector_config_reloads_total{source=\"certificate\"}") >= 4.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_later_webhook_adding_a_container_leaves_a_correct_pod() {
    let (client, webhook, ns) = setup("s12", WebhookOptions::default(), ErrorPolicy::Deny).await;
    let late = crate::late_webhook::LateWebhook::start();
    late.register(&client, "s12").await;
    // The late webhook's registration is active once a probe pod comes back with its container.
    let started = std::time::Instant::now();
    let pod = loop {
        let name = format!("web-{}", started.elapsed().as_millis());
        let pod = create_pod(&client, &ns, &pod_json(&name, json!({}))).await.unwrap();
        if pod.spec.as_ref().unwrap().containers.iter().any(|c| c.name == "late-sidecar") {
            break pod;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the second webhook never took effect");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let spec = pod.spec.as_ref().unwrap();
    let names =
        |list: &[k8s_openapi::api::core::v1::Container]| list.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(spec.init_containers.as_deref().unwrap()), ["linkerd-init", "linkerd-proxy"]);
    assert_eq!(names(&spec.containers), ["app", "late-sidecar"]);
    assert!(late.calls() >= 1);

    // Injecting the final pod again changes nothing: re-injection is idempotent.
    let object = serde_json::to_value(&pod).unwrap();
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "again",
        "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": ns, "operation": "CREATE", "object": object}});
    let mut response = webhook.agent().post(&webhook.url()).send(review.to_string().as_bytes()).unwrap();
    let answer: Value = serde_json::from_slice(&response.body_mut().read_to_vec().unwrap()).unwrap();
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none(), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_1000_pods_is_all_injected() {
    use futures::StreamExt;
    let (client, webhook, ns) = setup("s13", WebhookOptions::default(), ErrorPolicy::Deny).await;
    let started = std::time::Instant::now();
    let results: Vec<Result<Pod, kube::Error>> = futures::stream::iter(0..1000)
        .map(|i| {
            let (client, ns) = (client.clone(), ns.clone());
            async move { create_pod(&client, &ns, &pod_json(&format!("burst-{i}"), json!({}))).await }
        })
        .buffer_unordered(200)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let failed: Vec<String> = results.iter().filter_map(|r| r.as_ref().err().map(ToString::to_string)).collect();
    assert!(failed.is_empty(), "{} of 1000 failed, e.g. {:?}", failed.len(), failed.first());
    assert!(results.iter().all(|r| is_injected(r.as_ref().unwrap())), "every pod injected");
    let listed = Api::<Pod>::namespaced(client.clone(), &ns).list(&ListParams::default()).await.unwrap();
    assert!(
        listed.items.iter().filter(|p| p.metadata.name.as_deref().unwrap_or("").starts_with("burst-")).all(is_injected)
    );

    // The apiserver's own view of our webhook's latency.
    let metrics = client.request_text(http::Request::get("/metrics").body(Vec::new()).unwrap()).await.unwrap();
    let ours = |suffix: &str| -> Vec<String> {
        metrics
            .lines()
            .filter(|l| l.starts_with(&format!("apiserver_admission_webhook_admission_duration_seconds{suffix}")))
            .filter(|l| l.contains("name=\"linkerd-proxy-injector.linkerd.io\"") && l.contains("type=\"admit\""))
            .map(str::to_string)
            .collect()
    };
    let count: f64 = ours("_count").iter().filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum();
    let sum: f64 = ours("_sum").iter().filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum();
    assert!(count >= 1000.0, "the apiserver recorded {count} calls");
    println!(
        "burst: 1000 pods in {:.2} s ({:.0} pods/s); apiserver_admission_webhook_admission_duration_seconds: {} calls, mean {:.2} ms; \
         webhook p-buckets: {}",
        elapsed.as_secs_f64(),
        1000.0 / elapsed.as_secs_f64(),
        count,
        sum / count * 1000.0,
        ours("_bucket")
            .iter()
            .filter(|l| l.contains("operation=\"CREATE\""))
            .map(|l| l.rsplit_once('{').map_or("", |(_, b)| b))
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert_eq!(webhook.metric("proxy_injector_requests_rejected_total{reason=\"overload\"}"), 0.0);
}
