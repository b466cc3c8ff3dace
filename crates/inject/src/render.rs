//! The objects injection adds to a pod (§5): the proxy, the init container or network validator,
//! the debug sidecar and the volumes. Keys are inserted in sorted order, as the reference emits
//! them (values copied from the user's configuration keep their own order).

use crate::fields::Fields;
use std::borrow::Cow;

use serde_json::{Map, Value, json};

use crate::config::ProxyConfig;
use crate::json_text;
use crate::values::Values;
use crate::workload::PodTemplate;

pub const PROXY_CONTAINER: &str = "linkerd-proxy";
pub const INIT_CONTAINER: &str = "linkerd-init";
pub const VALIDATOR_CONTAINER: &str = "linkerd-network-validator";
pub const DEBUG_CONTAINER: &str = "linkerd-debug";
pub const XTABLES_VOLUME: &str = "linkerd-proxy-init-xtables-lock";
pub const END_ENTITY_VOLUME: &str = "linkerd-identity-end-entity";
pub const TOKEN_VOLUME: &str = "linkerd-identity-token";
pub const PODINFO_VOLUME: &str = "linkerd-podinfo";
const END_ENTITY_DIR: &str = "/var/run/linkerd/identity/end-entity";
const PODINFO_DIR: &str = "/var/run/linkerd/podinfo";
const TOKEN_DIR: &str = "/var/run/secrets/tokens";
/// Where the proxy-injector image keeps its single binary.
pub const OWN_BINARY: &str = "/usr/local/bin/proxy-injector";

/// Everything the renderers read, resolved once per workload.
pub struct RenderInput<'a> {
    pub values: &'a Values,
    pub control_plane_env: &'a ControlPlaneEnv,
    pub config: &'a ProxyConfig,
    pub template: PodTemplate<'a>,
    pub control_plane_ns: &'a str,
    pub ingress: bool,
    /// Opaque ports with names resolved (empty: no env var).
    pub opaque_ports: String,
    /// Annotations the pod will carry, for `resource.opentelemetry.io/*` tracing attributes.
    pub annotations: &'a crate::config::AnnotationSet,
    /// The close-wait timeout actually applied (0 when it cannot be, see the warning).
    pub close_wait_timeout_secs: u64,
}

/// The images an injected pod runs, as rendered; governance checks them before they run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Images {
    pub proxy: String,
    /// linkerd-init, or the network validator in CNI mode.
    pub init: String,
    /// Only when the debug sidecar is enabled.
    pub debug: Option<String>,
}

impl Images {
    pub fn of(values: &Values, config: &ProxyConfig) -> Images {
        let proxy = format!("{}:{}", config.proxy_image.value, config.proxy_version.value);
        let own = &values.proxy_init.image;
        let init = if own.name.is_empty() || values.cni_enabled {
            proxy.clone()
        } else {
            let version = if own.version.is_empty() { env!("CARGO_PKG_VERSION") } else { &own.version };
            format!("{}:{version}", own.name)
        };
        let debug = config.debug_sidecar.value.then(|| debug_image(config));
        Images { proxy, init, debug }
    }
}

fn debug_image(config: &ProxyConfig) -> String {
    format!("{}:{}", config.debug_image.value, config.debug_image_version.value)
}

impl RenderInput<'_> {
    fn image(&self) -> String {
        format!("{}:{}", self.config.proxy_image.value, self.config.proxy_version.value)
    }

    fn trust_domain(&self) -> &str {
        trust_domain(self.values)
    }

    fn bind_address(&self) -> &'static str {
        if self.values.disable_ipv6 { "0.0.0.0" } else { "[::]" }
    }

    fn tracing(&self) -> Option<&crate::values::TracingValues> {
        Some(&self.values.proxy.tracing).filter(|t| t.enabled)
    }

    /// `limits` and `requests` blocks, each only when something is set (§5.2).
    fn resources(&self) -> Option<Value> {
        let c = self.config;
        let block = |entries: [(&str, &str); 3]| {
            let map: Map<String, Value> =
                entries.into_iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.to_string(), json!(v))).collect();
            (!map.is_empty()).then_some(Value::Object(map))
        };
        let limits = block([
            ("cpu", &c.cpu_limit.value),
            ("ephemeral-storage", &c.ephemeral_storage_limit.value),
            ("memory", &c.memory_limit.value),
        ]);
        let requests = block([
            ("cpu", &c.cpu_request.value),
            ("ephemeral-storage", &c.ephemeral_storage_request.value),
            ("memory", &c.memory_request.value),
        ]);
        let mut resources = Map::new();
        if let Some(limits) = limits {
            resources.insert("limits".into(), limits);
        }
        if let Some(requests) = requests {
            resources.insert("requests".into(), requests);
        }
        (!resources.is_empty()).then_some(Value::Object(resources))
    }

    /// The first app container's capabilities, split into `add` and `drop`.
    fn app_capabilities(&self) -> (Vec<Value>, Vec<Value>) {
        let capabilities =
            self.template.first_container().and_then(|c| c.field("securityContext")?.field("capabilities"));
        let list = |key| capabilities.and_then(|c| c.field(key)).and_then(Value::as_array).cloned().unwrap_or_default();
        (list("add"), list("drop"))
    }

    fn copied_service_account_mount(&self) -> Option<Value> {
        copied_service_account_mount(self.template)
    }
}

