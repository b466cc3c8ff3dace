//! One admission: the engine's decision for the object, with the namespace and owner from the
//! cluster caches, checked against the governance rules, turned into an answer, metrics and an
//! Event. Workloads, namespaces and Services applied by a person or a GitOps tool are never
//! changed: they get advice as admission warnings.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use governance::{Mode, Namespace, Subject, Surroundings, Violation};
use inject::decision::SkipReason;
use inject::workload::Kind;
use inject::{Action, Origin, Outcome, Owner, Request};
use serde_json::Value;

use crate::admission::{AdmissionRequest, Answer};
use crate::cluster::{Cluster, EventSink, NamespaceFacts, ResolvedOwner};
use crate::metrics::{Labels, Metrics, annotation_labels};
use crate::reload::Loaded;

/// What to answer when the webhook itself fails (configuration missing, namespace unreadable,
/// deadline passed). The reference denies by accident; here it is chosen, and `install` renders
/// a failurePolicy that agrees (§10 row 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorPolicy {
    /// Reject the object with a message saying why.
    Deny,
    /// Admit it without the proxy, with an admission warning, an Event and a metric.
    Admit,
}

/// How an admission ended, for logs and the latency histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Inject,
    Skip,
    Error,
    /// Denied by an enforced governance rule.
    Deny,
    /// A workload, namespace or Service reviewed at apply time.
    Advise,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Inject => "inject",
            Decision::Skip => "skip",
            Decision::Error => "error",
            Decision::Deny => "deny",
            Decision::Advise => "advise",
        }
    }
}

pub struct Handled {
    pub answer: Answer,
    pub decision: Decision,
    pub owner: Option<ResolvedOwner>,
    pub reasons: String,
}

pub struct Handler {
    pub loaded: Arc<ArcSwapOption<Loaded>>,
    pub cluster: Cluster,
    pub events: EventSink,
    pub metrics: Arc<Metrics>,
    pub on_error: ErrorPolicy,
    pub no_op: bool,
}

/// Kinds reviewed at apply time (the pods they create are injected later, by their own admission).
fn advised(kind: &str) -> bool {
    matches!(
        Kind::parse(kind),
        Some(
            Kind::Deployment
                | Kind::StatefulSet
                | Kind::DaemonSet
                | Kind::ReplicaSet
                | Kind::ReplicationController
                | Kind::Job
                | Kind::CronJob
                | Kind::Namespace
                | Kind::Service
        )
    )
}

/// Whether an UPDATE changed anything injection reads: the spec, or an injection annotation.
/// Controllers rewrite workloads all the time (revision annotations, status); they get no advice.
fn changes_injection_inputs(old: Option<&Value>, new: &Value) -> bool {
    let Some(old) = old else { return true };
    old.get("spec") != new.get("spec") || injection_annotations(old) != injection_annotations(new)
}

fn injection_annotations(object: &Value) -> Vec<(&String, &Value)> {
    let annotations = object.pointer("/metadata/annotations").and_then(Value::as_object);
    annotations.into_iter().flatten().filter(|(k, _)| governance::advice::is_injection_key(k)).collect()
}

impl Handler {
    pub async fn handle(&self, request: &AdmissionRequest) -> Handled {
        let plain = |decision, answer| Handled { answer, decision, owner: None, reasons: String::new() };
        if self.no_op {
            return plain(Decision::Skip, Answer::allow());
        }
        let Some(object) = request.object.as_ref() else {
            return plain(Decision::Skip, Answer::allow());
        };
        let kind = request.kind.kind.as_str();
        let creating = request.operation.is_empty() || request.operation == "CREATE";
        let updating = request.operation == "UPDATE";
        let advising = advised(kind) && (creating || updating);
        // Only a created Pod (or a Service's opaque ports) is ever patched; the rest is advice.
        let injecting = creating && matches!(kind, "Pod" | "Service");
        if !(injecting || advising) {
            return plain(Decision::Skip, Answer::allow());
        }
        if updating && !changes_injection_inputs(request.old_object.as_ref(), object) {
            self.metrics.advised(kind, &request.operation, false);
            return plain(Decision::Advise, Answer::allow());
        }
        let Some(loaded) = self.loaded.load_full() else {
            if !injecting {
                return plain(Decision::Advise, Answer::allow());
            }
            return self.failed("the injector has no valid configuration loaded (values and trust roots)".into(), None);
        };
        let namespace = match kind {
            // A Namespace's advice reads only the object itself.
            "Namespace" => NamespaceFacts::default(),
            _ => match self
                .cluster
                .namespace(&request.namespace, advising || loaded.policy.reads_namespace_labels())
                .await
            {
                Ok(namespace) => namespace,
                Err(error) if !injecting => {
                    tracing::debug!(%error, "advice without the namespace");
                    NamespaceFacts::default()
                }
                Err(error) => return self.failed(error.to_string(), None),
            },
        };
        let advice = if advising { self.advise(&loaded, request, object, &namespace) } else { Vec::new() };
        if !injecting {
            let answer = Answer { allowed: true, warnings: advice, ..Answer::default() };
            return Handled { answer, decision: Decision::Advise, owner: None, reasons: String::new() };
        }
        let mut handled = self.inject(&loaded, request, object, &namespace).await;
        handled.answer.warnings.extend(advice);
        handled
    }

    /// Advice for an object applied by a person or a tool; counted, never a denial.
    fn advise(
        &self,
        loaded: &Loaded,
        request: &AdmissionRequest,
        object: &Value,
        namespace: &NamespaceFacts,
    ) -> Vec<String> {
        let around = Surroundings {
            namespace: &request.namespace,
            namespace_annotations: Some(&namespace.annotations),
            namespace_labels: Some(&namespace.labels),
        };
        let kind = request.kind.kind.as_str();
        let advice = governance::advise(&loaded.injector, &loaded.policy, object, kind, around);
        self.metrics.advised(kind, &request.operation, !advice.is_empty());
        advice
    }

