//! The injection engine shared by the webhook and the command line: given the configuration and
//! an object, it decides whether the Linkerd proxy is injected and builds the exact JSON patch.
//!
//! Pure: no I/O, no async, no global state. Everything a decision depends on is in the
//! [`Injector`] (built once from the values) and the [`Request`].

#![forbid(unsafe_code)]

pub mod annotation;
pub mod config;
pub mod decision;
pub mod fields;
mod json_text;
pub mod patch;
pub mod render;
pub mod shape;
pub mod uninject;
pub mod values;
pub mod workload;

use crate::fields::Fields;
use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::annotation::{self as key, Warning};
use crate::config::{AnnotationSet, EnvLayers, ProxyConfig, Source};
use crate::decision::{InjectAnnotation, SkipReason};
use crate::patch::{Patch, escape_token};
use crate::render::RenderInput;
use crate::values::ValuesDocument;
use crate::workload::{Kind, PodTemplate, Workload};

pub use crate::values::ValuesError;

/// The configuration itself is unusable; nothing can be injected until it is fixed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Values(#[from] ValuesError),
    #[error("cannot parse destination get networks: {0:?} is not a CIDR (values key clusterNetworks)")]
    ClusterNetworks(String),
    #[error("Unsupported value {0:?} for proxyInit.iptablesMode; valid values: [\"nft\", \"legacy\"]")]
    IptablesMode(String),
    #[error("proxy.logHTTPHeaders must be \"off\" or \"insecure\", not {0:?}")]
    LogHttpHeaders(String),
    #[error(
        "proxy.tracing.enabled needs proxy.tracing.collector.endpoint and collector.meshIdentity (serviceAccountName, namespace)"
    )]
    IncompleteTracing,
    #[error("invalid control-plane namespace {0:?}: it must match ^[a-zA-Z0-9-]+$")]
    ControlPlaneNamespace(String),
}

/// This object cannot be transformed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InjectError {
    #[error("Please provide the identity trust anchors (values key identityTrustAnchorsPEM)")]
    MissingTrustAnchors,
    #[error("failed to inject {kind}/{name}: {reasons}")]
    NotInjectable { kind: String, name: String, reasons: String },
    #[error("--manual must be set when injecting control plane components")]
    ControlPlaneNeedsManual,
    #[error(transparent)]
    Shape(#[from] shape::ShapeError),
}

/// Who asks, and what it knows beyond the object.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// `inject` on the command line. `overrides` are the annotations the flags produce.
    Cli { manual: bool, overrides: &'a AnnotationSet },
    /// The admission webhook, with the namespace from the AdmissionRequest.
    Webhook { namespace: &'a str, namespace_annotations: Option<&'a Map<String, Value>>, owner: Option<Owner<'a>> },
}

/// The workload that owns a pod, resolved by the caller (§2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner<'a> {
    /// Lower-case kind, e.g. `deployment`.
    pub kind: &'a str,
    pub name: &'a str,
}

#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub object: &'a Value,
    /// The AdmissionRequest's kind, when it should win over the object's own `kind`.
    pub kind: Option<&'a str>,
    pub origin: Origin<'a>,
}

/// What the patch does to the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The proxy is added (or, without `--manual`, the inject annotation).
    Injected,
    /// Only annotations are added.
    Annotated,
    Unchanged,
}

/// Everything known about one object after evaluation.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// Lower-case kind as written in the object (`""` when it has none).
    pub kind: String,
    pub name: String,
    pub injectable: bool,
    pub reasons: Vec<SkipReason>,
    pub inject_annotation: InjectAnnotation,
    pub host_network: bool,
    pub sidecar: bool,
    pub udp: bool,
    pub automount_disabled: bool,
    pub unsupported: bool,
    pub annotatable: bool,
    pub action: Action,
    pub warnings: Vec<Warning>,
    pub config: Option<ProxyConfig>,
    /// The annotations written by the patch, with where each came from.
    pub written_annotations: Vec<(String, String, Source)>,
    /// For a pod the webhook injects: a digest of what injection adds ([`FINGERPRINT`]).
    pub fingerprint: Option<String>,
    pub patch: Patch,
}