/// The app's service-account token mount, as the proxy and init containers copy it.
pub fn copied_service_account_mount(template: PodTemplate<'_>) -> Option<Value> {
    let mount = template.service_account_mount()?;
    let mut copy = Map::new();
    for key in ["mountPath", "name", "readOnly"] {
        if let Some(v) = mount.field(key) {
            copy.insert(key.into(), v.clone());
        }
    }
    Some(Value::Object(copy))
}

/// The chart's liveness and readiness probes carry a timeout; its startup probe a period and a
/// failure threshold instead.
#[derive(Clone, Copy)]
enum ProbeKind {
    Health,
    Startup,
}

/// An HTTP probe of the proxy's admin port.
struct HttpProbe<'a> {
    path: &'static str,
    port: u16,
    probe: &'a crate::values::ProbeValues,
    kind: ProbeKind,
}

impl HttpProbe<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        let probe = self.probe;
        let mut object = json_text::Object::start(out);
        if let ProbeKind::Startup = self.kind {
            object.literal("failureThreshold", probe.failure_threshold);
        }
        let http_get = object.key("httpGet");
        let mut http_get = json_text::Object::start(http_get);
        http_get.string("path", self.path);
        http_get.literal("port", self.port);
        http_get.end();
        object.literal("initialDelaySeconds", probe.initial_delay_seconds);
        match self.kind {
            ProbeKind::Health => object.literal("timeoutSeconds", probe.timeout_seconds),
            ProbeKind::Startup => object.literal("periodSeconds", probe.period_seconds),
        }
        object.end();
    }
}

/// `appleSauce` → `APPLE_SAUCE`, `http2` → `HTTP2`.
fn env_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len() + 4);
    for (i, c) in segment.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(if c == '-' { '_' } else { c.to_ascii_uppercase() });
    }
    out
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One env var of the proxy, borrowed where it can be: the proxy has about 60, and building them
/// as JSON trees was most of the cost of an admission.
enum EnvVar<'a> {
    Value { name: &'a str, value: Cow<'a, str> },
    Field { name: &'a str, field_path: &'a str },
    Given(&'a Value),
}

impl EnvVar<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            EnvVar::Given(value) => json_text::value(out, value),
            EnvVar::Value { name, value } => {
                let mut var = json_text::Object::start(out);
                var.string("name", name);
                var.string("value", value);
                var.end();
            }
            EnvVar::Field { name, field_path } => {
                let mut var = json_text::Object::start(out);
                var.string("name", name);
                let mut value_from = json_text::Object::start(var.key("valueFrom"));
                let mut field_ref = json_text::Object::start(value_from.key("fieldRef"));
                field_ref.string("fieldPath", field_path);
                field_ref.end();
                value_from.end();
                var.end();
            }
        }
    }
}

/// The env list under construction.
struct Env<'a>(Vec<EnvVar<'a>>);

impl<'a> Env<'a> {
    fn set(&mut self, name: &'a str, value: impl Into<Cow<'a, str>>) {
        self.0.push(EnvVar::Value { name, value: value.into() });
    }

    fn field(&mut self, name: &'a str, field_path: &'a str) {
        self.0.push(EnvVar::Field { name, field_path });
    }

    fn write(&self, out: &mut Vec<u8>) {
        json_text::list(out, &self.0, |out, var| var.write(out));
    }
}

/// `LINKERD2_PROXY_<DIR>_<SCOPE>_<PROTO>_<PARAM>` from `proxy.inbound` / `proxy.outbound`.
fn per_parameter_env(direction: &str, tree: &Map<String, Value>, out: &mut Vec<(String, String)>) {
    fn walk(prefix: &str, node: &Map<String, Value>, out: &mut Vec<(String, String)>) {
        let mut keys: Vec<&String> = node.keys().collect();
        keys.sort();
        for key in keys {
            let name = format!("{prefix}_{}", env_segment(key));
            match &node[key] {
                Value::Object(child) => walk(&name, child, out),
                Value::Null => {}
                leaf => out.push((name, scalar_text(leaf))),
            }
        }
    }
    walk(&format!("LINKERD2_PROXY_{direction}"), tree, out);
}

