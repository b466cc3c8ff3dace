//! Injection inside the apiserver: compiles the injection configuration into a
//! MutatingAdmissionPolicy (admissionregistration.k8s.io/v1) whose CEL adds exactly what the
//! webhook adds, for the pods it supports ([`support`]); the webhook injects the rest.
//!
//! What is the same for every pod (the proxy container, images, trust anchors, addresses) is
//! taken from the engine itself: the compiler runs [`inject::Injector`] on a probe pod and turns
//! its patch into CEL, so the two paths cannot drift apart. What depends on the pod is computed
//! in CEL from the object: inbound ports, opaque ports (names resolved), the copied
//! service-account token mount, the app's capabilities, owner labels, inherited annotations.
//!
//! The apiserver evaluates MutatingAdmissionPolicies before it calls mutating webhooks, so a pod
//! the policy injected reaches the webhook with its proxy, and the webhook's own
//! `not-already-injected` condition passes it by; a pod the policy skips (a condition fails, or
//! its CEL fails with failurePolicy Ignore) reaches the webhook unchanged. Every pod is thus
//! injected by exactly one of them, in either order of reinvocation.

#![forbid(unsafe_code)]

pub mod cel;
pub mod support;
pub mod unserved;

use inject::annotation::{self as key};
use inject::patch::{PatchValue, escape_token};
use inject::render::{INIT_CONTAINER, PROXY_CONTAINER};
use inject::workload::{Kind, SERVICE_ACCOUNT_MOUNT_PATH};
use inject::{Action, FINGERPRINT, Injector, Origin, Request};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

pub use crate::support::{Route, Support, route};

pub const POLICY_NAME: &str = "proxy-injector.linkerd.io";
/// The policy's annotation with the digest of what it injects; pods it injects carry the same
/// digest in [`FINGERPRINT`], after [`FINGERPRINT_PREFIX`].
pub const COMPILED_FROM: &str = "proxy-injector.linkerd.io/compiled-from";
pub const FINGERPRINT_PREFIX: &str = "policy-";

/// The configuration cannot be compiled into a policy.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CompileError {
    #[error("cannot write {pointer} as CEL: {why}")]
    Inexpressible { pointer: String, why: String },
    #[error("the admission policy does not support {setting}: {why}; use --injection webhook")]
    Unsupported { setting: &'static str, why: String },
    #[error("the injection configuration is unusable: {0}")]
    Engine(String),
    #[error("the engine's patch has an operation the compiler does not know: {0}")]
    UnknownOperation(String),
}

/// How the policy is registered; none of this changes what it injects.
#[derive(Debug, Clone)]
pub struct Options {
    /// The policy's and its binding's name ([`POLICY_NAME`] unless several are installed).
    pub name: String,
    /// `Fail` or `Ignore`: with `Ignore`, a pod whose CEL fails goes on to the webhook.
    pub failure_policy: &'static str,
    /// The webhook's selectors, so both see the same namespaces and objects.
    pub namespace_selector: Value,
    pub object_selector: Value,
    pub control_plane_ns: String,
}

impl Options {
    /// `matchConstraints`: pods as they are created, where the webhook would see them.
    fn pod_creations(&self) -> Value {
        json!({
            "resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                "resources": ["pods"], "scope": "Namespaced"}],
            "namespaceSelector": self.namespace_selector,
            "objectSelector": self.object_selector,
        })
    }

    fn labels(&self) -> Value {
        json!({"linkerd.io/control-plane-component": "proxy-injector",
            "linkerd.io/control-plane-ns": self.control_plane_ns})
    }
}

/// The policy and its binding, ready to apply.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// Digest of the conditions, variables and mutation.
    pub digest: String,
    pub policy: Value,
    pub binding: Value,
}

impl Compiled {
    /// The [`FINGERPRINT`] of the pods this policy injects.
    pub fn fingerprint(&self) -> String {
        format!("{FINGERPRINT_PREFIX}{}", self.digest)
    }
}

/// Stands for the digest inside the expressions while the digest is computed.
const DIGEST_PLACEHOLDER: &str = "{{policy-digest}}";
const PROBE_NAMESPACE: &str = "policy-probe";
const PROBE_TOKEN_VOLUME: &str = "policy-probe-token";

/// What the policy's reach depends on, from the values.
pub fn support(injector: &Injector) -> Result<Support, CompileError> {
    let v = &injector.values().values;
    let rules = governance::Policy::from_values(v).map_err(|e| CompileError::Engine(e.to_string()))?;
    let opaque_forbidden = rules.forbidden_overrides.mode != governance::Mode::Off
        && rules.forbidden_overrides.annotations.iter().any(|a| a == key::OPAQUE_PORTS);
    Ok(Support {
        token_projection: v.identity.service_account_token_projection,
        opaque_ports_annotation: !opaque_forbidden,
    })
}