/// The annotation the webhook writes on the pods it injects: a digest of everything injection
/// added (containers, volumes and annotations, but not the injector's own version), so the
/// reconciler can tell a pod injected with today's configuration from a stale one without
/// comparing containers the apiserver has since defaulted.
pub const FINGERPRINT: &str = "linkerd.io/injection-fingerprint";

/// The digest behind [`FINGERPRINT`]: the patch's additions to the pod spec, in order, and the
/// annotations it writes. Left out: the lists the patch creates empty, and the copy of the app's
/// service-account token mount, whose volume name the apiserver makes up per pod (so the digest is
/// the same for every pod of a template, and for the template itself).
fn fingerprint(patch: &Patch, written: &[(String, String, Source)], template: PodTemplate<'_>) -> String {
    let spec_prefix = format!("{}/spec/", template.pointer);
    let copied_mount = render::copied_service_account_mount(template).map(|m| format!(",{m}"));
    let mut digest = Sha256::new();
    for operation in patch.operations() {
        let Some(path) = operation.path.strip_prefix(&spec_prefix) else { continue };
        let text = operation.value.text();
        if text == "[]" || text == "{}" {
            continue;
        }
        let text = match &copied_mount {
            Some(mount) if text.contains(mount.as_str()) => Cow::Owned(text.replace(mount.as_str(), "")),
            _ => Cow::Borrowed(text),
        };
        digest.update(path.as_bytes());
        digest.update(b"\n");
        digest.update(text.as_bytes());
        digest.update(b"\n");
    }
    for (k, v, _) in written.iter().filter(|(k, _, _)| k != key::CREATED_BY) {
        for part in [k.as_bytes(), b"=", v.as_bytes(), b"\n"] {
            digest.update(part);
        }
    }
    hex(&digest.finalize()[..16])
}

/// The engine, built once from the values; cheap to share between threads.
#[derive(Debug, Clone)]
pub struct Injector {
    values: ValuesDocument,
    control_plane_env: render::ControlPlaneEnv,
    control_plane_ns: String,
    version: String,
    trust_root_sha256: String,
}