/// The proxy's env values that follow from the values and the control plane's namespace alone,
/// built once with the engine rather than formatted again for every pod.
#[derive(Debug, Clone)]
pub struct ControlPlaneEnv {
    destination_svc_addr: String,
    policy_svc_addr: String,
    /// `svc.<cluster domain>.`: the profile suffixes by default, and the gateway's.
    service_suffix: String,
    trust_anchors: String,
    identity_svc_addr: String,
    identity_local_name: String,
    identity_svc_name: String,
    destination_svc_name: String,
    /// From `proxy.inbound`, then `proxy.outbound`.
    per_parameter: Vec<(String, String)>,
}

impl ControlPlaneEnv {
    pub fn new(v: &Values, ns: &str) -> Self {
        let cd = &v.cluster_domain;
        let td = trust_domain(v);
        let mut per_parameter = Vec::new();
        per_parameter_env("INBOUND", &v.proxy.inbound, &mut per_parameter);
        per_parameter_env("OUTBOUND", &v.proxy.outbound, &mut per_parameter);
        ControlPlaneEnv {
            destination_svc_addr: format!("linkerd-dst-headless.{ns}.svc.{cd}.:8086"),
            policy_svc_addr: format!("linkerd-policy.{ns}.svc.{cd}.:8090"),
            service_suffix: format!("svc.{cd}."),
            trust_anchors: format!("{}\n", v.identity_trust_anchors_pem.trim()),
            identity_svc_addr: format!("linkerd-identity-headless.{ns}.svc.{cd}.:8080"),
            identity_local_name: format!("$(_pod_sa).$(_pod_ns).serviceaccount.identity.{ns}.{td}"),
            identity_svc_name: format!("linkerd-identity.{ns}.serviceaccount.identity.{ns}.{td}"),
            destination_svc_name: format!("linkerd-destination.{ns}.serviceaccount.identity.{ns}.{td}"),
            per_parameter,
        }
    }
}

fn trust_domain(v: &Values) -> &str {
    if v.identity_trust_domain.is_empty() { &v.cluster_domain } else { &v.identity_trust_domain }
}

/// The `linkerd-proxy` container (§5.2). Written in the order of its keys; `None` fields are
/// left out.
struct ProxyContainer<'a> {
    env: Env<'a>,
    image: String,
    image_pull_policy: &'a str,
    lifecycle: Option<Value>,
    liveness_probe: HttpProbe<'a>,
    name: &'static str,
    /// The proxy's inbound and admin ports.
    ports: [u16; 2],
    readiness_probe: HttpProbe<'a>,
    resources: Option<Value>,
    restart_policy: Option<&'static str>,
    security_context: Value,
    startup_probe: Option<HttpProbe<'a>>,
    termination_message_policy: &'static str,
    volume_mounts: Vec<Value>,
}

impl ProxyContainer<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        let mut object = json_text::Object::start(out);
        self.env.write(object.key("env"));
        object.string("image", &self.image);
        object.string("imagePullPolicy", self.image_pull_policy);
        if let Some(lifecycle) = &self.lifecycle {
            object.value("lifecycle", lifecycle);
        }
        self.liveness_probe.write(object.key("livenessProbe"));
        object.string("name", self.name);
        let [inbound, admin] = self.ports;
        json_text::list(
            object.key("ports"),
            [(inbound, "linkerd-proxy"), (admin, "linkerd-admin")],
            |out, (port, name)| {
                let mut port_object = json_text::Object::start(out);
                port_object.literal("containerPort", port);
                port_object.string("name", name);
                port_object.end();
            },
        );
        self.readiness_probe.write(object.key("readinessProbe"));
        if let Some(resources) = &self.resources {
            object.value("resources", resources);
        }
        if let Some(restart_policy) = self.restart_policy {
            object.string("restartPolicy", restart_policy);
        }
        object.value("securityContext", &self.security_context);
        if let Some(startup_probe) = &self.startup_probe {
            startup_probe.write(object.key("startupProbe"));
        }
        object.string("terminationMessagePolicy", self.termination_message_policy);
        json_text::list(object.key("volumeMounts"), &self.volume_mounts, json_text::value);
        object.end();
    }
}

