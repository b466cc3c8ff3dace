//! The effective proxy configuration of one workload: the values, overridden by annotations
//! (§4), each setting carrying where it came from. Every annotation is parsed here, once.

use std::collections::BTreeMap;
use std::fmt::Display;

use serde::Serialize;
use serde_json::Value;

use crate::annotation::{self as key, PortRange, Quantity, Warning};
use crate::values::ValuesDocument;
use crate::workload::PodTemplate;

/// Where a setting's value came from, lowest precedence first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Default,
    Values,
    NamespaceAnnotation,
    WorkloadAnnotation,
    Flag,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::Values => "values",
            Source::NamespaceAnnotation => "namespace annotation",
            Source::WorkloadAnnotation => "workload annotation",
            Source::Flag => "flag",
        }
    }
}

/// The annotations that configure a workload, each with its origin. Sorted by key, which is also
/// the order the patch writes them in.
#[derive(Debug, Clone, Default)]
pub struct AnnotationSet {
    entries: BTreeMap<String, (String, Source)>,
}

impl AnnotationSet {
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>, source: Source) {
        self.entries.insert(key.into(), (value.into(), source));
    }

    pub fn get(&self, key: &str) -> Option<(&str, Source)> {
        self.entries.get(key).map(|(v, s)| (v.as_str(), *s))
    }

    pub fn value(&self, key: &str) -> Option<&str> {
        self.get(key).map(|(v, _)| v)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    pub fn remove(&mut self, key: &str) {
        self.entries.remove(key);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, Source)> {
        self.entries.iter().map(|(k, (v, s))| (k.as_str(), v.as_str(), *s))
    }

    /// Adds every string annotation of an object's metadata.
    pub fn extend_from(&mut self, annotations: Option<&serde_json::Map<String, Value>>, source: Source) {
        for (k, v) in annotations.into_iter().flatten() {
            if let Some(v) = v.as_str() {
                self.insert(k.clone(), v, source);
            }
        }
    }
}

/// One resolved setting.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

/// The configuration the injected containers are rendered from.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfig {
    pub proxy_image: Setting<String>,
    pub proxy_version: Setting<String>,
    pub image_pull_policy: Setting<String>,
    pub debug_image: Setting<String>,
    pub debug_image_version: Setting<String>,
    pub debug_image_pull_policy: Setting<String>,
    pub debug_sidecar: Setting<bool>,
    pub control_port: Setting<u16>,
    pub admin_port: Setting<u16>,
    pub inbound_port: Setting<u16>,
    pub outbound_port: Setting<u16>,
    pub skip_inbound_ports: Setting<String>,
    pub skip_outbound_ports: Setting<String>,
    pub skip_subnets: Setting<String>,
    pub opaque_ports: Setting<String>,
    pub cpu_request: Setting<String>,
    pub cpu_limit: Setting<String>,
    pub cpu_ratio_limit: Setting<String>,
    pub memory_request: Setting<String>,
    pub memory_limit: Setting<String>,
    pub ephemeral_storage_request: Setting<String>,
    pub ephemeral_storage_limit: Setting<String>,
    pub uid: Setting<i64>,
    pub gid: Setting<i64>,
    pub log_level: Setting<String>,
    pub log_format: Setting<String>,
    pub log_http_headers: Setting<String>,
    pub admin_shutdown: Setting<bool>,
    pub external_profiles: Setting<bool>,
    pub require_identity_inbound_ports: Setting<String>,
    pub metrics_hostname_labels: Setting<bool>,
    pub outbound_connect_timeout: Setting<String>,
    pub inbound_connect_timeout: Setting<String>,
    pub outbound_discovery_idle_timeout: Setting<String>,
    pub inbound_discovery_idle_timeout: Setting<String>,
    pub disable_outbound_detect_timeout: Setting<bool>,
    pub disable_inbound_detect_timeout: Setting<bool>,
    pub shutdown_grace_period: Setting<String>,
    pub default_inbound_policy: Setting<String>,
    pub access_log: Setting<String>,
    pub proxy_await: Setting<bool>,
    pub gateway: Setting<bool>,
    pub close_wait_timeout_secs: Setting<u64>,
    pub native_sidecar: Setting<bool>,
    pub wait_before_exit_seconds: Setting<u64>,
    pub additional_env: Setting<Vec<Value>>,
    /// Worker threads: `LINKERD2_PROXY_CORES[_MIN]`, `_MAX`; derived from the CPU settings.
    pub workers_min: i64,
    pub workers_max: Option<i64>,
}