/// The [`FINGERPRINT`] the policy compiled from this configuration gives, for the reconciler.
pub fn fingerprint(injector: &Injector) -> Result<String, CompileError> {
    let options = Options {
        name: POLICY_NAME.into(),
        failure_policy: "Ignore",
        namespace_selector: json!({}),
        object_selector: json!({}),
        control_plane_ns: injector.control_plane_ns().into(),
    };
    Ok(compile(injector, &options)?.fingerprint())
}

pub fn compile(injector: &Injector, options: &Options) -> Result<Compiled, CompileError> {
    let v = &injector.values().values;
    if v.proxy.tracing.enabled {
        return Err(CompileError::Unsupported {
            setting: "proxy.tracing.enabled",
            why: "the trace attributes come from each pod's labels and annotations files".into(),
        });
    }
    let support = support(injector)?;
    let values_default = &v.proxy.opaque_ports;
    if !support::opaque_items_resolvable(values_default, None) {
        return Err(CompileError::Unsupported {
            setting: "proxy.opaquePorts",
            why: format!("{values_default:?} has an item that is not a port or a range (a name needs the webhook)"),
        });
    }
    let probe = probe(&support);
    let outcome = injector
        .evaluate(&Request { object: &probe.pod, kind: Some("Pod"), origin: probe.origin() })
        .map_err(|e| CompileError::Engine(e.to_string()))?;
    if outcome.action != Action::Injected {
        return Err(CompileError::Engine(format!("the probe pod is not injected: {:?}", outcome.reasons)));
    }
    let rules = governance::Policy::from_values(v).map_err(|e| CompileError::Engine(e.to_string()))?;
    let subject = governance::Subject {
        outcome: &outcome,
        values: v,
        annotations: probe.pod.pointer("/metadata/annotations").and_then(Value::as_object),
        namespace: None,
    };
    if let Some(violation) = rules.review(&subject).first() {
        return Err(CompileError::Unsupported { setting: "proxyInjector.policy", why: violation.to_string() });
    }

    let mut operations = vec![
        create_if_missing("object.metadata", "annotations", "/metadata/annotations", "{}"),
        create_if_missing("object.metadata", "labels", "/metadata/labels", "{}"),
        create_if_missing("object.spec", "volumes", "/spec/volumes", "[]"),
        create_if_missing("object.spec", "initContainers", "/spec/initContainers", "[]"),
    ];
    for operation in outcome.patch.operations() {
        operations.push(compile_operation(&operation.path, &operation.value, v.proxy.security_context.is_empty())?);
    }
    operations.push(format!(
        "(!({} in {}) ? [{}] : [])",
        cel::string(key::INJECT),
        POD_ANNOTATIONS,
        patch_operation(
            &annotation_path(key::INJECT),
            &format!("namespaceObject.metadata.annotations[{}]", cel::string(key::INJECT))
        )
    ));
    operations.push(format!(
        "(variables.opaqueAnnotation.hasValue() ? [{}] : [])",
        patch_operation(&annotation_path(key::OPAQUE_PORTS), "variables.opaqueAnnotation.value()")
    ));
    operations.push(
        "(variables.ownerLabelPath != '' ? [JSONPatch{op: \"add\", path: \"/metadata/labels/\" + variables.ownerLabelPath, value: variables.ownerName}] : [])"
            .to_string(),
    );
    operations.retain(|o| o != "[]");
    let mutation = format!("!variables.namespaceAllows ? [] :\n{}", operations.join(" +\n"));
    if mutation.matches(DIGEST_PLACEHOLDER).count() != 1 {
        return Err(CompileError::Inexpressible {
            pointer: FINGERPRINT.into(),
            why: format!("the configuration itself holds {DIGEST_PLACEHOLDER}"),
        });
    }
    let match_conditions = support::match_conditions(&support);
    let mut variables = variables(injector);
    variables.insert(0, json!({"name": "namespaceAllows", "expression": support::namespace_conditions(&support)}));
    let digested = json!({"matchConditions": match_conditions, "variables": variables, "mutation": mutation});
    let digest = hex(&Sha256::digest(digested.to_string().as_bytes())[..16]);
    let mutation = mutation.replace(DIGEST_PLACEHOLDER, &digest);

    let labels = options.labels();
    let policy = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": options.name, "labels": labels, "annotations": {COMPILED_FROM: digest}},
        "spec": {
            "failurePolicy": options.failure_policy,
            "reinvocationPolicy": "IfNeeded",
            "matchConstraints": options.pod_creations(),
            "matchConditions": match_conditions,
            "variables": variables,
            "mutations": [{"patchType": "JSONPatch", "jsonPatch": {"expression": mutation}}],
        },
    });
    let binding = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicyBinding",
        "metadata": {"name": options.name, "labels": labels},
        "spec": {"policyName": options.name},
    });
    Ok(Compiled { digest, policy, binding })
}

