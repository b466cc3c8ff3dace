//! The objects injection adds to a pod (§5): the proxy, the init container or network validator,
//! the debug sidecar and the volumes. Keys are inserted in sorted order, as the reference emits
//! them (values copied from the user's configuration keep their own order).

use serde_json::{Map, Value, json};

use crate::config::ProxyConfig;
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

impl RenderInput<'_> {
    fn image(&self) -> String {
        format!("{}:{}", self.config.proxy_image.value, self.config.proxy_version.value)
    }

    fn trust_domain(&self) -> &str {
        let v = self.values;
        if v.identity_trust_domain.is_empty() { &v.cluster_domain } else { &v.identity_trust_domain }
    }

    fn bind_address(&self) -> &'static str {
        if self.values.disable_ipv6 { "0.0.0.0" } else { "[::]" }
    }

    fn tracing(&self) -> Option<&crate::values::TracingValues> {
        self.values.proxy.tracing.as_ref().filter(|t| t.enabled)
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
        let capabilities = self.template.first_container().and_then(|c| c.pointer("/securityContext/capabilities"));
        let list = |key| capabilities.and_then(|c| c.get(key)).and_then(Value::as_array).cloned().unwrap_or_default();
        (list("add"), list("drop"))
    }

    fn copied_service_account_mount(&self) -> Option<Value> {
        let mount = self.template.service_account_mount()?;
        let mut copy = Map::new();
        for key in ["mountPath", "name", "readOnly"] {
            if let Some(v) = mount.get(key) {
                copy.insert(key.into(), v.clone());
            }
        }
        Some(Value::Object(copy))
    }
}

/// A two-key object, allocated at its final size (the proxy has about 60 env vars).
fn pair(k1: &str, v1: Value, k2: &str, v2: Value) -> Value {
    let mut map = Map::with_capacity(2);
    map.insert(k1.into(), v1);
    map.insert(k2.into(), v2);
    Value::Object(map)
}

fn single(key: &str, value: Value) -> Value {
    let mut map = Map::with_capacity(1);
    map.insert(key.into(), value);
    Value::Object(map)
}

fn env(name: &str, value: impl Into<String>) -> Value {
    pair("name", Value::String(name.into()), "value", Value::String(value.into()))
}

fn env_field(name: &str, field_path: &str) -> Value {
    let field_ref = single("fieldRef", single("fieldPath", Value::String(field_path.into())));
    pair("name", Value::String(name.into()), "valueFrom", field_ref)
}