const POLICIES: &[&str] =
    &["all-unauthenticated", "all-authenticated", "cluster-unauthenticated", "cluster-authenticated", "deny", "audit"];

/// The layers of `proxy-additional-env` besides the values: the namespace's annotation and the
/// workload's own (for template workloads the top-level annotation, then the template's).
#[derive(Debug, Clone, Copy, Default)]
pub struct EnvLayers<'a> {
    pub namespace: Option<&'a str>,
    pub workload_top_level: Option<&'a str>,
}

impl ProxyConfig {
    /// Resolves every setting. `annotations` are the template's own plus pending ones (inherited,
    /// flags); bad values keep the lower layer's value and produce a warning.
    pub fn resolve(
        values: &ValuesDocument,
        annotations: &AnnotationSet,
        env_layers: EnvLayers<'_>,
    ) -> (ProxyConfig, Vec<Warning>) {
        let v = &values.values;
        let mut r = Resolver { values, annotations, warnings: Vec::new() };
        let text = |s: &str| Some(s.to_string());
        let version_default =
            if v.proxy.image.version.is_empty() { &v.linkerd_version } else { &v.proxy.image.version };
        let pull_default =
            if v.proxy.image.pull_policy.is_empty() { &v.image_pull_policy } else { &v.proxy.image.pull_policy };
        let debug_pull_default = if v.debug_container.image.pull_policy.is_empty() {
            &v.image_pull_policy
        } else {
            &v.debug_container.image.pull_policy
        };
        let debug_version_default = if v.debug_container.image.version.is_empty() {
            &v.linkerd_version
        } else {
            &v.debug_container.image.version
        };

        let proxy_image =
            r.setting(key::PROXY_IMAGE, "proxy.image.name", v.proxy.image.name.clone(), non_empty, "an image name");
        let proxy_version =
            r.setting(key::PROXY_VERSION, "proxy.image.version", version_default.clone(), non_empty, "an image tag");
        let image_pull_policy =
            r.setting(key::IMAGE_PULL_POLICY, "proxy.image.pullPolicy", pull_default.clone(), pull_policy, PULL_FORM);
        let debug_image = r.setting(
            key::DEBUG_IMAGE,
            "debugContainer.image.name",
            v.debug_container.image.name.clone(),
            non_empty,
            "an image name",
        );
        let debug_image_version = r.setting(
            key::DEBUG_IMAGE_VERSION,
            "debugContainer.image.version",
            debug_version_default.clone(),
            non_empty,
            "an image tag",
        );
        let debug_image_pull_policy = r.setting(
            key::DEBUG_IMAGE_PULL_POLICY,
            "debugContainer.image.pullPolicy",
            debug_pull_default.clone(),
            pull_policy,
            PULL_FORM,
        );
        let debug_sidecar = r.setting(key::ENABLE_DEBUG_SIDECAR, "", false, key::parse_bool, key::BOOL_FORM);

        let port = |p: i64| u16::try_from(p).unwrap_or(0);
        let control_port = r.setting(
            key::CONTROL_PORT,
            "proxy.ports.control",
            port(v.proxy.ports.control),
            key::parse_port,
            key::PORT_FORM,
        );
        let admin_port =
            r.setting(key::ADMIN_PORT, "proxy.ports.admin", port(v.proxy.ports.admin), key::parse_port, key::PORT_FORM);
        let inbound_port = r.setting(
            key::INBOUND_PORT,
            "proxy.ports.inbound",
            port(v.proxy.ports.inbound),
            key::parse_port,
            key::PORT_FORM,
        );
        let outbound_port = r.setting(
            key::OUTBOUND_PORT,
            "proxy.ports.outbound",
            port(v.proxy.ports.outbound),
            key::parse_port,
            key::PORT_FORM,
        );

        let port_list = |s: &str| key::parse_port_list(s).map(|_| s.to_string());
        let skip_inbound_ports = r.setting(
            key::SKIP_INBOUND_PORTS,
            "proxyInit.ignoreInboundPorts",
            v.proxy_init.ignore_inbound_ports.clone(),
            port_list,
            key::PORT_LIST_FORM,
        );
        let skip_outbound_ports = r.setting(
            key::SKIP_OUTBOUND_PORTS,
            "proxyInit.ignoreOutboundPorts",
            v.proxy_init.ignore_outbound_ports.clone(),
            port_list,
            key::PORT_LIST_FORM,
        );
        let cidrs = |s: &str| key::is_cidr_list(s).then(|| s.to_string());
        let skip_subnets = r.setting(
            key::SKIP_SUBNETS,
            "proxyInit.skipSubnets",
            v.proxy_init.skip_subnets.clone(),
            cidrs,
            key::CIDR_LIST_FORM,
        );
        let opaque_ports = r.setting(key::OPAQUE_PORTS, "proxy.opaquePorts", v.proxy.opaque_ports.clone(), text, "");

        let resources = &v.proxy.resources;
        let quantity = |s: &str| Quantity::parse(s).filter(|q| q.ceil_whole().is_some()).map(|_| s.to_string());
        let cpu_request = r.setting(
            key::PROXY_CPU_REQUEST,
            "proxy.resources.cpu.request",
            resources.cpu.request.clone(),
            quantity,
            key::QUANTITY_FORM,
        );
        let cpu_limit = r.setting(
            key::PROXY_CPU_LIMIT,
            "proxy.resources.cpu.limit",
            resources.cpu.limit.clone(),
            quantity,
            key::QUANTITY_FORM,
        );
        let ratio = |s: &str| s.parse::<f64>().ok().filter(|r| *r > 0.0 && *r < 1.0).map(go_float);
        let configured_ratio = v.proxy.runtime.workers.maximum_cpu_ratio;
        let ratio_default = if configured_ratio == 0.0 { String::new() } else { go_float(configured_ratio) };
        let cpu_ratio_limit = r.setting(
            key::PROXY_CPU_RATIO_LIMIT,
            "proxy.runtime.workers.maximumCPURatio",
            ratio_default,
            ratio,
            "a number strictly between 0 and 1, such as 0.2",
        );
        let memory_request = r.setting(
            key::PROXY_MEMORY_REQUEST,
            "proxy.resources.memory.request",
            resources.memory.request.clone(),
            quantity,
            key::QUANTITY_FORM,
        );
        let memory_limit = r.setting(
            key::PROXY_MEMORY_LIMIT,
            "proxy.resources.memory.limit",
            resources.memory.limit.clone(),
            quantity,
            key::QUANTITY_FORM,
        );
        let ephemeral_storage_request = r.setting(
            key::PROXY_EPHEMERAL_STORAGE_REQUEST,
            "proxy.resources.ephemeral-storage.request",
            resources.ephemeral_storage.request.clone(),
            quantity,
            key::QUANTITY_FORM,
        );
        let ephemeral_storage_limit = r.setting(
            key::PROXY_EPHEMERAL_STORAGE_LIMIT,
            "proxy.resources.ephemeral-storage.limit",
            resources.ephemeral_storage.limit.clone(),
            quantity,
            key::QUANTITY_FORM,
        );

        let int64 = |s: &str| s.parse::<i64>().ok();
        let uid = r.setting(key::PROXY_UID, "proxy.uid", v.proxy.uid, int64, "an integer user id");
        let gid = r.setting(key::PROXY_GID, "proxy.gid", v.proxy.gid, int64, "an integer group id (negative: unset)");
        let log_level = r.setting(
            key::PROXY_LOG_LEVEL,
            "proxy.logLevel",
            v.proxy.log_level.clone(),
            non_empty,
            "a log filter such as warn,linkerd=info",
        );
        let log_format = r.setting(
            key::PROXY_LOG_FORMAT,
            "proxy.logFormat",
            v.proxy.log_format.clone(),
            one_of(&["plain", "json"]),
            "plain or json",
        );
        let log_http_headers = r.setting(
            key::PROXY_LOG_HTTP_HEADERS,
            "proxy.logHTTPHeaders",
            v.proxy.log_http_headers.clone(),
            one_of(&["off", "insecure", ""]),
            "off or insecure",
        );
        let admin_shutdown = r.setting(
            key::PROXY_ADMIN_SHUTDOWN,
            "proxy.enableShutdownEndpoint",
            v.proxy.enable_shutdown_endpoint,
            enabled_disabled,
            "enabled or disabled",
        );
        let external_profiles = r.setting(
            key::ENABLE_EXTERNAL_PROFILES,
            "proxy.enableExternalProfiles",
            v.proxy.enable_external_profiles,
            key::parse_bool,
            key::BOOL_FORM,
        );
        let require_identity_inbound_ports = r.setting(
            key::REQUIRE_IDENTITY_INBOUND_PORTS,
            "proxy.requireIdentityOnInboundPorts",
            v.proxy.require_identity_on_inbound_ports.clone(),
            port_list,
            key::PORT_LIST_FORM,
        );
        let metrics_hostname_labels = r.setting(
            key::METRICS_HOSTNAME_LABELS,
            "proxy.metrics.hostnameLabels",
            v.proxy.metrics.hostname_labels,
            key::parse_bool,
            key::BOOL_FORM,
        );
        let millis = |s: &str| key::parse_go_duration(s).filter(|n| *n >= 0).map(|n| format!("{}ms", n / 1_000_000));
        let seconds =
            |s: &str| key::parse_go_duration(s).filter(|n| *n >= 0).map(|n| format!("{}s", n / 1_000_000_000));
        let outbound_connect_timeout = r.setting(
            key::OUTBOUND_CONNECT_TIMEOUT,
            "proxy.outboundConnectTimeout",
            v.proxy.outbound_connect_timeout.clone(),
            millis,
            key::DURATION_FORM,
        );
        let inbound_connect_timeout = r.setting(
            key::INBOUND_CONNECT_TIMEOUT,
            "proxy.inboundConnectTimeout",
            v.proxy.inbound_connect_timeout.clone(),
            millis,
            key::DURATION_FORM,
        );
        let outbound_discovery_idle_timeout = r.setting(
            key::OUTBOUND_DISCOVERY_IDLE_TIMEOUT,
            "proxy.outboundDiscoveryCacheUnusedTimeout",
            v.proxy.outbound_discovery_cache_unused_timeout.clone(),
            seconds,
            key::DURATION_FORM,
        );
        let inbound_discovery_idle_timeout = r.setting(
            key::INBOUND_DISCOVERY_IDLE_TIMEOUT,
            "proxy.inboundDiscoveryCacheUnusedTimeout",
            v.proxy.inbound_discovery_cache_unused_timeout.clone(),
            seconds,
            key::DURATION_FORM,
        );
        let disable_outbound_detect_timeout = r.setting(
            key::DISABLE_OUTBOUND_DETECT_TIMEOUT,
            "proxy.disableOutboundProtocolDetectTimeout",
            v.proxy.disable_outbound_protocol_detect_timeout,
            key::parse_bool,
            key::BOOL_FORM,
        );
        let disable_inbound_detect_timeout = r.setting(
            key::DISABLE_INBOUND_DETECT_TIMEOUT,
            "proxy.disableInboundProtocolDetectTimeout",
            v.proxy.disable_inbound_protocol_detect_timeout,
            key::parse_bool,
            key::BOOL_FORM,
        );
        let shutdown_grace_period = r.setting(
            key::SHUTDOWN_GRACE_PERIOD,
            "proxy.shutdownGracePeriod",
            v.proxy.shutdown_grace_period.clone(),
            millis,
            key::DURATION_FORM,
        );
        let default_inbound_policy = r.setting(
            key::DEFAULT_INBOUND_POLICY,
            "proxy.defaultInboundPolicy",
            v.proxy.default_inbound_policy.clone(),
            one_of(POLICIES),
            "one of all-unauthenticated, all-authenticated, cluster-unauthenticated, cluster-authenticated, deny, audit",
        );
        let access_log = r.setting(
            key::ACCESS_LOG,
            "proxy.accessLog",
            v.proxy.access_log.clone(),
            one_of(&["apache", "json"]),
            "apache or json",
        );
        let proxy_await =
            r.setting(key::PROXY_AWAIT, "proxy.await", v.proxy.r#await, enabled_disabled, "enabled or disabled");
        let gateway = r.setting(key::ENABLE_GATEWAY, "", false, key::parse_bool, key::BOOL_FORM);
        let close_wait_timeout_secs = r.setting(
            key::CLOSE_WAIT_TIMEOUT,
            "proxyInit.closeWaitTimeoutSecs",
            v.proxy_init.close_wait_timeout_secs,
            |s| key::parse_go_duration(s).filter(|n| *n >= 0).map(|n| (n / 1_000_000_000) as u64),
            key::DURATION_FORM,
        );
        // The GA key wins even when its value is unparsable; beta and alpha are consulted only
        // when every newer key is absent.
        let native_key = [key::NATIVE_SIDECAR, key::NATIVE_SIDECAR_BETA, key::NATIVE_SIDECAR_ALPHA]
            .into_iter()
            .find(|k| annotations.contains(k))
            .unwrap_or(key::NATIVE_SIDECAR);
        let native_sidecar =
            r.setting(native_key, "proxy.nativeSidecar", v.proxy.native_sidecar, key::parse_bool, key::BOOL_FORM);
        let wait_before_exit_seconds = r.setting(
            key::WAIT_BEFORE_EXIT_SECONDS,
            "proxy.waitBeforeExitSeconds",
            v.proxy.wait_before_exit_seconds,
            |s| s.parse::<u64>().ok(),
            "a whole number of seconds",
        );
        let additional_env = r.additional_env(env_layers);

        // An annotated CPU request or limit also sets the worker threads, rounded up to whole
        // cores; the values' own worker settings are used otherwise. A CLI flag changes only the
        // resources: the reference applies flags to the values, not as annotation overrides.
        let whole_cores = |s: &Setting<String>| {
            matches!(s.source, Source::NamespaceAnnotation | Source::WorkloadAnnotation)
                .then(|| Quantity::parse(&s.value).and_then(|q| q.ceil_whole()))
                .flatten()
        };
        let workers = &v.proxy.runtime.workers;
        let workers_min = whole_cores(&cpu_request).unwrap_or(workers.minimum).max(1);
        let workers_max = whole_cores(&cpu_limit).or(Some(workers.maximum)).filter(|n| *n != 0);

        if annotations.contains(key::POD_INBOUND_PORTS) {
            let value = annotations.value(key::POD_INBOUND_PORTS).unwrap_or_default();
            r.warnings.push(Warning::ignored(
                key::POD_INBOUND_PORTS,
                value,
                "this annotation has no effect: the inbound ports are always computed from the pod's container ports and probes",
            ));
        }

        let config = ProxyConfig {
            proxy_image,
            proxy_version,
            image_pull_policy,
            debug_image,
            debug_image_version,
            debug_image_pull_policy,
            debug_sidecar,
            control_port,
            admin_port,
            inbound_port,
            outbound_port,
            skip_inbound_ports,
            skip_outbound_ports,
            skip_subnets,
            opaque_ports,
            cpu_request,
            cpu_limit,
            cpu_ratio_limit,
            memory_request,
            memory_limit,
            ephemeral_storage_request,
            ephemeral_storage_limit,
            uid,
            gid,
            log_level,
            log_format,
            log_http_headers,
            admin_shutdown,
            external_profiles,
            require_identity_inbound_ports,
            metrics_hostname_labels,
            outbound_connect_timeout,
            inbound_connect_timeout,
            outbound_discovery_idle_timeout,
            inbound_discovery_idle_timeout,
            disable_outbound_detect_timeout,
            disable_inbound_detect_timeout,
            shutdown_grace_period,
            default_inbound_policy,
            access_log,
            proxy_await,
            gateway,
            close_wait_timeout_secs,
            native_sidecar,
            wait_before_exit_seconds,
            additional_env,
            workers_min,
            workers_max,
        };
        (config, r.warnings)
    }

    /// Every setting as `(name, rendered value, source)`, for `explain`.
    pub fn entries(&self) -> Vec<(String, String, Source)> {
        let Ok(Value::Object(fields)) = serde_json::to_value(self) else { return Vec::new() };
        fields
            .into_iter()
            .filter_map(|(name, field)| {
                let source: Source = serde_json::from_value(field.get("source")?.clone()).ok()?;
                let value = match field.get("value")? {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                Some((name, value, source))
            })
            .collect()
    }
}

/// A number as Go's `%v` prints a float64 (what the chart's `quote` renders): the shortest form
/// that reads back the same, with an exponent below 1e-4 or from 1e21.
fn go_float(number: f64) -> String {
    let magnitude = number.abs();
    if magnitude != 0.0 && !(1e-4..1e21).contains(&magnitude) {
        let text = format!("{number:e}");
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        let (sign, digits) = exponent.strip_prefix('-').map_or(("+", exponent), |d| ("-", d));
        format!("{mantissa}e{sign}{digits:0>2}")
    } else {
        number.to_string()
    }
}

const PULL_FORM: &str = "Always, IfNotPresent or Never";

fn non_empty(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.to_string())
}

fn pull_policy(s: &str) -> Option<String> {
    one_of(&["Always", "IfNotPresent", "Never"])(s)
}

fn one_of(accepted: &'static [&'static str]) -> impl Fn(&str) -> Option<String> {
    move |s| accepted.contains(&s).then(|| s.to_string())
}