const POD_ANNOTATIONS: &str = "object.metadata.?annotations.orValue({})";

/// The pod the engine injects to give the constant parts: one container with a token mount,
/// opted in by its namespace, with an opaque-ports annotation when the policy supports one (so
/// the proxy's opaque-ports variable is rendered, to be made conditional).
struct Probe {
    pod: Value,
    namespace_annotations: Map<String, Value>,
}

impl Probe {
    fn origin(&self) -> Origin<'_> {
        Origin::Webhook {
            namespace: PROBE_NAMESPACE,
            namespace_annotations: Some(&self.namespace_annotations),
            owner: None,
        }
    }
}

fn probe(support: &Support) -> Probe {
    let annotations = if support.opaque_ports_annotation { json!({key::OPAQUE_PORTS: "1"}) } else { json!({}) };
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "probe", "namespace": PROBE_NAMESPACE, "annotations": annotations, "labels": {}},
        "spec": {"volumes": [], "initContainers": [], "containers": [{"name": "app", "image": "app",
            "volumeMounts": [{"mountPath": SERVICE_ACCOUNT_MOUNT_PATH, "name": PROBE_TOKEN_VOLUME, "readOnly": true}]}]}});
    let namespace_annotations = json!({key::INJECT: "enabled"}).as_object().cloned().unwrap_or_default();
    Probe { pod, namespace_annotations }
}

fn create_if_missing(parent: &str, field: &str, path: &str, empty: &str) -> String {
    format!("(has({parent}.{field}) ? [] : [JSONPatch{{op: \"add\", path: {}, value: {empty}}}])", cel::string(path))
}

fn patch_operation(path: &str, value_cel: &str) -> String {
    format!("JSONPatch{{op: \"add\", path: {}, value: {value_cel}}}", cel::string(path))
}

fn annotation_path(annotation: &str) -> String {
    format!("/metadata/annotations/{}", escape_token(annotation))
}

/// One operation of the probe's patch, as a CEL list of zero or one JSONPatch.
fn compile_operation(path: &str, value: &PatchValue, default_security_context: bool) -> Result<String, CompileError> {
    let value = value.to_value();
    if cel::has_marker(&value) {
        return Err(CompileError::Inexpressible {
            pointer: path.into(),
            why: "it holds a control character U+0001".into(),
        });
    }
    let dynamic_annotations = [annotation_path(key::INJECT), annotation_path(key::OPAQUE_PORTS)];
    if dynamic_annotations.contains(&path.to_string()) {
        // Written by the operations after these, from the pod and its namespace.
        return Ok("[]".into());
    }
    if path == annotation_path(FINGERPRINT) {
        let fingerprint = format!("{FINGERPRINT_PREFIX}{DIGEST_PLACEHOLDER}");
        return Ok(format!("[{}]", patch_operation(path, &cel::string(&fingerprint))));
    }
    if path == format!("/metadata/labels/{}", escape_token("linkerd.io/workload-ns")) {
        return Ok(format!("[{}]", patch_operation(path, "namespaceObject.metadata.name")));
    }
    if path.starts_with("/metadata/annotations/") || path.starts_with("/metadata/labels/") {
        return Ok(format!("[{}]", patch_operation(path, &cel::literal(&value, "", path)?)));
    }
    let list = ["/spec/volumes/", "/spec/initContainers/", "/spec/containers/"]
        .into_iter()
        .find(|prefix| path.starts_with(prefix))
        .ok_or_else(|| CompileError::UnknownOperation(path.into()))?;
    let type_path = format!("Object{}", list.trim_end_matches('/').replace('/', "."));
    let value = match value.get("name").and_then(Value::as_str) {
        Some(PROXY_CONTAINER) => proxy_container(value, &type_path, default_security_context)?,
        Some(INIT_CONTAINER) => init_container(value, &type_path)?,
        _ => value,
    };
    Ok(format!("[{}]", patch_operation(path, &cel::literal(&value, &type_path, path)?)))
}