/// The `linkerd-proxy` container (§5.2), as JSON text.
pub fn proxy_container(input: &RenderInput<'_>) -> Box<str> {
    let v = input.values;
    let c = input.config;
    let ns = input.control_plane_ns;
    let fixed = input.control_plane_env;
    let td = input.trust_domain();
    let bind = input.bind_address();
    let admin = c.admin_port.value;

    let mut e = Env(Vec::with_capacity(72));
    e.field("_pod_name", "metadata.name");
    e.field("_pod_ns", "metadata.namespace");
    e.field("_pod_uid", "metadata.uid");
    e.field("_pod_ip", "status.podIP");
    e.field("_pod_nodeName", "spec.nodeName");
    e.set("_pod_containerName", PROXY_CONTAINER);
    if v.proxy.cores != 0 {
        e.set("LINKERD2_PROXY_CORES", v.proxy.cores.to_string());
        e.set("LINKERD2_PROXY_CORES_MIN", v.proxy.cores.to_string());
    } else {
        e.set("LINKERD2_PROXY_CORES", c.workers_min.to_string());
        e.set("LINKERD2_PROXY_CORES_MIN", c.workers_min.to_string());
        if let Some(max) = c.workers_max {
            e.set("LINKERD2_PROXY_CORES_MAX", max.to_string());
        }
        if !c.cpu_ratio_limit.value.is_empty() {
            e.set("LINKERD2_PROXY_CORES_MAX_RATIO", c.cpu_ratio_limit.value.as_str());
        }
    }
    if !c.require_identity_inbound_ports.value.is_empty() {
        e.set("LINKERD2_PROXY_INBOUND_PORTS_REQUIRE_IDENTITY", c.require_identity_inbound_ports.value.as_str());
    }
    e.set("LINKERD2_PROXY_SHUTDOWN_ENDPOINT_ENABLED", if c.admin_shutdown.value { "true" } else { "false" });
    let header_filter = if c.log_http_headers.value == "insecure" { "" } else { ",[{headers}]=off,[{request}]=off" };
    e.set("LINKERD2_PROXY_LOG", format!("{}{header_filter}", c.log_level.value));
    e.set("LINKERD2_PROXY_LOG_FORMAT", c.log_format.value.as_str());
    e.set("LINKERD2_PROXY_DESTINATION_SVC_ADDR", fixed.destination_svc_addr.as_str());
    e.set("LINKERD2_PROXY_DESTINATION_PROFILE_NETWORKS", v.cluster_networks.as_str());
    e.set("LINKERD2_PROXY_POLICY_SVC_ADDR", fixed.policy_svc_addr.as_str());
    e.set("LINKERD2_PROXY_POLICY_WORKLOAD", "{\"ns\":\"$(_pod_ns)\", \"pod\":\"$(_pod_name)\"}\n");
    e.set("LINKERD2_PROXY_INBOUND_DEFAULT_POLICY", c.default_inbound_policy.value.as_str());
    e.set("LINKERD2_PROXY_POLICY_CLUSTER_NETWORKS", v.cluster_networks.as_str());
    let streams = &v.proxy.control.streams;
    e.set("LINKERD2_PROXY_CONTROL_STREAM_INITIAL_TIMEOUT", streams.initial_timeout.as_str());
    e.set("LINKERD2_PROXY_CONTROL_STREAM_IDLE_TIMEOUT", streams.idle_timeout.as_str());
    e.set("LINKERD2_PROXY_CONTROL_STREAM_LIFETIME", streams.lifetime.as_str());
    let optional = [
        ("LINKERD2_PROXY_INBOUND_CONNECT_TIMEOUT", &c.inbound_connect_timeout.value),
        ("LINKERD2_PROXY_OUTBOUND_CONNECT_TIMEOUT", &c.outbound_connect_timeout.value),
        ("LINKERD2_PROXY_OUTBOUND_DISCOVERY_IDLE_TIMEOUT", &c.outbound_discovery_idle_timeout.value),
        ("LINKERD2_PROXY_INBOUND_DISCOVERY_IDLE_TIMEOUT", &c.inbound_discovery_idle_timeout.value),
    ];
    for (name, value) in optional {
        if !value.is_empty() {
            e.set(name, value.as_str());
        }
    }
    if c.disable_outbound_detect_timeout.value {
        e.set("LINKERD2_PROXY_OUTBOUND_DETECT_TIMEOUT", "365d");
    }
    if c.disable_inbound_detect_timeout.value {
        e.set("LINKERD2_PROXY_INBOUND_DETECT_TIMEOUT", "365d");
    }
    let outbound = c.outbound_port.value;
    e.set("LINKERD2_PROXY_CONTROL_LISTEN_ADDR", format!("{bind}:{}", c.control_port.value));
    e.set("LINKERD2_PROXY_ADMIN_LISTEN_ADDR", format!("{bind}:{admin}"));
    e.set("LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR", format!("127.0.0.1:{outbound}"));
    let outbound_addrs =
        if v.disable_ipv6 { format!("127.0.0.1:{outbound}") } else { format!("127.0.0.1:{outbound},[::1]:{outbound}") };
    e.set("LINKERD2_PROXY_OUTBOUND_LISTEN_ADDRS", outbound_addrs);
    e.set("LINKERD2_PROXY_INBOUND_LISTEN_ADDR", format!("{bind}:{}", c.inbound_port.value));
    e.field("LINKERD2_PROXY_INBOUND_IPS", "status.podIPs");
    e.set("LINKERD2_PROXY_INBOUND_PORTS", input.template.inbound_ports());
    if c.gateway.value {
        e.set("LINKERD2_PROXY_INBOUND_GATEWAY_SUFFIXES", fixed.service_suffix.as_str());
    }
    if input.ingress {
        e.set("LINKERD2_PROXY_INGRESS_MODE", "true");
    }
    let suffixes = if c.external_profiles.value { "." } else { fixed.service_suffix.as_str() };
    e.set("LINKERD2_PROXY_DESTINATION_PROFILE_SUFFIXES", suffixes);
    e.set("LINKERD2_PROXY_INBOUND_ACCEPT_KEEPALIVE", "10000ms");
    e.set("LINKERD2_PROXY_OUTBOUND_CONNECT_KEEPALIVE", "10000ms");
    e.set("LINKERD2_PROXY_INBOUND_ACCEPT_USER_TIMEOUT", "30s");
    e.set("LINKERD2_PROXY_OUTBOUND_CONNECT_USER_TIMEOUT", "30s");
    e.set(
        "LINKERD2_PROXY_OUTBOUND_METRICS_HOSTNAME_LABELS",
        if c.metrics_hostname_labels.value { "true" } else { "false" },
    );
    if let Some(tracing) = input.tracing() {
        tracing_env(input, tracing, td, &mut e);
    }
    for (name, value) in &fixed.per_parameter {
        e.set(name, value.as_str());
    }
    if !input.opaque_ports.is_empty() {
        e.set("LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION", input.opaque_ports.as_str());
    }
    e.set(
        "LINKERD2_PROXY_DESTINATION_CONTEXT",
        "{\"ns\":\"$(_pod_ns)\", \"nodeName\":\"$(_pod_nodeName)\", \"pod\":\"$(_pod_name)\"}\n",
    );
    e.field("_pod_sa", "spec.serviceAccountName");
    e.set("_l5d_ns", ns);
    e.set("_l5d_trustdomain", td);
    e.set("LINKERD2_PROXY_IDENTITY_DIR", END_ENTITY_DIR);
    e.set("LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS", fixed.trust_anchors.as_str());
    let token_file = if v.identity.service_account_token_projection {
        "/var/run/secrets/tokens/linkerd-identity-token"
    } else {
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    };
    e.set("LINKERD2_PROXY_IDENTITY_TOKEN_FILE", token_file);
    e.set("LINKERD2_PROXY_IDENTITY_SVC_ADDR", fixed.identity_svc_addr.as_str());
    e.set("LINKERD2_PROXY_IDENTITY_LOCAL_NAME", fixed.identity_local_name.as_str());
    e.set("LINKERD2_PROXY_IDENTITY_SVC_NAME", fixed.identity_svc_name.as_str());
    e.set("LINKERD2_PROXY_DESTINATION_SVC_NAME", fixed.destination_svc_name.as_str());
    e.set("LINKERD2_PROXY_POLICY_SVC_NAME", fixed.destination_svc_name.as_str());
    if !c.access_log.value.is_empty() {
        e.set("LINKERD2_PROXY_ACCESS_LOG", c.access_log.value.as_str());
    }
    if !c.shutdown_grace_period.value.is_empty() {
        e.set("LINKERD2_PROXY_SHUTDOWN_GRACE_PERIOD", c.shutdown_grace_period.value.as_str());
    }
    e.0.extend(c.additional_env.value.iter().chain(&v.proxy.experimental_env).map(EnvVar::Given));

    let native = c.native_sidecar.value;
    let lifecycle = (!native && (c.proxy_await.value || c.wait_before_exit_seconds.value > 0)).then(|| {
        let mut lifecycle = Map::new();
        if c.proxy_await.value {
            let command = json!(["/usr/lib/linkerd/linkerd-await", "--timeout=2m", format!("--port={admin}")]);
            lifecycle.insert("postStart".into(), json!({"exec": {"command": command}}));
        }
        if c.wait_before_exit_seconds.value > 0 {
            let command = json!(["/bin/sleep", c.wait_before_exit_seconds.value.to_string()]);
            lifecycle.insert("preStop".into(), json!({"exec": {"command": command}}));
        }
        Value::Object(lifecycle)
    });
    let mut volume_mounts = vec![json!({"mountPath": END_ENTITY_DIR, "name": END_ENTITY_VOLUME})];
    if input.tracing().is_some() {
        volume_mounts.push(json!({"mountPath": PODINFO_DIR, "name": PODINFO_VOLUME}));
    }
    if v.identity.service_account_token_projection {
        volume_mounts.push(json!({"mountPath": TOKEN_DIR, "name": TOKEN_VOLUME}));
    }
    volume_mounts.extend(input.copied_service_account_mount());
    let container = ProxyContainer {
        env: e,
        image: input.image(),
        image_pull_policy: &c.image_pull_policy.value,
        lifecycle,
        liveness_probe: HttpProbe {
            path: "/live",
            port: admin,
            probe: &v.proxy.liveness_probe,
            kind: ProbeKind::Health,
        },
        name: PROXY_CONTAINER,
        ports: [c.inbound_port.value, admin],
        readiness_probe: HttpProbe {
            path: "/ready",
            port: admin,
            probe: &v.proxy.readiness_probe,
            kind: ProbeKind::Health,
        },
        resources: input.resources(),
        restart_policy: native.then_some("Always"),
        security_context: proxy_security_context(input),
        startup_probe: (native && c.proxy_await.value).then_some(HttpProbe {
            path: "/ready",
            port: admin,
            probe: &v.proxy.startup_probe,
            kind: ProbeKind::Startup,
        }),
        termination_message_policy: "FallbackToLogsOnError",
        volume_mounts,
    };
    let mut text = Vec::with_capacity(8 * 1024);
    container.write(&mut text);
    String::from_utf8(text).expect("JSON text written from strings is UTF-8").into_boxed_str()
}

