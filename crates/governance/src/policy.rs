//! The `proxyInjector.policy` rules: which images the proxy may run, how large its resources may
//! be made by annotation, which overrides a namespace may not set, and where the mesh is required.
//! Each rule is off, audited (admitted with a warning) or enforced (denied).

use std::collections::BTreeMap;
use std::fmt;

use inject::Outcome;
use inject::annotation::{self as key, Quantity};
use inject::config::{Setting, Source};
use inject::render::Images;
use inject::values::Values;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::selector::LabelSelector;

/// Where the rules live in the values, for messages.
pub const VALUES_PATH: &str = "proxyInjector.policy";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Off,
    Audit,
    Enforce,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Audit => "audit",
            Mode::Enforce => "enforce",
        }
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Mode, D::Error> {
        // YAML 1.1 readers turn an unquoted `off` into `false`; it still means off.
        match Value::deserialize(deserializer)? {
            Value::String(s) if s == "off" => Ok(Mode::Off),
            Value::Bool(false) => Ok(Mode::Off),
            Value::String(s) if s == "audit" => Ok(Mode::Audit),
            Value::String(s) if s == "enforce" => Ok(Mode::Enforce),
            other => Err(serde::de::Error::custom(format!("expected off, audit or enforce, found {other}"))),
        }
    }
}

/// The rules by name, as they appear under [`VALUES_PATH`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Images,
    Resources,
    ForbiddenOverrides,
    MeshRequired,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Images => "images",
            Rule::Resources => "resources",
            Rule::ForbiddenOverrides => "forbiddenOverrides",
            Rule::MeshRequired => "meshRequired",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    pub images: ImagesRule,
    pub resources: ResourcesRule,
    pub forbidden_overrides: ForbiddenOverridesRule,
    pub mesh_required: MeshRequiredRule,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImagesRule {
    pub mode: Mode,
    pub allowed_repositories: Vec<String>,
    pub require_digest: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourcesRule {
    pub mode: Mode,
    pub max: ResourceBounds,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceBounds {
    pub cpu_request: String,
    pub cpu_limit: String,
    pub memory_request: String,
    pub memory_limit: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ForbiddenOverridesRule {
    pub mode: Mode,
    pub annotations: Vec<String>,
    #[serde(default)]
    pub except_namespaces: Option<LabelSelector>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshRequiredRule {
    pub mode: Mode,
    #[serde(default)]
    pub namespace_selector: Option<LabelSelector>,
}

/// The policy block cannot be used; the configuration is refused as a whole.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid values: at `{path}`: {message}")]
pub struct PolicyError {
    pub path: String,
    pub message: String,
}

/// What the rules see of one workload.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub outcome: &'a Outcome,
    pub values: &'a Values,
    /// The pod template's own annotations.
    pub annotations: Option<&'a Map<String, Value>>,
    /// The namespace, when known (the webhook always knows it; the CLI only when told).
    pub namespace: Option<Namespace<'a>>,
}

#[derive(Debug, Clone, Copy)]
pub struct Namespace<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// One rule a workload breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: Rule,
    /// Audit or Enforce, never Off.
    pub mode: Mode,
    pub problem: String,
    pub remedy: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "policy rule {VALUES_PATH}.{} ({}): {}; to comply, {}",
            self.rule.as_str(),
            self.mode.as_str(),
            self.problem,
            self.remedy
        )
    }
}

impl Policy {
    /// Reads the rules from the values (the chart defaults merged with the user's documents).
    pub fn from_values(values: &Values) -> Result<Policy, PolicyError> {
        let policy: Policy = serde_path_to_error::deserialize(&values.proxy_injector.policy)
            .map_err(|e| PolicyError { path: format!("{VALUES_PATH}.{}", e.path()), message: e.inner().to_string() })?;
        policy.validate()?;
        Ok(policy)
    }

