//! Which pods the policy injects. Each condition is declared once, as the CEL the apiserver
//! evaluates and as the Rust that `explain` evaluates, with the reason a pod that fails it goes
//! to the webhook instead. The end-to-end suite checks that both agree on every pod of its
//! matrix. The apiserver gives a policy's `matchConditions` no `namespaceObject`, so conditions
//! on the namespace are a variable the mutation tests instead (it adds nothing when one fails).

use inject::annotation::{self as key};
use inject::decision;
use inject::workload::{
    PodTemplate, SERVICE_ACCOUNT_MOUNT_PATH, SIDECAR_INIT_IMAGES, SIDECAR_INIT_NAMES, SIDECAR_PROXY_IMAGES,
    SIDECAR_PROXY_NAMES, Workload,
};
use serde_json::{Map, Value, json};

use crate::cel;

/// Every annotation the engine reads for configuration starts with one of these.
pub const CONFIG_PREFIXES: [&str; 3] = ["config.linkerd.io/", "config.beta.linkerd.io/", "config.alpha.linkerd.io/"];

/// What of the configuration decides the policy's reach.
#[derive(Debug, Clone, Copy)]
pub struct Support {
    /// Linkerd projects its own identity token, so the app's token mount does not matter.
    pub token_projection: bool,
    /// A pod or namespace may set `config.linkerd.io/opaque-ports` (unless governance forbids
    /// that override; the webhook enforces the rule).
    pub opaque_ports_annotation: bool,
}

/// What a condition sees of one pod.
pub struct Facts<'a> {
    pub template: PodTemplate<'a>,
    pub namespace_annotations: Option<&'a Map<String, Value>>,
}

impl Facts<'_> {
    fn pod_annotation(&self, key: &str) -> Option<&str> {
        self.template.annotation(key)
    }

    fn namespace_annotation(&self, key: &str) -> Option<&str> {
        self.namespace_annotations.and_then(|a| a.get(key)).and_then(Value::as_str)
    }
}