fn tracing_env<'a>(input: &'a RenderInput<'_>, tracing: &'a crate::values::TracingValues, td: &str, e: &mut Env<'a>) {
    let ns = input.control_plane_ns;
    let or = |s: &'a str, default: &'static str| if s.is_empty() { default } else { s };
    e.set("LINKERD2_PROXY_TRACE_ATTRIBUTES_PATH", format!("{PODINFO_DIR}/labels"));
    e.set("LINKERD2_PROXY_TRACE_ANNOTATIONS_PATH", format!("{PODINFO_DIR}/annotations"));
    e.set("LINKERD2_PROXY_TRACE_PROTOCOL", or(&tracing.protocol, "opentelemetry"));
    e.set("LINKERD2_PROXY_TRACE_SERVICE_NAME", or(&tracing.trace_service_name, "linkerd-proxy"));
    e.set("LINKERD2_PROXY_TRACE_COLLECTOR_SVC_ADDR", tracing.collector.endpoint.as_str());
    let identity = &tracing.collector.mesh_identity;
    e.set(
        "LINKERD2_PROXY_TRACE_COLLECTOR_SVC_NAME",
        format!("{}.{}.serviceaccount.identity.{ns}.{td}", identity.service_account_name, identity.namespace),
    );
    let mut attributes = std::collections::BTreeMap::new();
    for (k, v) in &tracing.labels {
        attributes.insert(k.clone(), scalar_text(v));
    }
    let labels = input.template.labels();
    let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    if let Some(service) = label("app.kubernetes.io/instance").or_else(|| label("app.kubernetes.io/name")) {
        attributes.insert("service.name".to_string(), service.to_string());
    }
    for (k, v, _) in input.annotations.iter() {
        if let Some(attribute) = k.strip_prefix(crate::annotation::OPENTELEMETRY_PREFIX) {
            attributes.insert(attribute.to_string(), v.to_string());
        }
    }
    let lines: String = attributes.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    e.set("LINKERD2_PROXY_TRACE_EXTRA_ATTRIBUTES", lines);
}