    /// A Pod (or a Service's opaque ports) on CREATE: the engine's patch, within the rules.
    async fn inject(
        &self,
        loaded: &Loaded,
        request: &AdmissionRequest,
        object: &Value,
        namespace: &NamespaceFacts,
    ) -> Handled {
        let injector = &loaded.injector;
        let is_pod = request.kind.kind == "Pod";
        let owner = if is_pod { Some(self.cluster.resolve_owner(&request.namespace, object).await) } else { None };
        let origin = Origin::Webhook {
            namespace: &request.namespace,
            namespace_annotations: Some(&namespace.annotations),
            owner: owner.as_ref().map(|o| Owner { kind: &o.kind, name: &o.name }),
        };
        let evaluated = injector.evaluate(&Request { object, kind: Some(&request.kind.kind), origin });
        let outcome = match evaluated {
            Ok(outcome) => outcome,
            Err(error) => return self.failed(error.to_string(), owner),
        };
        let violations = if is_pod {
            let subject = Subject {
                outcome: &outcome,
                values: &injector.values().values,
                annotations: object.pointer("/metadata/annotations").and_then(Value::as_object),
                namespace: Some(Namespace { name: &request.namespace, labels: &namespace.labels }),
            };
            loaded.policy.review(&subject)
        } else {
            Vec::new()
        };
        for violation in &violations {
            self.metrics.violated(violation, "pod");
        }
        let live = request.dry_run != Some(true);
        let enforced: Vec<&Violation> = violations.iter().filter(|v| v.mode == Mode::Enforce).collect();
        if !enforced.is_empty() {
            let message = enforced.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
            let answer = Answer::deny(403, format!("linkerd proxy injector denied this pod: {message}"));
            return Handled { answer, decision: Decision::Deny, owner, reasons: "policy".into() };
        }
        if is_pod {
            self.count(object, &request.namespace, owner.as_ref(), &outcome);
            if live {
                self.record_event(owner.as_ref(), &outcome);
                self.record_violations(owner.as_ref(), &violations);
            }
        }
        let decision = if outcome.action == Action::Injected { Decision::Inject } else { Decision::Skip };
        let reasons = outcome.reasons.iter().map(|r| r.code()).collect::<Vec<_>>().join(",");
        let mut warnings: Vec<String> = outcome.warnings.iter().map(ToString::to_string).collect();
        warnings.extend(violations.iter().map(ToString::to_string));
        let answer = Answer {
            allowed: true,
            patch: (!outcome.patch.is_empty()).then(|| outcome.patch.to_json()),
            warnings,
            status: None,
        };
        Handled { answer, decision, owner, reasons }
    }

    /// Applies the error policy.
    pub fn failed(&self, error: String, owner: Option<ResolvedOwner>) -> Handled {
        let answer = match self.on_error {
            ErrorPolicy::Deny => {
                Answer::deny(500, format!("linkerd proxy injector could not process this object: {error}"))
            }
            ErrorPolicy::Admit => {
                if let Some(reference) = owner.as_ref().and_then(|o| o.reference.clone()) {
                    let note = format!("Linkerd sidecar proxy injection failed; admitted without the proxy: {error}");
                    self.events.record(&self.metrics, reference, "InjectionFailed", note);
                }
                Answer {
                    allowed: true,
                    warnings: vec![format!(
                        "linkerd proxy injector could not inject this object and admitted it without the proxy: {error}"
                    )],
                    ..Answer::default()
                }
            }
        };
        Handled { answer, decision: Decision::Error, owner, reasons: error }
    }

    fn count(&self, pod: &serde_json::Value, namespace: &str, owner: Option<&ResolvedOwner>, outcome: &Outcome) {
        let own = pod.pointer("/metadata/annotations").and_then(|a| a.as_object());
        let base: Labels =
            vec![("owner_kind", owner.map(|o| o.kind.clone()).unwrap_or_default()), ("namespace", namespace.into())];
        let at = ("annotation_at", outcome.inject_annotation.at.as_str().to_string());
        let per_annotation = annotation_labels(own);
        let mut request_labels = base.clone();
        request_labels.push(at.clone());
        request_labels.extend(per_annotation.iter().cloned());
        self.metrics.requests.get_or_create(&request_labels).inc();
        let skipped = !outcome.injectable;
        let reasons = outcome.reasons.iter().map(|r| r.code()).collect::<Vec<_>>().join(",");
        let mut response_labels = base;
        response_labels.push(("skip", skipped.to_string()));
        response_labels.push(("skip_reason", reasons));
        response_labels.push(at);
        response_labels.extend(per_annotation);
        self.metrics.responses.get_or_create(&response_labels).inc();
    }

    fn record_violations(&self, owner: Option<&ResolvedOwner>, violations: &[Violation]) {
        let Some(reference) = owner.and_then(|o| o.reference.clone()) else { return };
        for violation in violations {
            self.events.record(&self.metrics, reference.clone(), "PolicyViolation", violation.to_string());
        }
    }

    fn record_event(&self, owner: Option<&ResolvedOwner>, outcome: &Outcome) {
        let Some(reference) = owner.and_then(|o| o.reference.clone()) else { return };
        let (reason, note) = if outcome.injectable {
            ("Injected", "Linkerd sidecar proxy injected".to_string())
        } else {
            let texts: Vec<&str> = outcome.reasons.iter().map(|r: &SkipReason| r.text()).collect();
            ("InjectionSkipped", format!("Linkerd sidecar proxy injection skipped: {}", texts.join(", ")))
        };
        self.events.record(&self.metrics, reference, reason, note);
    }
}