/// One condition of the policy's reach.
pub struct Condition {
    /// The `matchConditions` entry's name (for conditions on the pod alone).
    pub name: &'static str,
    /// Whether it reads the namespace, so it cannot be a `matchCondition`.
    pub reads_namespace: bool,
    /// Why a pod that fails it is the webhook's.
    pub unmet: &'static str,
    cel: fn(&Support) -> String,
    holds: fn(&Support, &Facts<'_>) -> bool,
}

impl Condition {
    /// The condition as CEL over `object` (and `namespaceObject` when it reads the namespace).
    pub fn cel(&self, support: &Support) -> String {
        (self.cel)(support)
    }
}

/// A CEL map lookup of an annotation of the pod (`object`) or its namespace (`namespaceObject`).
fn annotation(of: &str, key: &str) -> String {
    format!("{of}.metadata.?annotations[?{}]", cel::string(key))
}

/// CEL: any regular or init container satisfies `predicate` (over `c`).
fn any_container(predicate: &str) -> String {
    format!(
        "(object.spec.containers.exists(c, {predicate}) || object.spec.?initContainers.orValue([]).exists(c, {predicate}))"
    )
}

fn named_like(names: &[&str], images: &[&str]) -> String {
    let images: Vec<String> =
        images.iter().map(|prefix| format!("c.?image.orValue('').startsWith({})", cel::string(prefix))).collect();
    format!("(c.name in {} || {})", cel::string_list(names.iter().copied()), images.join(" || "))
}

/// CEL: the annotations of `of` set nothing the policy leaves to the webhook.
fn config_annotations_cel(of: &str, support: &Support) -> String {
    let prefixes: Vec<String> = CONFIG_PREFIXES.iter().map(|p| format!("k.startsWith({})", cel::string(p))).collect();
    let allowed = if support.opaque_ports_annotation {
        format!(" && k != {}", cel::string(key::OPAQUE_PORTS))
    } else {
        String::new()
    };
    format!("!{of}.metadata.?annotations.orValue({{}}).exists(k, ({}){allowed})", prefixes.join(" || "))
}

fn config_annotations_hold(annotations: Option<&Map<String, Value>>, support: &Support) -> bool {
    annotations.into_iter().flatten().all(|(k, _)| {
        !CONFIG_PREFIXES.iter().any(|p| k.starts_with(p)) || (support.opaque_ports_annotation && k == key::OPAQUE_PORTS)
    })
}

/// The regular expressions an opaque-ports item must match to be resolved by the policy; other
/// forms (spaces around a dash, six-digit numbers) are the webhook's, which also warns about
/// them.
pub const PORT_ITEM: &str = "^[0-9]{1,5}$";
pub const RANGE_ITEM: &str = "^[0-9]{1,5}-[0-9]{1,5}$";

/// CEL: every item of the opaque-ports list `raw` (a CEL string) is a port, a range or the name
/// of a container port of the pod.
pub fn opaque_items_resolvable_cel(raw: &str) -> String {
    let named = any_container("c.?ports.orValue([]).exists(p, p.?name.orValue('') == i)");
    format!(
        "{raw}.split(',').map(i, i.trim()).filter(i, i != '').all(i, \
         (i.matches('{PORT_ITEM}') && int(i) <= 65535) || \
         (i.matches('{RANGE_ITEM}') && int(i.split('-')[0]) <= int(i.split('-')[1]) && int(i.split('-')[1]) <= 65535) || \
         {named})"
    )
}

/// The Rust twin of [`opaque_items_resolvable_cel`].
pub fn opaque_items_resolvable(raw: &str, template: Option<PodTemplate<'_>>) -> bool {
    let port = |s: &str| (1..=5).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    let number = |s: &str| s.parse::<u32>().unwrap_or(u32::MAX);
    raw.split(',').map(str::trim).filter(|i| !i.is_empty()).all(|item| {
        if port(item) {
            return number(item) <= 65535;
        }
        if let Some((low, high)) = item.split_once('-')
            && port(low)
            && port(high)
        {
            return number(low) <= number(high) && number(high) <= 65535;
        }
        template.is_some_and(|t| t.named_port(item).is_some())
    })
}

/// The opaque-ports list a pod's own annotation or else its namespace's gives, as CEL.
pub fn opaque_override_cel() -> String {
    format!(
        "{}.orValue({}.orValue(''))",
        annotation("object", key::OPAQUE_PORTS),
        annotation("namespaceObject", key::OPAQUE_PORTS)
    )
}

fn inject_values() -> Vec<&'static str> {
    std::iter::once("").chain(decision::INJECT_VALUES).collect()
}

/// The policy's conditions, in the order they are evaluated.
pub fn conditions(support: &Support) -> Vec<&'static Condition> {
    CONDITIONS
        .iter()
        .filter(|c| match c.name {
            "service-account-token" => !support.token_projection,
            "opaque-ports-resolvable" => support.opaque_ports_annotation,
            _ => true,
        })
        .collect()
}