impl Injector {
    pub fn new(values: ValuesDocument, control_plane_ns: &str) -> Result<Self, ConfigError> {
        let v = &values.values;
        if control_plane_ns.is_empty() || !control_plane_ns.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(ConfigError::ControlPlaneNamespace(control_plane_ns.into()));
        }
        if let Some(bad) = v.cluster_networks.trim_matches(',').split(',').find(|n| !key::is_cidr(n)) {
            return Err(ConfigError::ClusterNetworks(bad.to_string()));
        }
        // An empty mode means the default (the reference fails to render instead, §10 row 13).
        if !["nft", "legacy", ""].contains(&v.proxy_init.iptables_mode.as_str()) {
            return Err(ConfigError::IptablesMode(v.proxy_init.iptables_mode.clone()));
        }
        if !["off", "insecure", ""].contains(&v.proxy.log_http_headers.as_str()) {
            return Err(ConfigError::LogHttpHeaders(v.proxy.log_http_headers.clone()));
        }
        if let Some(tracing) = Some(&v.proxy.tracing).filter(|t| t.enabled) {
            let identity = &tracing.collector.mesh_identity;
            if tracing.collector.endpoint.is_empty()
                || identity.service_account_name.is_empty()
                || identity.namespace.is_empty()
            {
                return Err(ConfigError::IncompleteTracing);
            }
        }
        let trust_root_sha256 = hex(&Sha256::digest(v.identity_trust_anchors_pem.as_bytes()));
        Ok(Injector {
            control_plane_env: render::ControlPlaneEnv::new(v, control_plane_ns),
            values,
            control_plane_ns: control_plane_ns.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            trust_root_sha256,
        })
    }

    /// The version written into `linkerd.io/created-by` (`dev-undefined` in golden tests).
    pub fn with_version(mut self, version: &str) -> Self {
        self.version = version.into();
        self
    }

    pub fn values(&self) -> &ValuesDocument {
        &self.values
    }

    pub fn control_plane_ns(&self) -> &str {
        &self.control_plane_ns
    }

    /// Decides and builds the patch for one object.
    pub fn evaluate(&self, request: &Request<'_>) -> Result<Outcome, InjectError> {
        shape::check(request.object, request.kind)?;
        let workload = Workload::new(request.object, request.kind);
        let mut outcome = Outcome {
            kind: workload.kind_name.to_ascii_lowercase(),
            name: workload.name().to_string(),
            injectable: false,
            reasons: Vec::new(),
            inject_annotation: InjectAnnotation::default(),
            host_network: false,
            sidecar: false,
            udp: false,
            automount_disabled: false,
            unsupported: workload.template.is_none(),
            annotatable: workload.template.is_some() || matches!(workload.kind, Some(Kind::Namespace | Kind::Service)),
            action: Action::Unchanged,
            warnings: Vec::new(),
            config: None,
            written_annotations: Vec::new(),
            fingerprint: None,
            patch: Patch::default(),
        };
        match workload.template {
            None => self.evaluate_without_template(&workload, request.origin, &mut outcome),
            Some(template) => self.evaluate_template(&workload, template, request.origin, &mut outcome)?,
        }
        Ok(outcome)
    }

    /// Namespaces, Services and unsupported kinds: annotations at most.
    fn evaluate_without_template(&self, workload: &Workload<'_>, origin: Origin<'_>, outcome: &mut Outcome) {
        outcome.reasons.push(SkipReason::UnsupportedResource);
        let mut written = AnnotationSet::default();
        match (origin, workload.kind) {
            (Origin::Cli { overrides, .. }, Some(Kind::Namespace)) => {
                let inject = if overrides.value(key::INJECT) == Some("ingress") { "ingress" } else { "enabled" };
                written.insert(key::INJECT, inject, Source::Flag);
                for (k, v, s) in overrides.iter() {
                    written.insert(k, v, s);
                }
            }
            (Origin::Cli { overrides, .. }, Some(Kind::Service)) => {
                if let Some((ports, source)) = overrides.get(key::OPAQUE_PORTS) {
                    written.insert(key::OPAQUE_PORTS, ports, source);
                }
            }
            (Origin::Webhook { namespace_annotations, .. }, Some(Kind::Service)) => {
                if let Some((ports, source)) = self.default_opaque_ports(workload, None, namespace_annotations) {
                    written.insert(key::OPAQUE_PORTS, ports, source);
                }
            }
            _ => {}
        }
        if written.iter().next().is_some() {
            outcome.action = Action::Annotated;
            write_annotations(&mut outcome.patch, "", workload.metadata(), &written);
            outcome.written_annotations = collect(&written);
        }
    }

    fn evaluate_template(
        &self,
        workload: &Workload<'_>,
        template: PodTemplate<'_>,
        origin: Origin<'_>,
        outcome: &mut Outcome,
    ) -> Result<(), InjectError> {
        let v = &self.values.values;
        let projection = v.identity.service_account_token_projection;
        outcome.host_network = template.host_network();
        outcome.sidecar = template.has_sidecar();
        outcome.udp = template.uses_udp();
        let mut automount = match template.automount_service_account_token() {
            Some(value) if !projection => value,
            _ => true,
        };
        if matches!(origin, Origin::Webhook { .. }) && !projection && template.service_account_mount().is_none() {
            automount = false;
        }
        outcome.automount_disabled = !automount;

        let pod_inject = template.annotation(key::INJECT).unwrap_or("");
        let valid_inject = |value: &str| value.is_empty() || decision::INJECT_VALUES.contains(&value);
        outcome.inject_annotation = match origin {
            Origin::Webhook { namespace_annotations, .. } => {
                let ns_inject =
                    namespace_annotations.and_then(|a| a.field(key::INJECT)).and_then(Value::as_str).unwrap_or("");
                if !valid_inject(ns_inject) {
                    outcome.warnings.push(Warning::ignored(
                        key::INJECT,
                        ns_inject,
                        format!(
                            "the namespace's value {ns_inject:?} is invalid (expected enabled, disabled or ingress), \
                             so nothing in it is injected"
                        ),
                    ));
                }
                decision::evaluate_webhook(ns_inject, pod_inject)
            }
            Origin::Cli { overrides, .. } => decision::evaluate_cli(overrides.value(key::INJECT).unwrap_or(pod_inject)),
        };
        if outcome.host_network {
            outcome.reasons.push(SkipReason::HostNetworkEnabled);
        }
        if outcome.sidecar {
            outcome.reasons.push(SkipReason::SidecarAlreadyExists);
        }
        outcome.reasons.extend(outcome.inject_annotation.skip);
        if outcome.automount_disabled {
            outcome.reasons.push(SkipReason::DisabledAutomountServiceAccountTokenAccount);
        }
        outcome.injectable = outcome.reasons.is_empty();
        if !valid_inject(pod_inject) {
            outcome.warnings.push(Warning::invalid(
                key::INJECT,
                pod_inject,
                "enabled, disabled or ingress",
                "no injection",
            ));
        }

        match origin {
            Origin::Cli { manual, overrides } => self.evaluate_cli(workload, template, manual, overrides, outcome),
            Origin::Webhook { namespace, namespace_annotations, owner } => {
                self.evaluate_webhook(workload, template, namespace, namespace_annotations, owner, outcome)
            }
        }
    }

    fn evaluate_cli(
        &self,
        workload: &Workload<'_>,
        template: PodTemplate<'_>,
        manual: bool,
        overrides: &AnnotationSet,
        outcome: &mut Outcome,
    ) -> Result<(), InjectError> {
        let is_control_plane = template.labels().is_some_and(|l| l.contains_key("linkerd.io/control-plane-component"));
        if is_control_plane && !manual {
            return Err(InjectError::ControlPlaneNeedsManual);
        }
        let mut config_annotations = AnnotationSet::default();
        config_annotations.extend_from(template.annotations(), Source::WorkloadAnnotation);
        for (k, v, s) in overrides.iter() {
            config_annotations.insert(k, v, s);
        }
        let env_layers = EnvLayers {
            namespace: None,
            workload_top_level: workload
                .annotations()
                .filter(|_| !template.pointer.is_empty())
                .and_then(|a| a.field(key::ADDITIONAL_ENV))
                .and_then(Value::as_str),
        };
        let (config, warnings) = ProxyConfig::resolve(&self.values, &config_annotations, env_layers);
        outcome.warnings.extend(warnings);

        if !outcome.injectable {
            let blocking: Vec<&str> = outcome.reasons.iter().filter(|r| r.is_cli_error()).map(|r| r.text()).collect();
            let disabled = outcome.reasons.contains(&SkipReason::InjectionDisableAnnotationPresent);
            outcome.config = Some(config);
            if !blocking.is_empty() && !disabled {
                return Err(InjectError::NotInjectable {
                    kind: outcome.kind.clone(),
                    name: outcome.name.clone(),
                    reasons: blocking.join(", "),
                });
            }
            return Ok(());
        }

        let ingress = outcome.inject_annotation.value == "ingress";
        let mut written = AnnotationSet::default();
        for (k, v, s) in overrides.iter() {
            written.insert(k, v, s);
        }
        let mut labels = Vec::new();
        if manual {
            written.remove(key::INJECT);
            if ingress {
                written.insert(key::INJECT, "ingress", Source::Flag);
            }
            written.insert(key::CREATED_BY, format!("linkerd/cli {}", self.version), Source::Default);
            labels = vec![("linkerd.io/control-plane-ns".to_string(), self.control_plane_ns.clone())];
            if let Some(owner_label) = workload.kind.and_then(Kind::owner_label) {
                labels.push((owner_label.into(), workload.name().into()));
            }
            labels.push(("linkerd.io/workload-ns".into(), workload.namespace().into()));
        } else {
            written.insert(key::INJECT, if ingress { "ingress" } else { "enabled" }, Source::Flag);
        }
        outcome.action = Action::Injected;
        if manual {
            self.build_full_patch(template, &config, &config_annotations, &mut written, &labels, ingress, outcome)?;
        } else {
            write_annotations(&mut outcome.patch, template.pointer, template.metadata(), &written);
        }
        outcome.written_annotations = collect(&written);
        outcome.config = Some(config);
        Ok(())
    }

    fn evaluate_webhook(
        &self,
        workload: &Workload<'_>,
        template: PodTemplate<'_>,
        namespace: &str,
        namespace_annotations: Option<&Map<String, Value>>,
        owner: Option<Owner<'_>>,
        outcome: &mut Outcome,
    ) -> Result<(), InjectError> {
        let mut config_annotations = AnnotationSet::default();
        config_annotations.extend_from(template.annotations(), Source::WorkloadAnnotation);
        let mut written = AnnotationSet::default();

        if !outcome.injectable {
            let (config, warnings) = ProxyConfig::resolve(&self.values, &config_annotations, EnvLayers::default());
            outcome.warnings.extend(warnings);
            outcome.config = Some(config);
            if let Some((ports, source)) = self.default_opaque_ports(workload, Some(template), namespace_annotations) {
                written.insert(key::OPAQUE_PORTS, ports, source);
                outcome.action = Action::Annotated;
                write_annotations(&mut outcome.patch, template.pointer, template.metadata(), &written);
                outcome.written_annotations = collect(&written);
            }
            return Ok(());
        }

        written.insert(key::CREATED_BY, format!("linkerd/proxy-injector {}", self.version), Source::Default);
        let ns_value = |k: &str| namespace_annotations.and_then(|a| a.get(k)).and_then(Value::as_str);
        for k in std::iter::once(key::INJECT).chain(key::INHERITED.iter().copied()) {
            if let Some(value) = ns_value(k).filter(|_| !config_annotations.contains(k)) {
                written.insert(k, value, Source::NamespaceAnnotation);
                config_annotations.insert(k, value, Source::NamespaceAnnotation);
            }
        }
        if !config_annotations.contains(key::OPAQUE_PORTS)
            && let Some((ports, source)) = self.default_opaque_ports(workload, Some(template), None)
        {
            written.insert(key::OPAQUE_PORTS, ports.clone(), source);
            config_annotations.insert(key::OPAQUE_PORTS, ports, source);
        }
        let env_layers = EnvLayers { namespace: ns_value(key::ADDITIONAL_ENV), workload_top_level: None };
        let (config, warnings) = ProxyConfig::resolve(&self.values, &config_annotations, env_layers);
        outcome.warnings.extend(warnings);

        let mut labels = vec![("linkerd.io/control-plane-ns".to_string(), self.control_plane_ns.clone())];
        let owner_label = owner.and_then(|o| Kind::parse(o.kind)).and_then(Kind::owner_label);
        if let (Some(label), Some(owner)) = (owner_label, owner) {
            labels.push((label.into(), owner.name.into()));
        }
        labels.push(("linkerd.io/workload-ns".into(), namespace.into()));
        labels.sort();
        let ingress = outcome.inject_annotation.value == "ingress";
        outcome.action = Action::Injected;
        self.build_full_patch(template, &config, &config_annotations, &mut written, &labels, ingress, outcome)?;
        outcome.written_annotations = collect(&written);
        let digest = fingerprint(&outcome.patch, &outcome.written_annotations, template);
        // The annotations map exists: the patch has just written the injector's own.
        outcome
            .patch
            .add(format!("{}/metadata/annotations/{}", template.pointer, escape_token(FINGERPRINT)), json!(digest));
        outcome.fingerprint = Some(digest);
        outcome.config = Some(config);
        Ok(())
    }

    /// The opaque-ports annotation for an object that has none (§3.6): the namespace's value,
    /// else the default list filtered to the ports the object exposes.
    fn default_opaque_ports(
        &self,
        workload: &Workload<'_>,
        template: Option<PodTemplate<'_>>,
        namespace_annotations: Option<&Map<String, Value>>,
    ) -> Option<(String, Source)> {
        let has_own = |a: Option<&Map<String, Value>>| a.is_some_and(|a| a.contains_key(key::OPAQUE_PORTS));
        if has_own(workload.annotations()) || has_own(template.and_then(|t| t.annotations())) {
            return None;
        }
        if let Some(ns_value) = namespace_annotations.and_then(|a| a.field(key::OPAQUE_PORTS)).and_then(Value::as_str) {
            return Some((ns_value.to_string(), Source::NamespaceAnnotation));
        }
        // The reference compares each port's decimal text with the list's items, so a range in
        // the list matches no port and a port declared twice is listed twice (§3.6).
        let defaults: Vec<&str> = self.values.values.proxy.opaque_ports.split(',').collect();
        let opaque = |port: u16| defaults.contains(&port.to_string().as_str());
        let ports: Vec<u16> = match template {
            Some(template) => template.container_port_numbers().filter(|p| opaque(*p)).collect(),
            None => service_opaque_ports(workload.object, opaque),
        };
        if ports.is_empty() {
            return None;
        }
        let source = if self.values.is_given("proxy.opaquePorts") { Source::Values } else { Source::Default };
        Some((ports.iter().map(u16::to_string).collect::<Vec<_>>().join(","), source))
    }

    /// The patch that adds the proxy (§6.3).
    #[allow(clippy::too_many_arguments)]
    fn build_full_patch(
        &self,
        template: PodTemplate<'_>,
        config: &ProxyConfig,
        config_annotations: &AnnotationSet,
        written: &mut AnnotationSet,
        labels: &[(String, String)],
        ingress: bool,
        outcome: &mut Outcome,
    ) -> Result<(), InjectError> {
        let v = &self.values.values;
        if v.identity_trust_anchors_pem.trim().is_empty() {
            return Err(InjectError::MissingTrustAnchors);
        }
        written.insert(key::PROXY_VERSION_STATUS, config.proxy_version.value.clone(), config.proxy_version.source);
        written.insert(key::TRUST_ROOT_SHA256, self.trust_root_sha256.clone(), Source::Values);

        let close_wait_timeout_secs = if config.close_wait_timeout_secs.value > 0 && !v.proxy_init.run_as_root {
            outcome.warnings.push(Warning::ignored(
                key::CLOSE_WAIT_TIMEOUT,
                config_annotations.value(key::CLOSE_WAIT_TIMEOUT).unwrap_or(""),
                "the close-wait timeout needs a root init container (values proxyInit.runAsRoot: true); injected without it",
            ));
            0
        } else {
            config.close_wait_timeout_secs.value
        };
        let (opaque_ports, unknown) = config::resolve_opaque_ports(&config.opaque_ports.value, Some(template));
        if !unknown.is_empty() {
            outcome.warnings.push(Warning::ignored(
                key::OPAQUE_PORTS,
                &config.opaque_ports.value,
                format!(
                    "ignored {}: not a port, a port range or the name of a container port of this pod",
                    unknown.join(", ")
                ),
            ));
        }
        let input = RenderInput {
            values: v,
            control_plane_env: &self.control_plane_env,
            config,
            template,
            control_plane_ns: &self.control_plane_ns,
            ingress,
            opaque_ports,
            annotations: config_annotations,
            close_wait_timeout_secs,
        };

        let p = template.pointer;
        let patch = &mut outcome.patch;
        let metadata = template.metadata();
        write_annotations(patch, p, metadata, written);
        if metadata.and_then(|m| m.field("labels")).is_none_or(|l| !l.is_object()) {
            patch.add(format!("{p}/metadata/labels"), json!({}));
        }
        for (k, value) in labels {
            patch.add(format!("{p}/metadata/labels/{}", escape_token(k)), json!(value));
        }
        let spec = template.spec();
        if spec.is_none() {
            patch.add(format!("{p}/spec"), json!({}));
        }
        let missing = |field: &str| spec.and_then(|s| s.get(field)).is_none_or(|f| !f.is_array());
        if missing("volumes") {
            patch.add(format!("{p}/spec/volumes"), json!([]));
        }
        if missing("initContainers") {
            patch.add(format!("{p}/spec/initContainers"), json!([]));
        }
        let native = config.native_sidecar.value;
        // Only a list the patch adds to is created: a pod left without containers stays so.
        if missing("containers") && (config.debug_sidecar.value || !native) {
            patch.add(format!("{p}/spec/containers"), json!([]));
        }
        let init_index = if native { "0" } else { "-" };
        if v.cni_enabled {
            patch.add(format!("{p}/spec/initContainers/{init_index}"), render::network_validator(&input));
        } else {
            patch.add(format!("{p}/spec/volumes/-"), render::xtables_volume(v));
            patch.add_serialized(format!("{p}/spec/initContainers/{init_index}"), render::init_container(&input));
        }
        if config.debug_sidecar.value {
            patch.add(format!("{p}/spec/containers/-"), render::debug_container(&input));
        }
        patch.add(format!("{p}/spec/volumes/-"), render::end_entity_volume());
        if v.proxy.tracing.enabled {
            patch.add(format!("{p}/spec/volumes/-"), render::podinfo_volume());
        }
        if v.identity.service_account_token_projection {
            patch.add(format!("{p}/spec/volumes/-"), render::token_volume());
        }
        let proxy_path = match (native, config.proxy_await.value) {
            (true, _) => "initContainers/1",
            (false, true) => "containers/0",
            (false, false) => "containers/-",
        };
        patch.add_serialized(format!("{p}/spec/{proxy_path}"), render::proxy_container(&input));
        Ok(())
    }
}

