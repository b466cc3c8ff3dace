//! One admission as the webhook computes it: the engine alone (decision + patch), and the whole
//! of it (decoding the AdmissionReview body, the engine, the governance rules, encoding the
//! answer); then what governance and apply-time advice cost.
//! Run: cargo bench -p proxy-injector-webhook --bench admission

use std::collections::BTreeMap;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use governance::{Namespace, Policy, Subject, Surroundings, Violation};
use inject::values::ValuesDocument;
use inject::{Injector, Origin, Owner, Request};
use serde_json::{Value, json};

/// The binary's allocator, so the figures are the ones the webhook and CLI get.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn injector() -> Injector {
    let values = json!({"identityTrustAnchorsPEM": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"});
    Injector::new(ValuesDocument::from_value(values).unwrap(), "linkerd").unwrap()
}

fn container(name: &str, env_vars: usize) -> Value {
    let env: Vec<Value> =
        (0..env_vars).map(|i| json!({"name": format!("VAR_{i}"), "value": format!("value-{i}")})).collect();
    json!({"name": name, "image": format!("registry.example/{name}:v1.2.3"), "env": env,
        "ports": [{"containerPort": 8080, "name": "http"}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}})
}

fn pod(containers: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-7d9c8-", "namespace": "emojivoto", "labels": {"app": "web", "pod-template-hash": "7d9c8"},
            "annotations": {"linkerd.io/inject": "enabled"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9c8", "uid": "1", "controller": true}]},
        "spec": {"containers": containers, "serviceAccountName": "web"}})
}

/// A pod of about `bytes` of JSON: containers with many env vars.
fn pod_of_size(bytes: usize) -> Value {
    let mut containers = Vec::new();
    while serde_json::to_vec(&pod(containers.clone())).unwrap().len() < bytes {
        containers.push(container(&format!("c{}", containers.len()), 50));
    }
    pod(containers)
}

fn evaluate(injector: &Injector, object: &Value) -> usize {
    let owner = Owner { kind: "deployment", name: "web" };
    let origin = Origin::Webhook { namespace: "emojivoto", namespace_annotations: None, owner: Some(owner) };
    let outcome = injector.evaluate(&Request { object, kind: None, origin }).unwrap();
    outcome.patch.to_json().len()
}

/// The body the apiserver sends for `object`, with the metadata it adds.
fn review_body(object: &Value) -> Vec<u8> {
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
fn admit(injector: &Injector, policy: &Policy, body: &[u8]) -> usize {
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

fn review_pod(injector: &Injector, policy: &Policy, pod: &Value, outcome: &inject::Outcome) -> Vec<Violation> {
    let labels = BTreeMap::from([("kubernetes.io/metadata.name".to_string(), "emojivoto".to_string())]);
    let subject = Subject {
        outcome,
        values: &injector.values().values,
        annotations: pod.pointer("/metadata/annotations").and_then(Value::as_object),
        namespace: Some(Namespace { name: "emojivoto", labels: &labels }),
    };
    policy.review(&subject)
}

/// The chart's default (every rule off), or `examples/policy.yaml` (every rule on).
fn policy(injector: &Injector, every_rule: bool) -> Policy {
    if !every_rule {
        return Policy::from_values(&injector.values().values).unwrap();
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/policy.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let rules = manifest::parse_stream(&text).unwrap().remove(0).value;
    let values = injector.values().clone().merge(rules).unwrap();
    Policy::from_values(&values.values).unwrap()
}

fn bench(c: &mut Criterion) {
    let injector = injector();
    let default_policy = policy(&injector, false);
    let cases = [
        ("typical (2 containers, 10 env vars)", pod(vec![container("web", 10), container("sidecar", 0)])),
        ("1000 env vars", pod(vec![container("web", 1000)])),
        ("64 KB pod spec", pod_of_size(64 * 1024)),
    ];
    let mut group = c.benchmark_group("decision+patch");
    for (name, object) in &cases {
        let size = serde_json::to_vec(object).unwrap().len();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), object, |b, object| {
            b.iter(|| evaluate(&injector, object))
        });
    }
    group.finish();

    let mut whole = c.benchmark_group("admission (decode + engine + encode)");
    for (name, object) in &cases {
        let body = review_body(object);
        whole.throughput(Throughput::Bytes(body.len() as u64));
        whole.bench_with_input(BenchmarkId::from_parameter(name), &body, |b, body| {
            b.iter(|| admit(&injector, &default_policy, body))
        });
    }
    whole.finish();

    // Where the typical pod's time goes.
    let typical = &cases[0].1;
    let mut parts = c.benchmark_group("typical pod, by step");
    let values = injector.values().clone();
    let mut annotations = inject::config::AnnotationSet::default();
    annotations.insert("linkerd.io/inject", "enabled", inject::config::Source::WorkloadAnnotation);
    parts.bench_function("configuration (values + annotations)", |b| {
        b.iter(|| inject::config::ProxyConfig::resolve(&values, &annotations, inject::config::EnvLayers::default()))
    });
    let owner = Owner { kind: "deployment", name: "web" };
    let origin = Origin::Webhook { namespace: "emojivoto", namespace_annotations: None, owner: Some(owner) };
    parts.bench_function("decision + patch as values", |b| {
        b.iter(|| injector.evaluate(&Request { object: typical, kind: None, origin }).unwrap())
    });
    let outcome = injector.evaluate(&Request { object: typical, kind: None, origin }).unwrap();
    parts.bench_function("patch serialization", |b| b.iter(|| outcome.patch.to_json()));
    parts.finish();

    let mut governance = c.benchmark_group("governance");
    let every_rule = policy(&injector, true);
    governance.bench_function("typical pod, every rule off (the default)", |b| {
        b.iter(|| review_pod(&injector, &default_policy, typical, &outcome))
    });
    governance.bench_function("typical pod, every rule on", |b| {
        b.iter(|| review_pod(&injector, &every_rule, typical, &outcome))
    });
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "emojivoto"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}, "annotations": {"linkerd.io/inject": "enabled", "config.linkerd.io/proxy-cpu-limit": "lots"}},
            "spec": {"containers": [container("web", 10), container("sidecar", 0)]}}}});
    let labels = BTreeMap::new();
    let around = Surroundings { namespace: "emojivoto", namespace_annotations: None, namespace_labels: Some(&labels) };
    governance.bench_function("advice for a Deployment CREATE (every rule on)", |b| {
        b.iter(|| governance::advise(&injector, &every_rule, &deployment, "Deployment", around))
    });
    governance.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