    fn validate(&self) -> Result<(), PolicyError> {
        let error = |path: &str, message: String| PolicyError { path: format!("{VALUES_PATH}.{path}"), message };
        let on = |mode: Mode| mode != Mode::Off;
        if on(self.images.mode) && self.images.allowed_repositories.is_empty() && !self.images.require_digest {
            return Err(error(
                "images",
                "the rule is on but sets neither allowedRepositories nor requireDigest".into(),
            ));
        }
        if let Some(empty) = self.images.allowed_repositories.iter().position(|r| r.trim().is_empty()) {
            return Err(error(
                &format!("images.allowedRepositories[{empty}]"),
                "an empty prefix allows every image".into(),
            ));
        }
        let bounds = self.resources.max.named();
        for (name, bound) in &bounds {
            if !bound.is_empty() && Quantity::parse(bound).is_none() {
                return Err(error(
                    &format!("resources.max.{name}"),
                    format!("{bound:?} is not {}", key::QUANTITY_FORM),
                ));
            }
        }
        if on(self.resources.mode) && bounds.iter().all(|(_, b)| b.is_empty()) {
            return Err(error("resources.max", "the rule is on but sets no bound".into()));
        }
        if on(self.forbidden_overrides.mode) && self.forbidden_overrides.annotations.is_empty() {
            return Err(error("forbiddenOverrides.annotations", "the rule is on but forbids no annotation".into()));
        }
        if let Some(problem) = self.forbidden_overrides.except_namespaces.as_ref().and_then(LabelSelector::problem) {
            return Err(error("forbiddenOverrides.exceptNamespaces", problem));
        }
        match &self.mesh_required.namespace_selector {
            None if on(self.mesh_required.mode) => {
                Err(error("meshRequired.namespaceSelector", "the rule is on but selects no namespace".into()))
            }
            Some(selector) => selector.problem().map_or(Ok(()), |p| Err(error("meshRequired.namespaceSelector", p))),
            None => Ok(()),
        }
    }

    /// Whether a rule selects namespaces by label, so the caller must look the labels up.
    pub fn reads_namespace_labels(&self) -> bool {
        (self.mesh_required.mode != Mode::Off && self.mesh_required.namespace_selector.is_some())
            || (self.forbidden_overrides.mode != Mode::Off && self.forbidden_overrides.except_namespaces.is_some())
    }

    /// Whether a pod annotated `linkerd.io/inject: disabled` must still reach the webhook.
    pub fn needs_opted_out_pods(&self) -> bool {
        self.mesh_required.mode != Mode::Off
    }

    /// Every rule the workload breaks, in the order of the rules.
    pub fn review(&self, subject: &Subject<'_>) -> Vec<Violation> {
        let mut found = Vec::new();
        self.review_mesh_required(subject, &mut found);
        if let Some(config) = subject.outcome.config.as_ref().filter(|_| subject.outcome.injectable) {
            if self.images.mode != Mode::Off {
                self.review_images(&Images::of(subject.values, config), &mut found);
            }
            self.review_resources(config, &mut found);
            self.review_overrides(subject, &mut found);
        }
        found
    }

    fn review_mesh_required(&self, subject: &Subject<'_>, found: &mut Vec<Violation>) {
        let rule = &self.mesh_required;
        let (Some(selector), Some(namespace)) = (&rule.namespace_selector, subject.namespace) else { return };
        let opted_out =
            subject.annotations.and_then(|a| a.get(key::INJECT)).and_then(Value::as_str) == Some("disabled");
        if rule.mode != Mode::Off && opted_out && selector.matches(namespace.labels) {
            found.push(Violation {
                rule: Rule::MeshRequired,
                mode: rule.mode,
                problem: format!(
                    "namespace {:?} requires the mesh, and the pod sets {}: disabled",
                    namespace.name,
                    key::INJECT
                ),
                remedy: format!("remove the {} annotation (or set it to enabled)", key::INJECT),
            });
        }
    }

