//! The MutatingWebhookConfiguration that sends pods and Services to the webhook (§3.8), with
//! what the reference lacks: `matchConditions` that keep already-injected and opted-out pods away
//! from the webhook, side effects declared as skipped on dry runs, and reinvocation. A second
//! entry sends workloads, namespaces and Services as they are applied, for advice only: it never
//! mutates, and fails open with a short timeout whatever the pod entry does, so an outage of the
//! webhook never stops a rollout or a GitOps sync.

use serde_json::{Value, json};

use crate::handler::ErrorPolicy;

/// This injector's registration; Linkerd's own is [`LINKERD_CONFIGURATION_NAME`].
pub const CONFIGURATION_NAME: &str = "proxy-injector-webhook-config";
pub const LINKERD_CONFIGURATION_NAME: &str = "linkerd-proxy-injector-webhook-config";
pub const WEBHOOK_NAME: &str = "linkerd-proxy-injector.linkerd.io";
pub const ADVICE_WEBHOOK_NAME: &str = "advice.proxy-injector.linkerd.io";
/// Advice is a courtesy: the apiserver waits at most this long for it.
pub const ADVICE_TIMEOUT_SECONDS: u32 = 2;

/// Where the apiserver reaches the webhook.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// The in-cluster Service (port 443, path `/`).
    Service { namespace: String, name: String },
    /// A URL, for a webhook running outside the cluster.
    Url(String),
}

#[derive(Debug, Clone)]
pub struct Registration {
    pub control_plane_ns: String,
    pub endpoint: Endpoint,
    /// PEM CA bundle that signs the serving certificate; `None` when cert-manager injects it.
    pub ca_bundle: Option<String>,
    /// Also the webhook's `--on-error`: Fail pairs with deny, Ignore with admit.
    pub error_policy: ErrorPolicy,
    pub timeout_seconds: u32,
    /// Pods annotated `linkerd.io/inject: disabled` reach the webhook too, so that a governance
    /// rule (`meshRequired`) can refuse them.
    pub sees_opted_out_pods: bool,
}

/// CEL: the object is not a pod that already has the proxy.
const NOT_INJECTED: &str = "object.kind != 'Pod' || !(object.spec.containers.exists(c, c.name == 'linkerd-proxy') || \
(has(object.spec.initContainers) && object.spec.initContainers.exists(c, c.name == 'linkerd-proxy')))";
/// CEL: the object is not a pod annotated `linkerd.io/inject: disabled`.
const NOT_OPTED_OUT: &str = "object.kind != 'Pod' || !has(object.metadata.annotations) || \
!('linkerd.io/inject' in object.metadata.annotations) || object.metadata.annotations['linkerd.io/inject'] != 'disabled'";

/// The namespaces injection reaches: not those opted out of admission webhooks, nor
/// kube-system and cert-manager (the admission policy uses the same).
pub fn namespace_selector() -> Value {
    json!({"matchExpressions": [
        {"key": "config.linkerd.io/admission-webhooks", "operator": "NotIn", "values": ["disabled"]},
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "cert-manager"]},
    ]})
}

/// The objects injection reaches: not Linkerd's own control plane and CNI.
pub fn object_selector() -> Value {
    json!({"matchExpressions": [
        {"key": "linkerd.io/control-plane-component", "operator": "DoesNotExist"},
        {"key": "linkerd.io/cni-resource", "operator": "DoesNotExist"},
    ]})
}

impl Registration {
    pub fn failure_policy(&self) -> &'static str {
        match self.error_policy {
            ErrorPolicy::Deny => "Fail",
            ErrorPolicy::Admit => "Ignore",
        }
    }

    pub fn render(&self) -> Value {
        let mut client_config = match &self.endpoint {
            Endpoint::Service { namespace, name } => {
                json!({"service": {"name": name, "namespace": namespace, "path": "/"}})
            }
            Endpoint::Url(url) => json!({"url": url}),
        };
        if let Some(ca) = &self.ca_bundle {
            use base64::Engine as _;
            client_config["caBundle"] = json!(base64::engine::general_purpose::STANDARD.encode(ca));
        }
        let (namespace_selector, object_selector) = (namespace_selector(), object_selector());
        let mut match_conditions = vec![json!({"name": "not-already-injected", "expression": NOT_INJECTED})];
        if !self.sees_opted_out_pods {
            match_conditions.push(json!({"name": "not-opted-out", "expression": NOT_OPTED_OUT}));
        }
        let applied = |group: &str, resources: &[&str], operations: &[&str], scope: &str| json!({"operations": operations, "apiGroups": [group], "apiVersions": ["v1"], "resources": resources, "scope": scope});
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {
                "name": CONFIGURATION_NAME,
                "labels": {
                    "linkerd.io/control-plane-component": "proxy-injector",
                    "linkerd.io/control-plane-ns": self.control_plane_ns,
                },
            },
            "webhooks": [{
                "name": WEBHOOK_NAME,
                "namespaceSelector": namespace_selector,
                "objectSelector": object_selector,
                "matchConditions": match_conditions,
                "clientConfig": client_config,
                "failurePolicy": self.failure_policy(),
                "admissionReviewVersions": ["v1", "v1beta1"],
                "rules": [{
                    "operations": ["CREATE"],
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "resources": ["pods", "services"],
                    "scope": "Namespaced",
                }],
                "sideEffects": "NoneOnDryRun",
                "timeoutSeconds": self.timeout_seconds,
                "reinvocationPolicy": "IfNeeded",
            }, {
                "name": ADVICE_WEBHOOK_NAME,
                "namespaceSelector": namespace_selector,
                "objectSelector": object_selector,
                "clientConfig": client_config,
                "failurePolicy": "Ignore",
                "admissionReviewVersions": ["v1", "v1beta1"],
                "rules": [
                    applied("apps", &["deployments", "statefulsets", "daemonsets", "replicasets"], &["CREATE", "UPDATE"], "Namespaced"),
                    applied("batch", &["jobs", "cronjobs"], &["CREATE", "UPDATE"], "Namespaced"),
                    // Services are created through the pod entry, which also advises.
                    applied("", &["services"], &["UPDATE"], "Namespaced"),
                    applied("", &["namespaces"], &["CREATE", "UPDATE"], "Cluster"),
                ],
                "sideEffects": "None",
                "timeoutSeconds": ADVICE_TIMEOUT_SECONDS,
                "reinvocationPolicy": "Never",
            }],
        })
    }
}