fn proxy_security_context(input: &RenderInput<'_>) -> Value {
    if !input.values.proxy.security_context.is_empty() {
        return Value::Object(input.values.proxy.security_context.clone());
    }
    let c = input.config;
    let mut context = Map::new();
    context.insert("allowPrivilegeEscalation".into(), json!(false));
    let (add, drop) = input.app_capabilities();
    if !add.is_empty() || !drop.is_empty() {
        let mut capabilities = Map::new();
        if !add.is_empty() {
            capabilities.insert("add".into(), Value::Array(add));
        }
        if !drop.is_empty() {
            capabilities.insert("drop".into(), Value::Array(drop));
        }
        context.insert("capabilities".into(), Value::Object(capabilities));
    }
    context.insert("readOnlyRootFilesystem".into(), json!(true));
    if c.gid.value >= 0 {
        context.insert("runAsGroup".into(), json!(c.gid.value));
    }
    context.insert("runAsNonRoot".into(), json!(true));
    context.insert("runAsUser".into(), json!(c.uid.value));
    context.insert("seccompProfile".into(), json!({"type": "RuntimeDefault"}));
    Value::Object(context)
}

/// The `linkerd-init` container that programs iptables (§5.3).
/// Written as JSON text.
pub fn init_container(input: &RenderInput<'_>) -> Box<str> {
    let v = input.values;
    let c = input.config;
    let init = &v.proxy_init;
    let mut args: Vec<String> = Vec::new();
    if init.iptables_mode != "legacy" {
        args.extend(
            ["--firewall-bin-path", "iptables-nft", "--firewall-save-bin-path", "iptables-nft-save"].map(String::from),
        );
    }
    if v.disable_ipv6 {
        args.push("--ipv6=false".into());
    }
    args.extend([
        "--incoming-proxy-port".into(),
        c.inbound_port.value.to_string(),
        "--outgoing-proxy-port".into(),
        c.outbound_port.value.to_string(),
        "--proxy-uid".into(),
        c.uid.value.to_string(),
    ]);
    if c.gid.value >= 0 {
        args.extend(["--proxy-gid".into(), c.gid.value.to_string()]);
    }
    let mut inbound_ignore = format!("{},{}", c.control_port.value, c.admin_port.value);
    if !c.skip_inbound_ports.value.is_empty() {
        inbound_ignore = format!("{inbound_ignore},{}", c.skip_inbound_ports.value);
    }
    args.extend(["--inbound-ports-to-ignore".into(), inbound_ignore]);
    if !c.skip_outbound_ports.value.is_empty() {
        args.extend(["--outbound-ports-to-ignore".into(), c.skip_outbound_ports.value.clone()]);
    }
    if input.close_wait_timeout_secs > 0 {
        args.extend(["--timeout-close-wait-secs".into(), input.close_wait_timeout_secs.to_string()]);
    }
    if !init.log_format.is_empty() {
        args.extend(["--log-format".into(), init.log_format.clone()]);
    }
    if !init.log_level.is_empty() {
        args.extend(["--log-level".into(), init.log_level.clone()]);
    }
    if !c.skip_subnets.value.is_empty() {
        args.extend(["--subnets-to-ignore".into(), c.skip_subnets.value.clone()]);
    }

    let privileged = input.close_wait_timeout_secs > 0 || init.privileged;
    let (app_add, app_drop) = input.app_capabilities();
    let add: Vec<Value> = [json!("NET_ADMIN"), json!("NET_RAW")].into_iter().chain(app_add).collect();
    let drop: Vec<Value> =
        app_drop.into_iter().filter(|cap| !matches!(cap.as_str(), Some("NET_RAW" | "NET_ADMIN"))).collect();
    let non_zero = |id: i64| if id == 0 { 65534 } else { id };
    let (run_as_group, run_as_user) =
        if init.run_as_root { (0, 0) } else { (non_zero(init.run_as_group), non_zero(init.run_as_user)) };

    let own = &init.image;
    let image = Images::of(input.values, c).init;
    let (command, pull_policy): (&[&str], &str) = if own.name.is_empty() {
        (&["/usr/lib/linkerd/linkerd2-proxy-init"], &c.image_pull_policy.value)
    } else {
        let pull = if own.pull_policy.is_empty() { &c.image_pull_policy.value } else { &own.pull_policy };
        (&[OWN_BINARY, "proxy-init"], pull)
    };
    let mut text = Vec::with_capacity(1024);
    let mut container = json_text::Object::start(&mut text);
    json_text::list(container.key("args"), &args, |out, arg| json_text::string(out, arg));
    json_text::list(container.key("command"), command, |out, part| json_text::string(out, part));
    container.string("image", &image);
    container.string("imagePullPolicy", pull_policy);
    container.string("name", INIT_CONTAINER);
    if let Some(resources) = input.resources() {
        container.value("resources", &resources);
    }
    let mut security = json_text::Object::start(container.key("securityContext"));
    security.literal("allowPrivilegeEscalation", privileged);
    let mut capabilities = json_text::Object::start(security.key("capabilities"));
    json_text::list(capabilities.key("add"), &add, json_text::value);
    if !drop.is_empty() {
        json_text::list(capabilities.key("drop"), &drop, json_text::value);
    }
    capabilities.end();
    security.literal("privileged", privileged);
    security.literal("readOnlyRootFilesystem", true);
    security.literal("runAsGroup", run_as_group);
    security.literal("runAsNonRoot", !init.run_as_root);
    security.literal("runAsUser", run_as_user);
    let mut seccomp = json_text::Object::start(security.key("seccompProfile"));
    seccomp.string("type", "RuntimeDefault");
    seccomp.end();
    security.end();
    container.string("terminationMessagePolicy", "FallbackToLogsOnError");
    let mounts = container.key("volumeMounts");
    mounts.push(b'[');
    let mut xtables = json_text::Object::start(mounts);
    xtables.string("mountPath", &init.xt_mount_path.mount_path);
    xtables.string("name", &init.xt_mount_path.name);
    xtables.end();
    if let Some(copied) = input.copied_service_account_mount() {
        mounts.push(b',');
        json_text::value(mounts, &copied);
    }
    mounts.push(b']');
    container.end();
    String::from_utf8(text).expect("JSON text written from strings is UTF-8").into_boxed_str()
}