fn enabled_disabled(s: &str) -> Option<bool> {
    match s {
        "enabled" => Some(true),
        "disabled" => Some(false),
        _ => None,
    }
}

struct Resolver<'a> {
    values: &'a ValuesDocument,
    annotations: &'a AnnotationSet,
    warnings: Vec<Warning>,
}

impl Resolver<'_> {
    /// The annotation's parsed value if it is present and valid, else the values' (or chart
    /// default) value; an invalid annotation adds a warning naming the accepted form.
    fn setting<T: Display + Clone>(
        &mut self,
        annotation: &str,
        values_path: &str,
        from_values: T,
        parse: impl Fn(&str) -> Option<T>,
        accepted_form: &str,
    ) -> Setting<T> {
        let base_source =
            if !values_path.is_empty() && self.values.is_given(values_path) { Source::Values } else { Source::Default };
        let base = Setting { value: from_values, source: base_source };
        let Some((raw, source)) = self.annotations.get(annotation) else { return base };
        match parse(raw) {
            Some(value) => Setting { value, source },
            None => {
                let kept = if base.value.to_string().is_empty() {
                    "no value".to_string()
                } else {
                    format!("{:?}", base.value.to_string())
                };
                self.warnings.push(Warning::invalid(annotation, raw, accepted_form, kept));
                base
            }
        }
    }

    /// Merges env vars by name: values < namespace < workload (top level, then template).
    fn additional_env(&mut self, layers: EnvLayers<'_>) -> Setting<Vec<Value>> {
        let mut merged = Setting {
            value: self.values.values.proxy.additional_env.clone(),
            source: if self.values.is_given("proxy.additionalEnv") { Source::Values } else { Source::Default },
        };
        let template_layer = self.annotations.get(key::ADDITIONAL_ENV);
        let ordered = [
            layers.namespace.map(|v| (v, Source::NamespaceAnnotation)),
            layers.workload_top_level.map(|v| (v, Source::WorkloadAnnotation)),
            template_layer,
        ];
        for (raw, source) in ordered.into_iter().flatten() {
            let Ok(Value::Array(entries)) = serde_json::from_str::<Value>(raw) else {
                self.warnings.push(Warning::invalid(
                    key::ADDITIONAL_ENV,
                    raw,
                    r#"a JSON list of env vars such as [{"name":"A","value":"1"}]"#,
                    "the other layers",
                ));
                continue;
            };
            for entry in entries {
                let Some(name) = entry.get("name").and_then(Value::as_str).map(str::to_string) else {
                    self.warnings.push(Warning::ignored(
                        key::ADDITIONAL_ENV,
                        raw,
                        "an entry without a \"name\" was ignored",
                    ));
                    continue;
                };
                match merged.value.iter_mut().find(|e| e.get("name").and_then(Value::as_str) == Some(&name)) {
                    Some(existing) => *existing = entry,
                    None => merged.value.push(entry),
                }
            }
            merged.source = source;
        }
        merged
    }
}

/// Resolves opaque ports (numbers, ranges and container port names) to the normalized list the
/// proxy reads; items that are neither are reported. (§4, `config.linkerd.io/opaque-ports`)
pub fn resolve_opaque_ports(raw: &str, template: Option<PodTemplate<'_>>) -> (String, Vec<String>) {
    let mut resolved = Vec::new();
    let mut unknown = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        if let Some(range) = PortRange::parse(item) {
            resolved.push(range.to_string());
        } else if let Some(port) = template.and_then(|t| t.named_port(item)) {
            resolved.push(port.to_string());
        } else {
            unknown.push(item.to_string());
        }
    }
    (resolved.join(","), unknown)
}