fn http_probe(path: &str, port: u16, probe: &crate::values::ProbeValues) -> Value {
    let mut p = Map::new();
    if let Some(threshold) = probe.failure_threshold {
        p.insert("failureThreshold".into(), json!(threshold));
    }
    p.insert("httpGet".into(), json!({"path": path, "port": port}));
    p.insert("initialDelaySeconds".into(), json!(probe.initial_delay_seconds));
    if let Some(period) = probe.period_seconds {
        p.insert("periodSeconds".into(), json!(period));
    }
    if let Some(timeout) = probe.timeout_seconds {
        p.insert("timeoutSeconds".into(), json!(timeout));
    }
    Value::Object(p)
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

/// `LINKERD2_PROXY_<DIR>_<SCOPE>_<PROTO>_<PARAM>` from `proxy.inbound` / `proxy.outbound`.
fn per_parameter_env(direction: &str, tree: &Map<String, Value>, out: &mut Vec<Value>) {
    fn walk(prefix: &str, node: &Map<String, Value>, out: &mut Vec<Value>) {
        let mut keys: Vec<&String> = node.keys().collect();
        keys.sort();
        for key in keys {
            let name = format!("{prefix}_{}", env_segment(key));
            match &node[key] {
                Value::Object(child) => walk(&name, child, out),
                Value::Null => {}
                leaf => out.push(env(&name, scalar_text(leaf))),
            }
        }
    }
    walk(&format!("LINKERD2_PROXY_{direction}"), tree, out);
}

/// The `linkerd-proxy` container (§5.2).
pub fn proxy_container(input: &RenderInput<'_>) -> Value {
    let v = input.values;
    let c = input.config;
    let ns = input.control_plane_ns;
    let cd = &v.cluster_domain;
    let td = input.trust_domain();
    let bind = input.bind_address();
    let admin = c.admin_port.value;

    let mut e: Vec<Value> = vec![
        env_field("_pod_name", "metadata.name"),
        env_field("_pod_ns", "metadata.namespace"),
        env_field("_pod_uid", "metadata.uid"),
        env_field("_pod_ip", "status.podIP"),
        env_field("_pod_nodeName", "spec.nodeName"),
        env("_pod_containerName", PROXY_CONTAINER),
    ];
    if let Some(cores) = v.proxy.cores {
        e.push(env("LINKERD2_PROXY_CORES", cores.to_string()));
        e.push(env("LINKERD2_PROXY_CORES_MIN", cores.to_string()));
    } else if let Some(min) = c.workers_min {
        e.push(env("LINKERD2_PROXY_CORES", min.to_string()));
        e.push(env("LINKERD2_PROXY_CORES_MIN", min.to_string()));
        if let Some(max) = c.workers_max {
            e.push(env("LINKERD2_PROXY_CORES_MAX", max.to_string()));
        }
        if !c.cpu_ratio_limit.value.is_empty() {
            e.push(env("LINKERD2_PROXY_CORES_MAX_RATIO", c.cpu_ratio_limit.value.clone()));
        }
    }
    if !c.require_identity_inbound_ports.value.is_empty() {
        e.push(env("LINKERD2_PROXY_INBOUND_PORTS_REQUIRE_IDENTITY", c.require_identity_inbound_ports.value.clone()));
    }
    e.push(env("LINKERD2_PROXY_SHUTDOWN_ENDPOINT_ENABLED", c.admin_shutdown.value.to_string()));
    let header_filter = if c.log_http_headers.value == "insecure" { "" } else { ",[{headers}]=off,[{request}]=off" };
    e.push(env("LINKERD2_PROXY_LOG", format!("{}{header_filter}", c.log_level.value)));
    e.push(env("LINKERD2_PROXY_LOG_FORMAT", c.log_format.value.clone()));
    e.push(env("LINKERD2_PROXY_DESTINATION_SVC_ADDR", format!("linkerd-dst-headless.{ns}.svc.{cd}.:8086")));
    e.push(env("LINKERD2_PROXY_DESTINATION_PROFILE_NETWORKS", v.cluster_networks.clone()));
    e.push(env("LINKERD2_PROXY_POLICY_SVC_ADDR", format!("linkerd-policy.{ns}.svc.{cd}.:8090")));
    e.push(env("LINKERD2_PROXY_POLICY_WORKLOAD", "{\"ns\":\"$(_pod_ns)\", \"pod\":\"$(_pod_name)\"}\n"));
    e.push(env("LINKERD2_PROXY_INBOUND_DEFAULT_POLICY", c.default_inbound_policy.value.clone()));
    e.push(env("LINKERD2_PROXY_POLICY_CLUSTER_NETWORKS", v.cluster_networks.clone()));
    let streams = &v.proxy.control.streams;
    e.push(env("LINKERD2_PROXY_CONTROL_STREAM_INITIAL_TIMEOUT", streams.initial_timeout.clone()));
    e.push(env("LINKERD2_PROXY_CONTROL_STREAM_IDLE_TIMEOUT", streams.idle_timeout.clone()));
    e.push(env("LINKERD2_PROXY_CONTROL_STREAM_LIFETIME", streams.lifetime.clone()));
    let optional = [
        ("LINKERD2_PROXY_INBOUND_CONNECT_TIMEOUT", &c.inbound_connect_timeout.value),
        ("LINKERD2_PROXY_OUTBOUND_CONNECT_TIMEOUT", &c.outbound_connect_timeout.value),
        ("LINKERD2_PROXY_OUTBOUND_DISCOVERY_IDLE_TIMEOUT", &c.outbound_discovery_idle_timeout.value),
        ("LINKERD2_PROXY_INBOUND_DISCOVERY_IDLE_TIMEOUT", &c.inbound_discovery_idle_timeout.value),
    ];
    for (name, value) in optional {
        if !value.is_empty() {
            e.push(env(name, value.clone()));
        }
    }
    if c.disable_outbound_detect_timeout.value {
        e.push(env("LINKERD2_PROXY_OUTBOUND_DETECT_TIMEOUT", "365d"));
    }
    if c.disable_inbound_detect_timeout.value {
        e.push(env("LINKERD2_PROXY_INBOUND_DETECT_TIMEOUT", "365d"));
    }
    let outbound = c.outbound_port.value;
    e.push(env("LINKERD2_PROXY_CONTROL_LISTEN_ADDR", format!("{bind}:{}", c.control_port.value)));
    e.push(env("LINKERD2_PROXY_ADMIN_LISTEN_ADDR", format!("{bind}:{admin}")));
    e.push(env("LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR", format!("127.0.0.1:{outbound}")));
    let outbound_addrs =
        if v.disable_ipv6 { format!("127.0.0.1:{outbound}") } else { format!("127.0.0.1:{outbound},[::1]:{outbound}") };
    e.push(env("LINKERD2_PROXY_OUTBOUND_LISTEN_ADDRS", outbound_addrs));
    e.push(env("LINKERD2_PROXY_INBOUND_LISTEN_ADDR", format!("{bind}:{}", c.inbound_port.value)));
    e.push(env_field("LINKERD2_PROXY_INBOUND_IPS", "status.podIPs"));
    e.push(env("LINKERD2_PROXY_INBOUND_PORTS", input.template.inbound_ports()));
    if c.gateway.value {
        e.push(env("LINKERD2_PROXY_INBOUND_GATEWAY_SUFFIXES", format!("svc.{cd}.")));
    }
    if input.ingress {
        e.push(env("LINKERD2_PROXY_INGRESS_MODE", "true"));
    }
    let suffixes = if c.external_profiles.value { ".".to_string() } else { format!("svc.{cd}.") };
    e.push(env("LINKERD2_PROXY_DESTINATION_PROFILE_SUFFIXES", suffixes));
    e.push(env("LINKERD2_PROXY_INBOUND_ACCEPT_KEEPALIVE", "10000ms"));
    e.push(env("LINKERD2_PROXY_OUTBOUND_CONNECT_KEEPALIVE", "10000ms"));
    e.push(env("LINKERD2_PROXY_INBOUND_ACCEPT_USER_TIMEOUT", "30s"));
    e.push(env("LINKERD2_PROXY_OUTBOUND_CONNECT_USER_TIMEOUT", "30s"));
    e.push(env("LINKERD2_PROXY_OUTBOUND_METRICS_HOSTNAME_LABELS", c.metrics_hostname_labels.value.to_string()));
    if let Some(tracing) = input.tracing() {
        tracing_env(input, tracing, td, &mut e);
    }
    per_parameter_env("INBOUND", &v.proxy.inbound, &mut e);
    per_parameter_env("OUTBOUND", &v.proxy.outbound, &mut e);
    if !input.opaque_ports.is_empty() {
        e.push(env("LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION", input.opaque_ports.clone()));
    }
    e.push(env(
        "LINKERD2_PROXY_DESTINATION_CONTEXT",
        "{\"ns\":\"$(_pod_ns)\", \"nodeName\":\"$(_pod_nodeName)\", \"pod\":\"$(_pod_name)\"}\n",
    ));
    e.push(env_field("_pod_sa", "spec.serviceAccountName"));
    e.push(env("_l5d_ns", ns));
    e.push(env("_l5d_trustdomain", td));
    e.push(env("LINKERD2_PROXY_IDENTITY_DIR", END_ENTITY_DIR));
    e.push(env("LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS", format!("{}\n", v.identity_trust_anchors_pem.trim())));
    let token_file = if v.identity.service_account_token_projection {
        "/var/run/secrets/tokens/linkerd-identity-token"
    } else {
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    };
    e.push(env("LINKERD2_PROXY_IDENTITY_TOKEN_FILE", token_file));
    e.push(env("LINKERD2_PROXY_IDENTITY_SVC_ADDR", format!("linkerd-identity-headless.{ns}.svc.{cd}.:8080")));
    e.push(env(
        "LINKERD2_PROXY_IDENTITY_LOCAL_NAME",
        format!("$(_pod_sa).$(_pod_ns).serviceaccount.identity.{ns}.{td}"),
    ));
    e.push(env("LINKERD2_PROXY_IDENTITY_SVC_NAME", format!("linkerd-identity.{ns}.serviceaccount.identity.{ns}.{td}")));
    let destination_name = format!("linkerd-destination.{ns}.serviceaccount.identity.{ns}.{td}");
    e.push(env("LINKERD2_PROXY_DESTINATION_SVC_NAME", destination_name.clone()));
    e.push(env("LINKERD2_PROXY_POLICY_SVC_NAME", destination_name));
    if !c.access_log.value.is_empty() {
        e.push(env("LINKERD2_PROXY_ACCESS_LOG", c.access_log.value.clone()));
    }
    if !c.shutdown_grace_period.value.is_empty() {
        e.push(env("LINKERD2_PROXY_SHUTDOWN_GRACE_PERIOD", c.shutdown_grace_period.value.clone()));
    }
    e.extend(c.additional_env.value.iter().cloned());
    e.extend(v.proxy.experimental_env.iter().cloned());

    let native = c.native_sidecar.value;
    let mut proxy = Map::new();
    proxy.insert("env".into(), Value::Array(e));
    proxy.insert("image".into(), json!(input.image()));
    proxy.insert("imagePullPolicy".into(), json!(c.image_pull_policy.value));
    if !native && (c.proxy_await.value || c.wait_before_exit_seconds.value > 0) {
        let mut lifecycle = Map::new();
        if c.proxy_await.value {
            let command = json!(["/usr/lib/linkerd/linkerd-await", "--timeout=2m", format!("--port={admin}")]);
            lifecycle.insert("postStart".into(), json!({"exec": {"command": command}}));
        }
        if c.wait_before_exit_seconds.value > 0 {
            let command = json!(["/bin/sleep", c.wait_before_exit_seconds.value.to_string()]);
            lifecycle.insert("preStop".into(), json!({"exec": {"command": command}}));
        }
        proxy.insert("lifecycle".into(), Value::Object(lifecycle));
    }
    proxy.insert("livenessProbe".into(), http_probe("/live", admin, &v.proxy.liveness_probe));
    proxy.insert("name".into(), json!(PROXY_CONTAINER));
    proxy.insert(
        "ports".into(),
        json!([
            {"containerPort": c.inbound_port.value, "name": "linkerd-proxy"},
            {"containerPort": admin, "name": "linkerd-admin"},
        ]),
    );
    proxy.insert("readinessProbe".into(), http_probe("/ready", admin, &v.proxy.readiness_probe));
    if let Some(resources) = input.resources() {
        proxy.insert("resources".into(), resources);
    }
    if native {
        proxy.insert("restartPolicy".into(), json!("Always"));
    }
    proxy.insert("securityContext".into(), proxy_security_context(input));
    if native && c.proxy_await.value {
        proxy.insert("startupProbe".into(), http_probe("/ready", admin, &v.proxy.startup_probe));
    }
    proxy.insert("terminationMessagePolicy".into(), json!("FallbackToLogsOnError"));
    let mut mounts = vec![json!({"mountPath": END_ENTITY_DIR, "name": END_ENTITY_VOLUME})];
    if input.tracing().is_some() {
        mounts.push(json!({"mountPath": PODINFO_DIR, "name": PODINFO_VOLUME}));
    }
    if v.identity.service_account_token_projection {
        mounts.push(json!({"mountPath": TOKEN_DIR, "name": TOKEN_VOLUME}));
    }
    mounts.extend(input.copied_service_account_mount());
    proxy.insert("volumeMounts".into(), Value::Array(mounts));
    Value::Object(proxy)
}

fn tracing_env(input: &RenderInput<'_>, tracing: &crate::values::TracingValues, td: &str, e: &mut Vec<Value>) {
    let ns = input.control_plane_ns;
    let or = |s: &str, default: &str| if s.is_empty() { default.to_string() } else { s.to_string() };
    e.push(env("LINKERD2_PROXY_TRACE_ATTRIBUTES_PATH", format!("{PODINFO_DIR}/labels")));
    e.push(env("LINKERD2_PROXY_TRACE_ANNOTATIONS_PATH", format!("{PODINFO_DIR}/annotations")));
    e.push(env("LINKERD2_PROXY_TRACE_PROTOCOL", or(&tracing.protocol, "opentelemetry")));
    e.push(env("LINKERD2_PROXY_TRACE_SERVICE_NAME", or(&tracing.trace_service_name, "linkerd-proxy")));
    e.push(env("LINKERD2_PROXY_TRACE_COLLECTOR_SVC_ADDR", tracing.collector.endpoint.clone()));
    let identity = &tracing.collector.mesh_identity;
    e.push(env(
        "LINKERD2_PROXY_TRACE_COLLECTOR_SVC_NAME",
        format!("{}.{}.serviceaccount.identity.{ns}.{td}", identity.service_account_name, identity.namespace),
    ));
    let mut attributes = std::collections::BTreeMap::new();
    attributes.insert("k8s.container.name".to_string(), "$(_pod_containerName)".to_string());
    attributes.insert("k8s.pod.ip".to_string(), "$(_pod_ip)".to_string());
    attributes.insert("k8s.pod.uid".to_string(), "$(_pod_uid)".to_string());
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
    e.push(env("LINKERD2_PROXY_TRACE_EXTRA_ATTRIBUTES", lines));
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
pub fn init_container(input: &RenderInput<'_>) -> Value {
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
    let mut add = vec![json!("NET_ADMIN"), json!("NET_RAW")];
    add.extend(app_add);
    let drop: Vec<Value> =
        app_drop.into_iter().filter(|cap| !matches!(cap.as_str(), Some("NET_RAW" | "NET_ADMIN"))).collect();
    let mut capabilities = Map::new();
    capabilities.insert("add".into(), Value::Array(add));
    if !drop.is_empty() {
        capabilities.insert("drop".into(), Value::Array(drop));
    }
    let mut security = Map::new();
    security.insert("allowPrivilegeEscalation".into(), json!(privileged));
    security.insert("capabilities".into(), Value::Object(capabilities));
    security.insert("privileged".into(), json!(privileged));
    security.insert("readOnlyRootFilesystem".into(), json!(true));
    if init.run_as_root {
        security.insert("runAsGroup".into(), json!(0));
        security.insert("runAsNonRoot".into(), json!(false));
        security.insert("runAsUser".into(), json!(0));
    } else {
        let non_zero = |id: i64| if id == 0 { 65534 } else { id };
        security.insert("runAsGroup".into(), json!(non_zero(init.run_as_group)));
        security.insert("runAsNonRoot".into(), json!(true));
        security.insert("runAsUser".into(), json!(non_zero(init.run_as_user)));
    }
    security.insert("seccompProfile".into(), json!({"type": "RuntimeDefault"}));

    let mut mounts = vec![json!({"mountPath": init.xt_mount_path.mount_path, "name": init.xt_mount_path.name})];
    mounts.extend(input.copied_service_account_mount());

    let own = &init.image;
    let (command, image, pull_policy) = if own.name.is_empty() {
        (json!(["/usr/lib/linkerd/linkerd2-proxy-init"]), input.image(), c.image_pull_policy.value.clone())
    } else {
        let version = if own.version.is_empty() { env!("CARGO_PKG_VERSION") } else { &own.version };
        let pull = if own.pull_policy.is_empty() { c.image_pull_policy.value.clone() } else { own.pull_policy.clone() };
        (json!([OWN_BINARY, "proxy-init"]), format!("{}:{version}", own.name), pull)
    };
    let mut container = Map::new();
    container.insert("args".into(), json!(args));
    container.insert("command".into(), command);
    container.insert("image".into(), json!(image));
    container.insert("imagePullPolicy".into(), json!(pull_policy));
    container.insert("name".into(), json!(INIT_CONTAINER));
    if let Some(resources) = input.resources() {
        container.insert("resources".into(), resources);
    }
    container.insert("securityContext".into(), Value::Object(security));
    container.insert("terminationMessagePolicy".into(), json!("FallbackToLogsOnError"));
    container.insert("volumeMounts".into(), Value::Array(mounts));
    Value::Object(container)
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
    let security = nv.security_context.clone().map(Value::Object).unwrap_or_else(|| {
        json!({
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": true,
            "runAsGroup": 65534,
            "runAsNonRoot": true,
            "runAsUser": 65534,
            "seccompProfile": {"type": "RuntimeDefault"},
        })
    });
    let mut container = Map::new();
    container.insert("args".into(), args);
    container.insert("command".into(), json!(["/usr/lib/linkerd/linkerd2-network-validator"]));
    container.insert("image".into(), json!(input.image()));
    container.insert("imagePullPolicy".into(), json!(input.config.image_pull_policy.value));
    container.insert("name".into(), json!(VALIDATOR_CONTAINER));
    if let Some(resources) = input.resources() {
        container.insert("resources".into(), resources);
    }
    if nv.enable_security_context {
        container.insert("securityContext".into(), security);
    }
    Value::Object(container)
}

/// The `linkerd-debug` sidecar (§5.5).
pub fn debug_container(input: &RenderInput<'_>) -> Value {
    let c = input.config;
    json!({
        "image": format!("{}:{}", c.debug_image.value, c.debug_image_version.value),
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
        assert_eq!(
            out,
            vec![
                json!({"name": "LINKERD2_PROXY_INBOUND_SERVER_HTTP2_APPLE_SAUCE", "value": "true"}),
                json!({"name": "LINKERD2_PROXY_INBOUND_SERVER_HTTP2_B", "value": "2.5"}),
            ]
        );
    }
}