    fn review_images(&self, images: &Images, found: &mut Vec<Violation>) {
        let rule = &self.images;
        // linkerd-init runs the proxy image unless our own init image is configured: name it once.
        let init = Some(&images.init).filter(|init| **init != images.proxy);
        let named =
            [("linkerd-proxy", Some(&images.proxy)), ("linkerd-init", init), ("linkerd-debug", images.debug.as_ref())];
        for (container, image) in named.into_iter().filter_map(|(c, i)| Some((c, i?))) {
            if !rule.allowed_repositories.is_empty() && !rule.allowed_repositories.iter().any(|r| within(image, r)) {
                found.push(Violation {
                    rule: Rule::Images,
                    mode: rule.mode,
                    problem: format!(
                        "the {container} image {image:?} is not from an allowed repository ({})",
                        rule.allowed_repositories.join(", ")
                    ),
                    remedy: format!(
                        "use an image from one of them, or remove the annotation that changes it ({}, {}, {})",
                        key::PROXY_IMAGE,
                        key::PROXY_VERSION,
                        key::DEBUG_IMAGE
                    ),
                });
            }
            if rule.require_digest && !pinned(image) {
                found.push(Violation {
                    rule: Rule::Images,
                    mode: rule.mode,
                    problem: format!("the {container} image {image:?} is not pinned by digest"),
                    remedy: "pin it, for example with a version of the form <tag>@sha256:<64 hex digits>".into(),
                });
            }
        }
    }

    fn review_resources(&self, config: &inject::config::ProxyConfig, found: &mut Vec<Violation>) {
        let rule = &self.resources;
        if rule.mode == Mode::Off {
            return;
        }
        let settings: [(&str, &Setting<String>); 4] = [
            (key::PROXY_CPU_REQUEST, &config.cpu_request),
            (key::PROXY_CPU_LIMIT, &config.cpu_limit),
            (key::PROXY_MEMORY_REQUEST, &config.memory_request),
            (key::PROXY_MEMORY_LIMIT, &config.memory_limit),
        ];
        for ((annotation, setting), (_, bound)) in settings.into_iter().zip(rule.max.named()) {
            let by_annotation = matches!(setting.source, Source::WorkloadAnnotation | Source::NamespaceAnnotation);
            let (Some(value), Some(max)) = (Quantity::parse(&setting.value), Quantity::parse(bound)) else { continue };
            if by_annotation && value.approximate() > max.approximate() {
                found.push(Violation {
                    rule: Rule::Resources,
                    mode: rule.mode,
                    problem: format!("{annotation}: {:?} is above the allowed maximum {bound}", setting.value),
                    remedy: format!("set {annotation} to at most {bound}, or remove it"),
                });
            }
        }
    }

    fn review_overrides(&self, subject: &Subject<'_>, found: &mut Vec<Violation>) {
        let rule = &self.forbidden_overrides;
        let Some(annotations) = subject.annotations.filter(|_| rule.mode != Mode::Off) else { return };
        let excepted = match (&rule.except_namespaces, subject.namespace) {
            (Some(selector), Some(namespace)) => selector.matches(namespace.labels),
            _ => false,
        };
        if excepted {
            return;
        }
        for forbidden in rule.annotations.iter().filter(|k| annotations.contains_key(k.as_str())) {
            let place = subject.namespace.map_or("this namespace".to_string(), |n| format!("namespace {:?}", n.name));
            found.push(Violation {
                rule: Rule::ForbiddenOverrides,
                mode: rule.mode,
                problem: format!("the annotation {forbidden} may not be set in {place}"),
                remedy: format!(
                    "remove it, or have the platform team add the namespace to {VALUES_PATH}.forbiddenOverrides.exceptNamespaces"
                ),
            });
        }
    }
}

impl ResourceBounds {
    fn named(&self) -> [(&'static str, &str); 4] {
        [
            ("cpuRequest", &self.cpu_request),
            ("cpuLimit", &self.cpu_limit),
            ("memoryRequest", &self.memory_request),
            ("memoryLimit", &self.memory_limit),
        ]
    }
}

/// `image` is `prefix` itself or lies under it: a registry or repository boundary follows.
fn within(image: &str, prefix: &str) -> bool {
    let Some(rest) = image.strip_prefix(prefix) else { return false };
    prefix.ends_with('/') || rest.is_empty() || rest.starts_with(['/', ':', '@'])
}

fn pinned(image: &str) -> bool {
    image.rsplit_once("@sha256:").is_some_and(|(_, digest)| {
        digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}