/// Adds the parents an annotation op needs, then one op per annotation in key order.
fn write_annotations(patch: &mut Patch, prefix: &str, metadata: Option<&Map<String, Value>>, written: &AnnotationSet) {
    if written.iter().next().is_none() {
        return;
    }
    if metadata.is_none() {
        patch.add(format!("{prefix}/metadata"), json!({}));
    }
    if metadata.and_then(|m| m.field("annotations")).is_none_or(|a| !a.is_object()) {
        patch.add(format!("{prefix}/metadata/annotations"), json!({}));
    }
    for (k, value, _) in written.iter() {
        patch.add(format!("{prefix}/metadata/annotations/{}", escape_token(k)), json!(value));
    }
}

fn collect(written: &AnnotationSet) -> Vec<(String, String, Source)> {
    written.iter().map(|(k, v, s)| (k.to_string(), v.to_string(), s)).collect()
}

/// A Service's ports that carry opaque traffic: by target port when it is a number, by port when
/// there is no target; named target ports cannot be resolved here and never count.
fn service_opaque_ports(service: &Value, opaque: impl Fn(u16) -> bool) -> Vec<u16> {
    let ports = service.pointer("/spec/ports").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    ports
        .iter()
        .filter_map(|entry| {
            let port = entry.field("port").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok())?;
            match entry.field("targetPort") {
                None | Some(Value::Null) => opaque(port).then_some(port),
                Some(Value::Number(n)) if n.as_u64() == Some(0) => opaque(port).then_some(port),
                Some(Value::Number(n)) => {
                    let target = n.as_u64().and_then(|t| u16::try_from(t).ok())?;
                    opaque(target).then_some(port)
                }
                Some(_) => None,
            }
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod values_tests;
