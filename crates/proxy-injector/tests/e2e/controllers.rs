//! Pods created by the real controllers (kube-controller-manager of the same release): injection
//! happens when a controller creates a pod, never to pods that already exist.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use webhook::ErrorPolicy;

use crate::harness::*;

fn names(pods: &[Pod]) -> BTreeSet<String> {
    pods.iter().map(|p| p.metadata.name.clone().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn annotating_a_namespace_meshes_only_pods_created_after_a_rollout_restart() {
    let client = client().await;
    let webhook = WebhookProcess::start(WebhookOptions::default());
    let ns = "k01-later";
    namespace(&client, "k01", ns, json!({}), json!({})).await;
    register(&client, "k01", &webhook.url(), &webhook.pki.ca_pem, ErrorPolicy::Admit).await;
    let deployment: Deployment = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {
        "replicas": 2, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "nginx"}]}}}}))
    .unwrap();
    let deployments = Api::<Deployment>::namespaced(client.clone(), ns);
    deployments.create(&PostParams::default(), &deployment).await.unwrap();
    let before = wait_for_pods(&client, ns, "app=web", 2).await;
    assert!(before.iter().all(|p| !is_injected(p)), "not opted in yet");

    let opt_in = json!({"metadata": {"annotations": {"linkerd.io/inject": "enabled"}}});
    Api::<Namespace>::all(client.clone()).patch(ns, &PatchParams::default(), &Patch::Merge(&opt_in)).await.unwrap();
    wait_until_injected(&client, ns, json!({}), "the webhook never saw the namespace's annotation").await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let unchanged = wait_for_pods(&client, ns, "app=web", 2).await;
    assert_eq!(names(&unchanged), names(&before), "existing pods are neither replaced nor changed");
    assert!(unchanged.iter().all(|p| !is_injected(p)), "Linkerd's rule: pods are injected only when created");

    // `kubectl rollout restart`: a template annotation, so the controller creates new pods.
    let restart = json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2026-12-02T08:00:00Z"}}}}});
    deployments.patch("web", &PatchParams::default(), &Patch::Merge(&restart)).await.unwrap();
    let started = std::time::Instant::now();
    loop {
        let pods = wait_for_pods(&client, ns, "app=web", 1).await;
        let new: Vec<&Pod> =
            pods.iter().filter(|p| !names(&before).contains(p.metadata.name.as_ref().unwrap())).collect();
        if !new.is_empty() {
            assert!(new.iter().all(|p| is_injected(p)), "every pod the restart creates is injected");
            let labels = new[0].metadata.labels.as_ref().unwrap();
            assert_eq!(labels["linkerd.io/proxy-deployment"], "web");
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(90), "the restart created no pod");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cronjob_s_job_pods_are_injected_with_the_cronjob_as_owner() {
    let client = client().await;
    let webhook = WebhookProcess::start(WebhookOptions::default());
    let ns = "k02-cron";
    namespace(&client, "k02", ns, json!({"linkerd.io/inject": "enabled"}), json!({})).await;
    register(&client, "k02", &webhook.url(), &webhook.pki.ca_pem, ErrorPolicy::Admit).await;
    wait_until_active(&client, ns).await;
    // Every minute: the CronJob controller creates a Job, the Job controller its pod.
    let cron: CronJob = serde_json::from_value(json!({"metadata": {"name": "tick"}, "spec": {
        "schedule": "* * * * *", "concurrencyPolicy": "Forbid",
        "jobTemplate": {"spec": {"template": {"metadata": {"labels": {"app": "tick"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "job", "image": "busybox"}]}}}}}}))
    .unwrap();
    Api::<CronJob>::namespaced(client.clone(), ns).create(&PostParams::default(), &cron).await.unwrap();
    let pods = wait_for_pods(&client, ns, "app=tick", 1).await;
    let pod = &pods[0];
    assert!(is_injected(pod));
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.kind, "Job");
    assert!(owner.name.starts_with("tick-"), "{}", owner.name);
    assert_eq!(pod.metadata.labels.as_ref().unwrap()["linkerd.io/proxy-cronjob"], "tick");
    let spec = pod.spec.as_ref().unwrap();
    let proxy = spec.init_containers.iter().flatten().find(|c| c.name == "linkerd-proxy");
    assert!(
        proxy.is_some_and(|c| c.restart_policy.as_deref() == Some("Always")),
        "a native sidecar lets the Job complete"
    );
}