/// The CNI-mode init container that proves the redirect works (§5.4).
pub fn network_validator(input: &RenderInput<'_>) -> Value {
    let v = input.values;
    let nv = &v.network_validator;
    let or = |s: &str, default: &str| if s.is_empty() { default.to_string() } else { s.to_string() };
    let (connect, listen) =
        if v.disable_ipv6 { ("1.1.1.1:20001", "0.0.0.0:4140") } else { ("[fd00::1]:20001", "[::]:4140") };
    let args = json!([
        "--log-format",
        or(&nv.log_format, "plain"),
        "--log-level",
        or(&nv.log_level, "debug"),
        "--connect-addr",
        or(&nv.connect_addr, connect),
        "--listen-addr",
        or(&nv.listen_addr, listen),
        "--timeout",
        or(&nv.timeout, "10s"),
    ]);
    let mut container = Map::new();
    container.insert("args".into(), args);
    container.insert("command".into(), json!(["/usr/lib/linkerd/linkerd2-network-validator"]));
    container.insert("image".into(), json!(input.image()));
    container.insert("imagePullPolicy".into(), json!(input.config.image_pull_policy.value));
    container.insert("name".into(), json!(VALIDATOR_CONTAINER));
    if let Some(resources) = input.resources() {
        container.insert("resources".into(), resources);
    }
    if !nv.security_context.is_empty() {
        container.insert("securityContext".into(), Value::Object(nv.security_context.clone()));
    }
    Value::Object(container)
}

