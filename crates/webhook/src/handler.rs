//! One admission: the engine's decision for the object, with the namespace and owner from the
//! cluster caches, turned into an answer, metrics and an Event.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use inject::decision::SkipReason;
use inject::{Action, Injector, Origin, Outcome, Owner, Request};

use crate::admission::{AdmissionRequest, Answer};
use crate::cluster::{Cluster, EventSink, ResolvedOwner};
use crate::metrics::{Labels, Metrics, annotation_labels};

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
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Inject => "inject",
            Decision::Skip => "skip",
            Decision::Error => "error",
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
    pub injector: Arc<ArcSwapOption<Injector>>,
    pub cluster: Cluster,
    pub events: EventSink,
    pub metrics: Arc<Metrics>,
    pub policy: ErrorPolicy,
    pub no_op: bool,
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
        if !request.operation.is_empty() && request.operation != "CREATE" {
            return plain(Decision::Skip, Answer::allow());
        }
        let Some(injector) = self.injector.load_full() else {
            return self.failed("the injector has no valid configuration loaded (values and trust roots)".into(), None);
        };
        let namespace_annotations = match self.cluster.namespace_annotations(&request.namespace).await {
            Ok(annotations) => annotations,
            Err(error) => return self.failed(error.to_string(), None),
        };
        let is_pod = request.kind.kind == "Pod";
        let owner = if is_pod { Some(self.cluster.resolve_owner(&request.namespace, object).await) } else { None };
        let origin = Origin::Webhook {
            namespace: &request.namespace,
            namespace_annotations: Some(&namespace_annotations),
            owner: owner.as_ref().map(|o| Owner { kind: &o.kind, name: &o.name }),
        };
        let evaluated = injector.evaluate(&Request { object, kind: Some(&request.kind.kind), origin });
        let outcome = match evaluated {
            Ok(outcome) => outcome,
            Err(error) => return self.failed(error.to_string(), owner),
        };
        if is_pod {
            self.count(object, &request.namespace, owner.as_ref(), &outcome);
            if request.dry_run != Some(true) {
                self.record_event(owner.as_ref(), &outcome);
            }
        }
        let decision = if outcome.action == Action::Injected { Decision::Inject } else { Decision::Skip };
        let reasons = outcome.reasons.iter().map(|r| r.code()).collect::<Vec<_>>().join(",");
        let answer = Answer {
            allowed: true,
            patch: (!outcome.patch.is_empty()).then(|| outcome.patch.to_json()),
            warnings: outcome.warnings.iter().map(ToString::to_string).collect(),
            status: None,
        };
        Handled { answer, decision, owner, reasons }
    }

    /// Applies the error policy.
    pub fn failed(&self, error: String, owner: Option<ResolvedOwner>) -> Handled {
        let answer = match self.policy {
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
