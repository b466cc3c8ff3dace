//! The injector's configuration, in the schema of Linkerd's Helm values (the `values` key of the
//! `linkerd-config` ConfigMap). Any subset may be given; missing keys take the chart defaults.

use serde::Deserialize;
use serde_json::{Map, Value};

/// The chart's defaults for every key injection reads: the one place defaults come from.
pub const CHART_VALUES_YAML: &str = include_str!("../chart/values.yaml");

// Every struct below derives `Default`, which gives Go's zero values, never chart defaults: a key
// is missing from the merged document only when the user set it to `null`, and `null` means the
// zero value, as it does when the reference decodes its stored values into Go structs.

/// The fields of the Helm values that injection reads. Unknown keys are ignored, as the chart does.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Values {
    pub linkerd_version: String,
    pub cluster_domain: String,
    pub cluster_networks: String,
    pub identity_trust_domain: String,
    #[serde(rename = "identityTrustAnchorsPEM")]
    pub identity_trust_anchors_pem: String,
    pub image_pull_policy: String,
    #[serde(rename = "disableIPv6")]
    pub disable_ipv6: bool,
    pub cni_enabled: bool,
    pub webhook_failure_policy: String,
    pub identity: IdentityValues,
    pub proxy: ProxyValues,
    pub proxy_init: ProxyInitValues,
    pub network_validator: NetworkValidatorValues,
    pub debug_container: DebugContainerValues,
    pub proxy_injector: ProxyInjectorValues,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IdentityValues {
    pub service_account_token_projection: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ImageValues {
    pub name: String,
    pub version: String,
    pub pull_policy: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PortValues {
    pub admin: i64,
    pub control: i64,
    pub inbound: i64,
    pub outbound: i64,
}

/// A request/limit pair of one resource, as Helm values write it (`cpu: {request, limit}`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RequestLimit {
    #[serde(deserialize_with = "scalar_string")]
    pub request: String,
    #[serde(deserialize_with = "scalar_string")]
    pub limit: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ResourceValues {
    pub cpu: RequestLimit,
    pub memory: RequestLimit,
    #[serde(rename = "ephemeral-storage")]
    pub ephemeral_storage: RequestLimit,
}

/// The probe settings of the proxy; which of them a probe renders depends on the probe (§5.2).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProbeValues {
    pub initial_delay_seconds: i64,
    pub timeout_seconds: i64,
    pub period_seconds: i64,
    pub failure_threshold: i64,
}

/// Worker threads; zero means "not set", as in the chart's templates.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WorkerValues {
    pub minimum: i64,
    pub maximum: i64,
    #[serde(rename = "maximumCPURatio")]
    pub maximum_cpu_ratio: f64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RuntimeValues {
    pub workers: WorkerValues,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StreamValues {
    pub initial_timeout: String,
    pub idle_timeout: String,
    pub lifetime: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ControlValues {
    pub streams: StreamValues,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MetricsValues {
    pub hostname_labels: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MeshIdentityValues {
    pub service_account_name: String,
    pub namespace: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CollectorValues {
    pub endpoint: String,
    pub mesh_identity: MeshIdentityValues,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TracingValues {
    pub enabled: bool,
    pub trace_service_name: String,
    pub protocol: String,
    pub collector: CollectorValues,
    pub labels: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProxyValues {
    pub image: ImageValues,
    pub log_level: String,
    pub log_format: String,
    #[serde(rename = "logHTTPHeaders")]
    pub log_http_headers: String,
    pub ports: PortValues,
    pub uid: i64,
    pub gid: i64,
    pub r#await: bool,
    pub native_sidecar: bool,
    pub wait_before_exit_seconds: u64,
    #[serde(deserialize_with = "scalar_string")]
    pub opaque_ports: String,
    pub default_inbound_policy: String,
    pub outbound_connect_timeout: String,
    pub inbound_connect_timeout: String,
    pub outbound_discovery_cache_unused_timeout: String,
    pub inbound_discovery_cache_unused_timeout: String,
    pub disable_outbound_protocol_detect_timeout: bool,
    pub disable_inbound_protocol_detect_timeout: bool,
    pub enable_external_profiles: bool,
    #[serde(deserialize_with = "scalar_string")]
    pub require_identity_on_inbound_ports: String,
    pub shutdown_grace_period: String,
    pub access_log: String,
    pub enable_shutdown_endpoint: bool,
    /// Deprecated; zero means unset.
    pub cores: i64,
    pub runtime: RuntimeValues,
    pub resources: ResourceValues,
    pub liveness_probe: ProbeValues,
    pub readiness_probe: ProbeValues,
    pub startup_probe: ProbeValues,
    pub control: ControlValues,
    pub metrics: MetricsValues,
    pub tracing: TracingValues,
    /// `inbound.<scope>.<proto>.<param>` and the same for outbound, rendered as per-parameter env.
    pub inbound: Map<String, Value>,
    pub outbound: Map<String, Value>,
    pub additional_env: Vec<Value>,
    pub experimental_env: Vec<Value>,
    pub security_context: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct XtMountPath {
    pub mount_path: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProxyInitValues {
    pub iptables_mode: String,
    #[serde(deserialize_with = "scalar_string")]
    pub ignore_inbound_ports: String,
    #[serde(deserialize_with = "scalar_string")]
    pub ignore_outbound_ports: String,
    pub skip_subnets: String,
    pub log_level: String,
    pub log_format: String,
    pub run_as_root: bool,
    pub privileged: bool,
    pub run_as_user: i64,
    pub run_as_group: i64,
    pub close_wait_timeout_secs: u64,
    pub xt_mount_path: XtMountPath,
    /// Our extension: an image holding `proxy-injector`. When its name is set, `linkerd-init`
    /// runs `proxy-injector proxy-init` from it instead of the proxy image's linkerd2-proxy-init,
    /// with the same arguments.
    pub image: ImageValues,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NetworkValidatorValues {
    pub log_level: String,
    pub log_format: String,
    pub connect_addr: String,
    pub listen_addr: String,
    pub timeout: String,
    pub security_context: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DebugContainerValues {
    pub image: ImageValues,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProxyInjectorValues {
    pub timeout_seconds: i64,
    /// Our governance extension, read by the `governance` crate (which owns its schema).
    pub policy: Value,
}

/// Helm values often write port lists and quantities as bare numbers (`opaquePorts: 3306`,
/// `request: 1`); the chart stringifies them, so do we.
fn scalar_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(serde::de::Error::custom(format!("expected a string or a number, found {other}"))),
    }
}

/// Values with the user's document alongside, so the effective configuration can tell a chart
/// default from a value the user set.
#[derive(Debug, Clone)]
pub struct ValuesDocument {
    pub values: Values,
    given: Value,
}

/// A values document that does not fit the Helm schema.
#[derive(Debug, thiserror::Error)]
#[error("invalid values: {0}")]
pub struct ValuesError(String);

impl Default for ValuesDocument {
    /// The chart's defaults alone.
    fn default() -> Self {
        Self::from_value(Value::Null).expect("the embedded chart values fit the schema (tested)")
    }
}

impl ValuesDocument {
    /// Reads the user's values document (already parsed from YAML or JSON) over the chart
    /// defaults. A `null` document means "all defaults"; a `null` key means its zero value.
    pub fn from_value(given: Value) -> Result<Self, ValuesError> {
        let given = if given.is_null() { Value::Object(Map::new()) } else { given };
        if !given.is_object() {
            return Err(ValuesError(format!("expected a mapping at the top level, found {}", kind_of(&given))));
        }
        let mut merged = chart_values();
        merge_value(&mut merged, given.clone());
        drop_null_keys(&mut merged);
        let values = serde_path_to_error::deserialize(&merged)
            .map_err(|e| ValuesError(format!("at `{}`: {}", e.path(), e.inner())))?;
        Ok(ValuesDocument { values, given })
    }

    /// Deep-merges `later` over the documents given so far (later files win), as Helm does with
    /// repeated `-f` flags.
    pub fn merge(self, later: Value) -> Result<Self, ValuesError> {
        let mut given = self.given;
        merge_value(&mut given, later);
        Self::from_value(given)
    }

    /// Whether the user's documents set the value at this dotted path (e.g. `proxy.ports.admin`),
    /// `null` included.
    pub fn is_given(&self, dotted_path: &str) -> bool {
        let mut node = &self.given;
        for segment in dotted_path.split('.') {
            match node.get(segment) {
                Some(next) => node = next,
                None => return false,
            }
        }
        true
    }

    pub fn given(&self) -> &Value {
        &self.given
    }
}

/// The embedded chart defaults as a document.
pub fn chart_values() -> Value {
    serde_saphyr::from_str(CHART_VALUES_YAML).expect("the embedded chart values are valid YAML (tested)")
}

/// Helm's merge of values documents: maps merge key by key, anything else replaces.
pub fn merge_value(base: &mut Value, later: Value) {
    match (base, later) {
        (Value::Object(base), Value::Object(later)) => {
            for (key, value) in later {
                match base.get_mut(&key) {
                    Some(existing) if existing.is_object() && value.is_object() => merge_value(existing, value),
                    _ => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, later) => *base = later,
    }
}

/// Removes `null` keys from every mapping, so that each takes its field's zero value.
fn drop_null_keys(value: &mut Value) {
    if let Value::Object(map) = value {
        map.retain(|_, v| !v.is_null());
        map.values_mut().for_each(drop_null_keys);
    }
}

pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_document_takes_chart_defaults() {
        let doc = ValuesDocument::from_value(Value::Null).unwrap();
        assert_eq!(doc.values.proxy.ports.inbound, 4143);
        assert_eq!(doc.values.proxy.opaque_ports, "25,587,3306,4444,5432,6379,9300,11211");
        assert_eq!(doc.values.proxy_init.ignore_inbound_ports, "4567,4568");
        assert!(doc.values.identity.service_account_token_projection);
        assert_eq!(doc.values.proxy.runtime.workers.minimum, 1);
        assert!(!doc.is_given("proxy.ports.inbound"));
    }

    #[test]
    fn partial_document_keeps_sibling_defaults() {
        let doc =
            ValuesDocument::from_value(json!({"proxy": {"ports": {"admin": 1234}, "opaquePorts": 3306}})).unwrap();
        assert_eq!(doc.values.proxy.ports.admin, 1234);
        assert_eq!(doc.values.proxy.ports.inbound, 4143);
        assert_eq!(doc.values.proxy.opaque_ports, "3306");
        assert!(doc.is_given("proxy.ports.admin"));
        assert!(!doc.is_given("proxy.ports.control"));
    }

    #[test]
    fn later_documents_win_and_merge_deeply() {
        let doc = ValuesDocument::from_value(json!({"proxy": {"uid": 1, "gid": 2}})).unwrap();
        let doc = doc.merge(json!({"proxy": {"uid": 3}})).unwrap();
        assert_eq!(doc.values.proxy.uid, 3);
        assert_eq!(doc.values.proxy.gid, 2);
    }

    #[test]
    fn wrong_types_are_reported() {
        let err = ValuesDocument::from_value(json!({"proxy": {"uid": "root"}})).unwrap_err();
        assert!(err.to_string().contains("at `proxy.uid`"), "{err}");
        let err = ValuesDocument::from_value(json!([1])).unwrap_err();
        assert!(err.to_string().contains("a list"), "{err}");
    }
}
