//! The injector's configuration, in the schema of Linkerd's Helm values (the `values` key of the
//! `linkerd-config` ConfigMap). Any subset may be given; missing keys take the chart defaults.

use serde::Deserialize;
use serde_json::{Map, Value};

/// The Linkerd release whose images are used when neither the values nor an annotation pin one.
pub const DEFAULT_LINKERD_VERSION: &str = "edge-26.8.2";

/// The fields of the Helm values that injection reads. Unknown keys are ignored, as the chart does.
#[derive(Debug, Clone, Deserialize)]
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

impl Default for Values {
    fn default() -> Self {
        Values {
            linkerd_version: DEFAULT_LINKERD_VERSION.into(),
            cluster_domain: "cluster.local".into(),
            cluster_networks: "10.0.0.0/8,100.64.0.0/10,172.16.0.0/12,192.168.0.0/16,fd00::/8".into(),
            identity_trust_domain: String::new(),
            identity_trust_anchors_pem: String::new(),
            image_pull_policy: "IfNotPresent".into(),
            disable_ipv6: true,
            cni_enabled: false,
            webhook_failure_policy: "Ignore".into(),
            identity: IdentityValues::default(),
            proxy: ProxyValues::default(),
            proxy_init: ProxyInitValues::default(),
            network_validator: NetworkValidatorValues::default(),
            debug_container: DebugContainerValues::default(),
            proxy_injector: ProxyInjectorValues::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IdentityValues {
    pub service_account_token_projection: bool,
}

impl Default for IdentityValues {
    fn default() -> Self {
        IdentityValues { service_account_token_projection: true }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ImageValues {
    pub name: String,
    pub version: String,
    pub pull_policy: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PortValues {
    pub admin: i64,
    pub control: i64,
    pub inbound: i64,
    pub outbound: i64,
}

impl Default for PortValues {
    fn default() -> Self {
        PortValues { admin: 4191, control: 4190, inbound: 4143, outbound: 4140 }
    }
}

/// A request/limit pair of one resource, as Helm values write it (`cpu: {request, limit}`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RequestLimit {
    #[serde(deserialize_with = "quantity_string")]
    pub request: String,
    #[serde(deserialize_with = "quantity_string")]
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

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProbeValues {
    pub initial_delay_seconds: i64,
    pub timeout_seconds: Option<i64>,
    pub period_seconds: Option<i64>,
    pub failure_threshold: Option<i64>,
}

impl ProbeValues {
    fn new(initial_delay_seconds: i64, timeout_seconds: Option<i64>) -> Self {
        ProbeValues { initial_delay_seconds, timeout_seconds, period_seconds: None, failure_threshold: None }
    }
}

impl Default for ProbeValues {
    fn default() -> Self {
        ProbeValues::new(0, None)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WorkerValues {
    pub minimum: Option<i64>,
    pub maximum: Option<i64>,
    #[serde(rename = "maximumCPURatio")]
    pub maximum_cpu_ratio: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RuntimeValues {
    pub workers: WorkerValues,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StreamValues {
    pub initial_timeout: String,
    pub idle_timeout: String,
    pub lifetime: String,
}

impl Default for StreamValues {
    fn default() -> Self {
        StreamValues { initial_timeout: "3s".into(), idle_timeout: "5m".into(), lifetime: "1h".into() }
    }
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

#[derive(Debug, Clone, Deserialize)]
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
    pub cores: Option<i64>,
    pub runtime: RuntimeValues,
    pub resources: ResourceValues,
    pub liveness_probe: ProbeValues,
    pub readiness_probe: ProbeValues,
    pub startup_probe: ProbeValues,
    pub control: ControlValues,
    pub metrics: MetricsValues,
    pub tracing: Option<TracingValues>,
    /// `inbound.<scope>.<proto>.<param>` and the same for outbound, rendered as per-parameter env.
    pub inbound: Map<String, Value>,
    pub outbound: Map<String, Value>,
    pub additional_env: Vec<Value>,
    pub experimental_env: Vec<Value>,
    pub security_context: Map<String, Value>,
}

impl Default for ProxyValues {
    fn default() -> Self {
        let http2_keepalive =
            serde_json::json!({"server": {"http2": {"keepAliveInterval": "10s", "keepAliveTimeout": "3s"}}});
        let Value::Object(http2_keepalive) = http2_keepalive else { unreachable!("literal object") };
        ProxyValues {
            image: ImageValues { name: "cr.l5d.io/linkerd/proxy".into(), ..ImageValues::default() },
            log_level: "warn,linkerd=info,hickory=error".into(),
            log_format: "plain".into(),
            log_http_headers: "off".into(),
            ports: PortValues::default(),
            uid: 2102,
            gid: -1,
            r#await: true,
            native_sidecar: true,
            wait_before_exit_seconds: 0,
            opaque_ports: "25,587,3306,4444,5432,6379,9300,11211".into(),
            default_inbound_policy: "all-unauthenticated".into(),
            outbound_connect_timeout: "1000ms".into(),
            inbound_connect_timeout: "100ms".into(),
            outbound_discovery_cache_unused_timeout: "5s".into(),
            inbound_discovery_cache_unused_timeout: "90s".into(),
            disable_outbound_protocol_detect_timeout: false,
            disable_inbound_protocol_detect_timeout: false,
            enable_external_profiles: false,
            require_identity_on_inbound_ports: String::new(),
            shutdown_grace_period: String::new(),
            access_log: String::new(),
            enable_shutdown_endpoint: false,
            cores: None,
            runtime: RuntimeValues { workers: WorkerValues { minimum: Some(1), ..WorkerValues::default() } },
            resources: ResourceValues::default(),
            liveness_probe: ProbeValues::new(10, Some(1)),
            readiness_probe: ProbeValues::new(2, Some(1)),
            startup_probe: ProbeValues {
                initial_delay_seconds: 0,
                timeout_seconds: None,
                period_seconds: Some(1),
                failure_threshold: Some(120),
            },
            control: ControlValues::default(),
            metrics: MetricsValues::default(),
            tracing: None,
            inbound: http2_keepalive.clone(),
            outbound: http2_keepalive,
            additional_env: Vec::new(),
            experimental_env: Vec::new(),
            security_context: Map::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct XtMountPath {
    pub mount_path: String,
    pub name: String,
}

impl Default for XtMountPath {
    fn default() -> Self {
        XtMountPath { mount_path: "/run".into(), name: "linkerd-proxy-init-xtables-lock".into() }
    }
}

#[derive(Debug, Clone, Deserialize)]
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

impl Default for ProxyInitValues {
    fn default() -> Self {
        ProxyInitValues {
            iptables_mode: "nft".into(),
            ignore_inbound_ports: "4567,4568".into(),
            ignore_outbound_ports: "4567,4568".into(),
            skip_subnets: String::new(),
            log_level: String::new(),
            log_format: String::new(),
            run_as_root: false,
            privileged: false,
            run_as_user: 65534,
            run_as_group: 65534,
            close_wait_timeout_secs: 0,
            xt_mount_path: XtMountPath::default(),
            image: ImageValues::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NetworkValidatorValues {
    pub log_level: String,
    pub log_format: String,
    pub connect_addr: String,
    pub listen_addr: String,
    pub timeout: String,
    pub enable_security_context: bool,
    pub security_context: Option<Map<String, Value>>,
}

impl Default for NetworkValidatorValues {
    fn default() -> Self {
        NetworkValidatorValues {
            log_level: "debug".into(),
            log_format: "plain".into(),
            connect_addr: String::new(),
            listen_addr: String::new(),
            timeout: "10s".into(),
            enable_security_context: true,
            security_context: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DebugContainerValues {
    pub image: ImageValues,
}

impl Default for DebugContainerValues {
    fn default() -> Self {
        DebugContainerValues { image: ImageValues { name: "cr.l5d.io/linkerd/debug".into(), ..ImageValues::default() } }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProxyInjectorValues {
    pub timeout_seconds: i64,
}

impl Default for ProxyInjectorValues {
    fn default() -> Self {
        ProxyInjectorValues { timeout_seconds: 10 }
    }
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

fn quantity_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    scalar_string(d)
}

/// Values with the user's document alongside, so the effective configuration can tell a chart
/// default from a value the user set.
#[derive(Debug, Clone, Default)]
pub struct ValuesDocument {
    pub values: Values,
    given: Value,
}

/// A values document that does not fit the Helm schema.
#[derive(Debug, thiserror::Error)]
#[error("invalid values: {0}")]
pub struct ValuesError(String);

impl ValuesDocument {
    /// Reads a values document (already parsed from YAML or JSON). `null` means "all defaults".
    pub fn from_value(given: Value) -> Result<Self, ValuesError> {
        let given = if given.is_null() { Value::Object(Map::new()) } else { given };
        if !given.is_object() {
            return Err(ValuesError(format!("expected a mapping at the top level, found {}", kind_of(&given))));
        }
        let values = serde_path_to_error::deserialize(&given)
            .map_err(|e| ValuesError(format!("at `{}`: {}", e.path(), e.inner())))?;
        Ok(ValuesDocument { values, given })
    }

    /// Deep-merges `later` over the document given so far (later files win), as Helm does with
    /// repeated `-f` flags.
    pub fn merge(self, later: Value) -> Result<Self, ValuesError> {
        let mut given = self.given;
        merge_value(&mut given, later);
        Self::from_value(given)
    }

    /// Whether the user's document sets the value at this dotted path (e.g. `proxy.ports.admin`).
    pub fn is_given(&self, dotted_path: &str) -> bool {
        let mut node = &self.given;
        for segment in dotted_path.split('.') {
            match node.get(segment) {
                Some(next) => node = next,
                None => return false,
            }
        }
        !node.is_null()
    }

    pub fn given(&self) -> &Value {
        &self.given
    }
}

fn merge_value(base: &mut Value, later: Value) {
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
        assert_eq!(doc.values.proxy.runtime.workers.minimum, Some(1));
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