/// The copy of the app's token mount the engine appends to a container's mounts, as CEL over
/// the pod (an empty list when the app mounts no token; validation refuses two mounts at one
/// path).
fn token_mount_copy(type_path: &str) -> String {
    format!(
        "object.spec.containers[0].?volumeMounts.orValue([]).filter(m, m.mountPath == {path}).map(m, \
         {type_path}.volumeMounts{{mountPath: m.mountPath, name: m.name, ?readOnly: m.?readOnly}})",
        path = cel::string(SERVICE_ACCOUNT_MOUNT_PATH)
    )
}

/// Replaces the probe's token mount (the last mount) with [`token_mount_copy`].
fn splice_token_mount(container: &mut Value, type_path: &str) -> Result<(), CompileError> {
    let mounts = container.get_mut("volumeMounts").and_then(Value::as_array_mut);
    let Some(mounts) = mounts.filter(|m| m.last().and_then(|l| l.get("name")) == Some(&json!(PROBE_TOKEN_VOLUME)))
    else {
        return Err(CompileError::UnknownOperation(format!("{type_path}: no copy of the probe's token mount")));
    };
    mounts.pop();
    let constant = cel::literal(&Value::Array(mounts.clone()), &format!("{type_path}.volumeMounts"), "volumeMounts")?;
    container["volumeMounts"] = cel::expression(format!("{constant} + {}", token_mount_copy(type_path)));
    Ok(())
}

fn proxy_container(
    mut container: Value,
    type_path: &str,
    default_security_context: bool,
) -> Result<Value, CompileError> {
    let env_type = format!("{type_path}.env");
    let env = container.get("env").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut pieces = Vec::new();
    let mut constant = Vec::new();
    for variable in env {
        let name = variable.get("name").and_then(Value::as_str).unwrap_or("");
        match name {
            "LINKERD2_PROXY_INBOUND_PORTS" => {
                constant.push(json!({"name": name, "value": cel::expression("variables.inboundPorts")}));
            }
            "LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION" => {
                pieces.push(cel::literal(&Value::Array(std::mem::take(&mut constant)), &env_type, "env")?);
                let entry = json!({"name": name, "value": cel::expression("variables.opaquePorts")});
                pieces.push(format!(
                    "(variables.opaquePorts != '' ? [{}] : [])",
                    cel::literal(&entry, &env_type, "env")?
                ));
            }
            _ => constant.push(variable),
        }
    }
    pieces.push(cel::literal(&Value::Array(constant), &env_type, "env")?);
    container["env"] = cel::expression(pieces.join(" + "));
    // The values' own security context is used as it is; the default one copies the app's
    // capabilities (the probe's app has none).
    if default_security_context
        && let Some(context) = container.get_mut("securityContext").and_then(Value::as_object_mut)
    {
        let some = |list: &str| format!("size(variables.{list}) > 0 ? optional.of(variables.{list}) : optional.none()");
        let capabilities = format!(
            "size(variables.appAdd) > 0 || size(variables.appDrop) > 0 ? \
             optional.of({type_path}.securityContext.capabilities{{?add: {}, ?drop: {}}}) : optional.none()",
            some("appAdd"),
            some("appDrop")
        );
        context.insert("?capabilities".into(), cel::expression(capabilities));
    }
    splice_token_mount(&mut container, type_path)?;
    Ok(container)
}

fn init_container(mut container: Value, type_path: &str) -> Result<Value, CompileError> {
    let base: Vec<String> = container
        .pointer("/securityContext/capabilities/add")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default();
    let base = cel::string_list(base.iter().map(String::as_str));
    // A typed object, not a map literal: the apiserver converts lists nested in map literals
    // to JSON only shallowly.
    let capabilities = format!(
        "{type_path}.securityContext.capabilities{{add: {base} + variables.appAdd, \
         ?drop: variables.appDrop.filter(c, !(c in {base})).size() > 0 ? \
         optional.of(variables.appDrop.filter(c, !(c in {base}))) : optional.none()}}"
    );
    match container.get_mut("securityContext").and_then(Value::as_object_mut) {
        Some(context) => {
            context.insert("capabilities".into(), cel::expression(capabilities));
        }
        None => return Err(CompileError::UnknownOperation("the init container has no security context".into())),
    }
    splice_token_mount(&mut container, type_path)?;
    Ok(container)
}