static CONDITIONS: [Condition; 8] = [
    Condition {
        name: "no-mesh-proxy-yet",
        reads_namespace: false,
        unmet: "it already has a mesh proxy or its init container",
        cel: |_| {
            format!(
                "!{} && !object.spec.?initContainers.orValue([]).exists(c, {})",
                any_container(&named_like(SIDECAR_PROXY_NAMES, SIDECAR_PROXY_IMAGES)),
                named_like(SIDECAR_INIT_NAMES, SIDECAR_INIT_IMAGES)
            )
        },
        holds: |_, facts| !facts.template.has_sidecar(),
    },
    Condition {
        name: "pod-network",
        reads_namespace: false,
        unmet: "it uses the host's network",
        cel: |_| "!object.spec.?hostNetwork.orValue(false)".into(),
        holds: |_, facts| !facts.template.host_network(),
    },
    Condition {
        name: "service-account-token",
        reads_namespace: false,
        unmet: "its first container mounts no service-account token, which the proxy's identity needs",
        cel: |_| {
            format!(
                "object.spec.?automountServiceAccountToken.orValue(true) && size(object.spec.containers) > 0 && \
                 object.spec.containers[0].?volumeMounts.orValue([]).exists(m, m.mountPath == {})",
                cel::string(SERVICE_ACCOUNT_MOUNT_PATH)
            )
        },
        holds: |_, facts| {
            facts.template.automount_service_account_token() != Some(false)
                && facts.template.service_account_mount().is_some()
        },
    },
    Condition {
        name: "opted-in",
        reads_namespace: true,
        unmet: "it is not opted in with linkerd.io/inject: enabled (ingress mode and invalid values are the webhook's)",
        cel: |_| {
            let ns = format!("{}.orValue('')", annotation("namespaceObject", key::INJECT));
            let pod = format!("{}.orValue('')", annotation("object", key::INJECT));
            let valid = cel::string_list(inject_values());
            format!(
                "{ns} in {valid} && {pod} in {valid} && \
                 (({ns} == 'enabled' && {pod} != 'disabled') || ({ns} != 'enabled' && {ns} != 'ingress' && {pod} == 'enabled'))"
            )
        },
        holds: |_, facts| {
            let decision = decision::evaluate_webhook(
                facts.namespace_annotation(key::INJECT).unwrap_or(""),
                facts.pod_annotation(key::INJECT).unwrap_or(""),
            );
            decision.skip.is_none() && decision.value == "enabled"
        },
    },
    Condition {
        name: "own-annotations-supported",
        reads_namespace: false,
        unmet: "it sets a config.linkerd.io annotation the policy does not compile (only opaque-ports)",
        cel: |support| config_annotations_cel("object", support),
        holds: |support, facts| config_annotations_hold(facts.template.annotations(), support),
    },
    Condition {
        name: "namespace-annotations-supported",
        reads_namespace: true,
        unmet: "its namespace sets a config.linkerd.io annotation the policy does not compile (only opaque-ports)",
        cel: |support| config_annotations_cel("namespaceObject", support),
        holds: |support, facts| config_annotations_hold(facts.namespace_annotations, support),
    },
    Condition {
        name: "opaque-ports-resolvable",
        reads_namespace: true,
        unmet: "its opaque-ports list has an item that is not a port, a range or one of its named ports",
        cel: |_| opaque_items_resolvable_cel(&opaque_override_cel()),
        holds: |_, facts| {
            let raw = facts
                .pod_annotation(key::OPAQUE_PORTS)
                .or_else(|| facts.namespace_annotation(key::OPAQUE_PORTS))
                .unwrap_or("");
            opaque_items_resolvable(raw, Some(facts.template))
        },
    },
    Condition {
        name: "owner-known-without-lookup",
        reads_namespace: false,
        unmet: "it is owned by a Job, whose own owner (a CronJob or none) only the webhook can look up",
        cel: |_| {
            "size(object.metadata.?ownerReferences.orValue([])) != 1 || object.metadata.ownerReferences[0].kind != 'Job'"
                .into()
        },
        holds: |_, facts| {
            let owners = facts.template.value.pointer("/metadata/ownerReferences").and_then(Value::as_array);
            !matches!(owners.map(Vec::as_slice), Some([only]) if only.get("kind").and_then(Value::as_str) == Some("Job"))
        },
    },
];

/// The policy's `matchConditions`: the conditions on the pod alone.
pub fn match_conditions(support: &Support) -> Vec<Value> {
    conditions(support)
        .iter()
        .filter(|c| !c.reads_namespace)
        .map(|c| json!({"name": c.name, "expression": c.cel(support)}))
        .collect()
}

/// CEL: every condition that reads the namespace holds.
pub fn namespace_conditions(support: &Support) -> String {
    let parts: Vec<String> =
        conditions(support).iter().filter(|c| c.reads_namespace).map(|c| format!("({})", c.cel(support))).collect();
    parts.join(" && ")
}

/// Who injects a pod when both the policy and the webhook are installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The apiserver itself, through the policy.
    Policy,
    /// The webhook (which may also leave the pod alone), with every condition the pod fails.
    Webhook { unmet: Vec<(&'static str, &'static str)> },
}

/// The route of `pod` (a Pod object) in a namespace with these annotations.
pub fn route(support: &Support, pod: &Value, namespace_annotations: Option<&Map<String, Value>>) -> Route {
    let Some(template) = Workload::new(pod, Some("Pod")).template else {
        return Route::Webhook { unmet: vec![("pod", "it is not a pod")] };
    };
    let facts = Facts { template, namespace_annotations };
    let unmet: Vec<_> =
        conditions(support).into_iter().filter(|c| !(c.holds)(support, &facts)).map(|c| (c.name, c.unmet)).collect();
    if unmet.is_empty() { Route::Policy } else { Route::Webhook { unmet } }
}
