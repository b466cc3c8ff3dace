//! One admission as the webhook computes it: the engine alone (decision + patch), and the whole
//! of it (decoding the AdmissionReview body, the engine, the governance rules, encoding the
//! answer); then what governance and apply-time advice cost.
//! Run: cargo bench -p proxy-injector-webhook --bench admission

use std::collections::BTreeMap;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use governance::Surroundings;
use inject::{Origin, Owner, Request};
use serde_json::json;

mod support;
use support::*;

/// The binary's allocator, so the figures are the ones the webhook and CLI get.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    let injector = injector();
    let default_policy = policy(&injector, false);
    let cases = cases();
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
