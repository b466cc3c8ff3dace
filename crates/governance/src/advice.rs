//! Advice for whoever applies a workload, a namespace or a Service: what the injector will make
//! of its pods, computed by the engine on the pod template as the webhook will see the pods.
//! Returned as admission warnings, which kubectl prints and GitOps tools show; never a denial.

use std::collections::BTreeMap;

use inject::annotation::{self as key};
use inject::config::{AnnotationSet, EnvLayers, ProxyConfig, Source};
use inject::decision::INJECT_VALUES;
use inject::workload::{Kind, Workload};
use inject::{Injector, Origin, Request};
use serde_json::{Map, Value};

use crate::policy::{Mode, Namespace, Policy, Subject};

/// What is known of the namespace the object is applied in.
#[derive(Debug, Clone, Copy)]
pub struct Surroundings<'a> {
    pub namespace: &'a str,
    pub namespace_annotations: Option<&'a Map<String, Value>>,
    pub namespace_labels: Option<&'a BTreeMap<String, String>>,
}

const CONFIG_PREFIXES: [&str; 3] = ["config.linkerd.io/", "config.alpha.linkerd.io/", "config.beta.linkerd.io/"];

/// `linkerd.io/inject` and the `config.*linkerd.io/*` settings: what injection reads.
pub fn is_injection_key(k: &str) -> bool {
    k == key::INJECT || CONFIG_PREFIXES.iter().any(|p| k.starts_with(p))
}

/// The warnings for one object of `kind` (the AdmissionRequest's kind); none for other kinds.
pub fn advise(
    injector: &Injector,
    policy: &Policy,
    object: &Value,
    kind: &str,
    around: Surroundings<'_>,
) -> Vec<String> {
    let workload = Workload::new(object, Some(kind));
    match workload.kind {
        Some(Kind::Namespace) => namespace(injector, &workload),
        Some(Kind::Service) => service(&workload),
        Some(Kind::Pod) | None => Vec::new(),
        Some(_) => templated(injector, policy, &workload, around),
    }
}

fn templated(injector: &Injector, policy: &Policy, workload: &Workload<'_>, around: Surroundings<'_>) -> Vec<String> {
    let (object, kind_name) = (workload.object, workload.kind_name);
    let origin = Origin::Webhook {
        namespace: around.namespace,
        namespace_annotations: around.namespace_annotations,
        owner: None,
    };
    let outcome = match injector.evaluate(&Request { object, kind: Some(kind_name), origin }) {
        Ok(outcome) => outcome,
        Err(error) => {
            return vec![format!("the linkerd proxy injector will refuse the pods of this {kind_name}: {error}")];
        }
    };
    let Some(template) = workload.template else { return Vec::new() };
    let place = dotted(template.pointer);
    let mut advice = Vec::new();
    for (k, _) in workload.annotations().into_iter().flatten().filter(|(k, _)| is_injection_key(k)) {
        advice.push(format!(
            "annotation {k} on the {kind_name}'s own metadata has no effect on its pods; set it in {place}.metadata.annotations"
        ));
    }
    if workload.kind == Some(Kind::CronJob) {
        let job_annotations = object.pointer("/spec/jobTemplate/metadata/annotations").and_then(Value::as_object);
        for (k, _) in job_annotations.into_iter().flatten().filter(|(k, _)| is_injection_key(k)) {
            advice.push(format!(
                "annotation {k} in spec.jobTemplate.metadata has no effect on the pods; set it in {place}.metadata.annotations"
            ));
        }
    }
    advice.extend(outcome.warnings.iter().map(|w| format!("pods of this {kind_name}: {w}")));

    // The decision asked for the proxy; what stops it is the pod's own shape, the same reasons
    // that make `inject` fail on the command line.
    let requested = outcome.inject_annotation.skip.is_none();
    let blocking: Vec<&str> = outcome.reasons.iter().filter(|r| r.is_cli_error()).map(|r| r.text()).collect();
    if requested && !blocking.is_empty() {
        advice.push(format!(
            "pods of this {kind_name} ask for the linkerd proxy but will not be injected: {}",
            blocking.join(", ")
        ));
    }
    let native = outcome.config.as_ref().is_some_and(|c| c.native_sidecar.value);
    if outcome.injectable && matches!(workload.kind, Some(Kind::Job | Kind::CronJob)) && !native {
        advice.push(format!(
            "pods of this {kind_name} get the linkerd proxy as an ordinary container, which keeps running and stops \
             the Job from completing; set {}: \"true\" in {place}.metadata.annotations (Kubernetes 1.29 or later)",
            key::NATIVE_SIDECAR
        ));
    }
    let namespace = around.namespace_labels.map(|labels| Namespace { name: around.namespace, labels });
    let subject = Subject {
        outcome: &outcome,
        values: &injector.values().values,
        annotations: template.annotations(),
        namespace,
    };
    for violation in policy.review(&subject) {
        let verdict = match violation.mode {
            Mode::Enforce => "will be denied",
            _ => "will be admitted with a warning",
        };
        advice.push(format!("pods of this {kind_name} {verdict}: {violation}"));
    }
    advice
}

fn namespace(injector: &Injector, workload: &Workload<'_>) -> Vec<String> {
    let mut advice = Vec::new();
    let annotations = workload.annotations();
    let value = annotations.and_then(|a| a.get(key::INJECT)).and_then(Value::as_str);
    if let Some(value) = value.filter(|v| !INJECT_VALUES.contains(v)) {
        advice.push(format!(
            "annotation {}: invalid value {value:?} (expected enabled, disabled or ingress); no pod in this namespace \
             will be injected",
            key::INJECT
        ));
    }
    let mut inherited = AnnotationSet::default();
    for (k, v) in annotations.into_iter().flatten().filter(|(k, _)| CONFIG_PREFIXES.iter().any(|p| k.starts_with(p))) {
        match v.as_str().filter(|_| key::INHERITED.contains(&k.as_str())) {
            Some(text) => inherited.insert(k.clone(), text, Source::NamespaceAnnotation),
            None => advice.push(format!(
                "annotation {k} has no effect on a namespace: pods do not inherit it; set it on the pod templates"
            )),
        }
    }
    let (_, warnings) = ProxyConfig::resolve(injector.values(), &inherited, EnvLayers::default());
    advice.extend(warnings.iter().map(|w| format!("pods of this namespace: {w}")));
    advice
}

fn service(workload: &Workload<'_>) -> Vec<String> {
    let misplaced = workload.annotations().into_iter().flatten().map(|(k, _)| k);
    misplaced
        .filter(|k| is_injection_key(k) && k.as_str() != key::OPAQUE_PORTS)
        .map(|k| {
            format!(
                "annotation {k} has no effect on a Service (it reads only {}); set it on the pod templates",
                key::OPAQUE_PORTS
            )
        })
        .collect()
}

fn dotted(pointer: &str) -> String {
    pointer.trim_start_matches('/').replace('/', ".")
}