/// The policy's variables: what the mutation computes from the pod.
fn variables(injector: &Injector) -> Vec<Value> {
    let v = &injector.values().values;
    let ports_of =
        |list: &str| format!("{list}.map(c, c.?ports.orValue([]).map(p, string(p.containerPort))).flatten()");
    let declared =
        format!("{} + {}", ports_of("object.spec.?initContainers.orValue([])"), ports_of("object.spec.containers"));
    let probe_ports = |list: &str| {
        format!(
            "{list}.map(c, [c.?livenessProbe.?httpGet.?port, c.?readinessProbe.?httpGet.?port]\
             .filter(o, o.hasValue() && type(o.value()) == int).map(o, string(o.value()))).flatten()"
        )
    };
    let inbound = format!(
        "({declared} + {} + {}).distinct().sort().join(',')",
        probe_ports("object.spec.?initContainers.orValue([])"),
        probe_ports("object.spec.containers")
    );
    let defaults = cel::string_list(v.proxy.opaque_ports.split(','));
    let opaque_default = format!("({declared}).filter(n, n in {defaults}).join(',')");
    let opaque_source = format!(
        "object.metadata.?annotations[?{op}].orValue(namespaceObject.metadata.?annotations[?{op}].orValue(\
         variables.opaqueDefault != '' ? variables.opaqueDefault : {values_default}))",
        op = cel::string(key::OPAQUE_PORTS),
        values_default = cel::string(&v.proxy.opaque_ports)
    );
    let named = |list: &str| {
        format!(
            "{list}.map(c, c.?ports.orValue([]).filter(p, p.?name.orValue('') == i).map(p, p.containerPort)).flatten()"
        )
    };
    let opaque_ports = format!(
        "variables.opaqueSource.split(',').map(i, i.trim()).filter(i, i != '').map(i, \
         i.matches('{port}') ? string(int(i)) : \
         i.matches('{range}') ? (int(i.split('-')[0]) == int(i.split('-')[1]) ? string(int(i.split('-')[0])) : \
         string(int(i.split('-')[0])) + '-' + string(int(i.split('-')[1]))) : \
         string(({} + {})[0])).join(',')",
        named("object.spec.?initContainers.orValue([])"),
        named("object.spec.containers"),
        port = support::PORT_ITEM,
        range = support::RANGE_ITEM,
    );
    let opaque_annotation = format!(
        "{op} in {POD_ANNOTATIONS} ? optional.none() : namespaceObject.metadata.?annotations[?{op}]\
         .or(variables.opaqueDefault != '' ? optional.of(variables.opaqueDefault) : optional.none())",
        op = cel::string(key::OPAQUE_PORTS)
    );
    let capabilities = "object.spec.containers[0].?securityContext.?capabilities";
    let owner_labels: Vec<String> =
        ["deployment", "replicationcontroller", "replicaset", "daemonset", "statefulset", "cronjob"]
            .into_iter()
            .filter_map(|kind| Some((kind, Kind::parse(kind)?.owner_label()?)))
            .map(|(kind, label)| format!("{}: {}", cel::string(kind), cel::string(&escape_token(label))))
            .collect();
    let deployment_label =
        cel::string(&escape_token(Kind::Deployment.owner_label().unwrap_or("linkerd.io/proxy-deployment")));
    let hash = "object.metadata.?labels[?'pod-template-hash']";
    let by_deployment = format!(
        "size(variables.owners) == 1 && variables.owners[0].kind == 'ReplicaSet' && {hash}.hasValue() && \
         variables.owners[0].name.endsWith('-' + {hash}.value())"
    );
    let owner_label_path = format!(
        "size(variables.owners) != 1 ? '' : variables.ownedByDeployment ? {deployment_label} : \
         {{{}}}[?variables.owners[0].kind.lowerAscii()].orValue('')",
        owner_labels.join(", ")
    );
    let owner_name = format!(
        "variables.ownedByDeployment ? variables.owners[0].name.substring(0, size(variables.owners[0].name) - \
         size({hash}.value()) - 1) : variables.owners[0].name"
    );
    let variable = |name: &str, expression: String| json!({"name": name, "expression": expression});
    vec![
        variable("inboundPorts", inbound),
        variable("opaqueDefault", opaque_default),
        variable("opaqueSource", opaque_source),
        variable("opaquePorts", opaque_ports),
        variable("opaqueAnnotation", opaque_annotation),
        variable("appAdd", format!("{capabilities}.?add.orValue([]).map(c, string(c))")),
        variable("appDrop", format!("{capabilities}.?drop.orValue([]).map(c, string(c))")),
        variable("owners", "object.metadata.?ownerReferences.orValue([])".into()),
        variable("ownedByDeployment", by_deployment),
        variable("ownerLabelPath", owner_label_path),
        variable("ownerName", owner_name),
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