/// The `linkerd-debug` sidecar (§5.5).
pub fn debug_container(input: &RenderInput<'_>) -> Value {
    let c = input.config;
    json!({
        "image": debug_image(c),
        "imagePullPolicy": c.debug_image_pull_policy.value,
        "livenessProbe": {"exec": {"command": ["true"]}},
        "name": DEBUG_CONTAINER,
        "readinessProbe": {"exec": {"command": ["true"]}},
        "terminationMessagePolicy": "FallbackToLogsOnError",
    })
}

pub fn xtables_volume(values: &Values) -> Value {
    json!({"emptyDir": {}, "name": values.proxy_init.xt_mount_path.name})
}

pub fn end_entity_volume() -> Value {
    json!({"emptyDir": {"medium": "Memory"}, "name": END_ENTITY_VOLUME})
}

/// Exposes labels and annotations to the proxy's tracing (the reference omits annotations,
/// although it points the proxy at that file; §10 row 11).
pub fn podinfo_volume() -> Value {
    json!({"downwardAPI": {"items": [
        {"fieldRef": {"fieldPath": "metadata.labels"}, "path": "labels"},
        {"fieldRef": {"fieldPath": "metadata.annotations"}, "path": "annotations"},
    ]}, "name": PODINFO_VOLUME})
}

pub fn token_volume() -> Value {
    json!({"name": TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": {
        "audience": "identity.l5d.io", "expirationSeconds": 86400, "path": "linkerd-identity-token"}}]}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_segments_are_upper_snake_case() {
        assert_eq!(env_segment("appleSauce"), "APPLE_SAUCE");
        assert_eq!(env_segment("http2"), "HTTP2");
        assert_eq!(env_segment("keepAliveInterval"), "KEEP_ALIVE_INTERVAL");
    }

    #[test]
    fn per_parameter_env_is_sorted_and_stringified() {
        let tree = json!({"server": {"http2": {"b": 2.5, "appleSauce": true}}});
        let mut out = Vec::new();
        per_parameter_env("INBOUND", tree.as_object().unwrap(), &mut out);
        let pairs =
            |list: &[(&str, &str)]| list.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect::<Vec<_>>();
        assert_eq!(
            out,
            pairs(&[
                ("LINKERD2_PROXY_INBOUND_SERVER_HTTP2_APPLE_SAUCE", "true"),
                ("LINKERD2_PROXY_INBOUND_SERVER_HTTP2_B", "2.5")
            ])
        );
    }
}
