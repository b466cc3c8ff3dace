//! The inputs and the per-admission work the benchmarks measure, shared by the criterion bench
//! (`benches/admission.rs`) and the instruction counter (`examples/instructions.rs`).

// Each of the two takes what it needs.
#![allow(dead_code)]

use std::collections::BTreeMap;

use governance::{Namespace, Policy, Subject, Violation};
use inject::values::ValuesDocument;
use inject::{Injector, Origin, Owner, Request};
use serde_json::{Value, json};

pub fn injector() -> Injector {
    let values = json!({"identityTrustAnchorsPEM": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"});
    Injector::new(ValuesDocument::from_value(values).unwrap(), "linkerd").unwrap()
}

pub fn container(name: &str, env_vars: usize) -> Value {
    let env: Vec<Value> =
        (0..env_vars).map(|i| json!({"name": format!("VAR_{i}"), "value": format!("value-{i}")})).collect();
    json!({"name": name, "image": format!("registry.example/{name}:v1.2.3"), "env": env,
        "ports": [{"containerPort": 8080, "name": "http"}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}})
}

pub fn pod(containers: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-7d9c8-", "namespace": "emojivoto", "labels": {"app": "web", "pod-template-hash": "7d9c8"},
            "annotations": {"linkerd.io/inject": "enabled"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9c8", "uid": "1", "controller": true}]},
        "spec": {"containers": containers, "serviceAccountName": "web"}})
}

/// A pod of about `bytes` of JSON: containers with many env vars.
pub fn pod_of_size(bytes: usize) -> Value {
    let mut containers = Vec::new();
    while serde_json::to_vec(&pod(containers.clone())).unwrap().len() < bytes {
        containers.push(container(&format!("c{}", containers.len()), 50));
    }
    pod(containers)
}

pub fn evaluate(injector: &Injector, object: &Value) -> usize {
    let owner = Owner { kind: "deployment", name: "web" };
    let origin = Origin::Webhook { namespace: "emojivoto", namespace_annotations: None, owner: Some(owner) };
    let outcome = injector.evaluate(&Request { object, kind: None, origin }).unwrap();
    outcome.patch.to_json().len()
}

/// The body the apiserver sends for `object`, with the metadata it adds.
pub fn review_body(object: &Value) -> Vec<u8> {
    let mut object = object.clone();
    object["metadata"]["managedFields"] = json!([{"manager": "kube-controller-manager", "operation": "Update",
        "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {".": {}}}}}]);
    serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": "emojivoto",
        "operation": "CREATE", "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
        "object": object, "oldObject": null, "dryRun": false}}))
    .unwrap()
}

/// Decode, evaluate, review and encode, as the webhook's handler does for one request.
pub fn admit(injector: &Injector, policy: &Policy, body: &[u8]) -> usize {
    let review = webhook::admission::decode(body).unwrap();
    let request = &review.request;
    let object = request.object.as_ref().unwrap();
    let owner = Owner { kind: "deployment", name: "web" };
    let origin = Origin::Webhook { namespace: &request.namespace, namespace_annotations: None, owner: Some(owner) };
    let outcome = injector.evaluate(&Request { object, kind: Some(&request.kind.kind), origin }).unwrap();
    let violations = review_pod(injector, policy, object, &outcome);
    let answer = webhook::admission::Answer {
        allowed: true,
        patch: Some(outcome.patch.to_json()),
        warnings: violations.iter().map(ToString::to_string).collect(),
        ..Default::default()
    };
    webhook::admission::encode(&review.api_version, &request.uid, &answer).len()
}

pub fn review_pod(injector: &Injector, policy: &Policy, pod: &Value, outcome: &inject::Outcome) -> Vec<Violation> {
    static LABELS: std::sync::LazyLock<BTreeMap<String, String>> = std::sync::LazyLock::new(|| {
        BTreeMap::from([("kubernetes.io/metadata.name".to_string(), "emojivoto".to_string())])
    });
    let subject = Subject {
        outcome,
        values: &injector.values().values,
        annotations: pod.pointer("/metadata/annotations").and_then(Value::as_object),
        namespace: Some(Namespace { name: "emojivoto", labels: &LABELS }),
    };
    policy.review(&subject)
}

/// The chart's default (every rule off), or `examples/policy.yaml` (every rule on).
pub fn policy(injector: &Injector, every_rule: bool) -> Policy {
    if !every_rule {
        return Policy::from_values(&injector.values().values).unwrap();
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/policy.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let rules = manifest::parse_stream(&text).unwrap().remove(0).value;
    let values = injector.values().clone().merge(rules).unwrap();
    Policy::from_values(&values.values).unwrap()
}

/// The three pods of the per-admission targets, by name.
pub fn cases() -> [(&'static str, Value); 3] {
    [
        ("typical (2 containers, 10 env vars)", pod(vec![container("web", 10), container("sidecar", 0)])),
        ("1000 env vars", pod(vec![container("web", 1000)])),
        ("64 KB pod spec", pod_of_size(64 * 1024)),
    ]
}
