//! The proxy flags of `inject` (§7.3). Each explicitly set flag becomes an override annotation
//! when it changes the configured value; every value is validated like the annotation it writes,
//! and a bad one is an error naming the flag.

use clap::Args;
use inject::annotation::{self as key, PortRange, Quantity};
use inject::config::{AnnotationSet, EnvLayers, ProxyConfig, Source};
use inject::values::ValuesDocument;

#[derive(Debug, Clone, Default, Args)]
pub struct ProxyFlags {
    /// Linkerd proxy container image name
    #[arg(long)]
    pub proxy_image: Option<String>,
    /// Tag of the proxy, init and validator images
    #[arg(short = 'v', long)]
    pub proxy_version: Option<String>,
    /// Docker image pull policy (Always, IfNotPresent, Never)
    #[arg(long)]
    pub image_pull_policy: Option<String>,
    /// Registry the proxy and debug images are pulled from
    #[arg(long, env = "LINKERD_DOCKER_REGISTRY")]
    pub registry: Option<String>,
    /// Proxy port for inbound traffic
    #[arg(long)]
    pub inbound_port: Option<String>,
    /// Proxy port for outbound traffic
    #[arg(long)]
    pub outbound_port: Option<String>,
    /// Proxy port for the control plane's API
    #[arg(long)]
    pub control_port: Option<String>,
    /// Proxy port for metrics and health
    #[arg(long)]
    pub admin_port: Option<String>,
    /// Ports and ranges that bypass the proxy for inbound traffic (repeatable or comma-separated)
    #[arg(long, value_delimiter = ',')]
    pub skip_inbound_ports: Option<Vec<String>>,
    /// Ports and ranges that bypass the proxy for outbound traffic
    #[arg(long, value_delimiter = ',')]
    pub skip_outbound_ports: Option<Vec<String>>,
    /// User id the proxy runs as
    #[arg(long, allow_hyphen_values = true)]
    pub proxy_uid: Option<String>,
    /// Group id the proxy runs as (negative: unset)
    #[arg(long, allow_hyphen_values = true)]
    pub proxy_gid: Option<String>,
    /// Log filter of the proxy
    #[arg(long)]
    pub proxy_log_level: Option<String>,
    /// CPU the proxy requests (also its minimum worker threads)
    #[arg(long)]
    pub proxy_cpu_request: Option<String>,
    /// CPU limit of the proxy (also its maximum worker threads)
    #[arg(long)]
    pub proxy_cpu_limit: Option<String>,
    /// Memory the proxy requests
    #[arg(long)]
    pub proxy_memory_request: Option<String>,
    /// Memory limit of the proxy
    #[arg(long)]
    pub proxy_memory_limit: Option<String>,
    /// Deprecated: use --proxy-cpu-request
    #[arg(long, hide = true)]
    pub proxy_cpu: Option<String>,
    /// Deprecated: use --proxy-memory-request
    #[arg(long, hide = true)]
    pub proxy_memory: Option<String>,
    /// Let service profiles be looked up for names outside the cluster
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub enable_external_profiles: Option<String>,
    /// Inbound policy when no server policy applies
    #[arg(long)]
    pub default_inbound_policy: Option<String>,
    /// Run the proxy as a native sidecar (an init container with restartPolicy Always)
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub native_sidecar: Option<String>,
    /// Seconds the proxy waits before exiting (non-native sidecars)
    #[arg(long)]
    pub wait_before_exit_seconds: Option<String>,
    /// Inbound ports on which the proxy requires mTLS identity
    #[arg(long, value_delimiter = ',')]
    pub require_identity_on_inbound_ports: Option<Vec<String>>,
    /// Ports, ranges or port names whose traffic is not protocol-detected
    #[arg(long, value_delimiter = ',')]
    pub opaque_ports: Option<Vec<String>>,
    /// Inject in ingress mode (linkerd.io/inject: ingress)
    #[arg(long)]
    pub ingress: bool,
    /// Add the linkerd-debug sidecar
    #[arg(long)]
    pub enable_debug_sidecar: bool,
    /// Conntrack close-wait timeout applied by the init container (needs a root init container)
    #[arg(long)]
    pub close_wait_timeout: Option<String>,
    /// No longer supported: identity is always required
    #[arg(long, hide = true)]
    pub disable_identity: bool,
}

/// A flag with a value it does not accept.
#[derive(Debug)]
pub struct FlagError(pub String);

impl std::fmt::Display for FlagError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FlagError {}

fn invalid(flag: &str, value: &str, form: &str) -> FlagError {
    FlagError(format!("invalid value {value:?} for --{flag}: expected {form}"))
}

/// Builds the override annotations, in the order the reference applies flags.
pub fn overrides(flags: &ProxyFlags, values: &ValuesDocument) -> Result<AnnotationSet, FlagError> {
    if flags.disable_identity {
        return Err(FlagError("--disable-identity is no longer supported; identity is always required".into()));
    }
    let (base, _) = ProxyConfig::resolve(values, &AnnotationSet::default(), EnvLayers::default());
    let mut out = AnnotationSet::default();
    let mut set = |annotation: &str, value: String, current: &str| {
        if value != current {
            out.insert(annotation, value, Source::Flag);
        }
    };

    let text = |flag: &str, v: &Option<String>| -> Result<Option<String>, FlagError> {
        match v {
            Some(s) if s.trim().is_empty() => Err(invalid(flag, s, "a non-empty value")),
            other => Ok(other.clone()),
        }
    };
    let mut proxy_image = text("proxy-image", &flags.proxy_image)?;
    let mut debug_image = None;
    if let Some(registry) = text("registry", &flags.registry)? {
        let registry = registry.trim_end_matches('/');
        let last_segment = |image: &str| image.rsplit('/').next().unwrap_or(image).to_string();
        let proxy = proxy_image.clone().unwrap_or_else(|| base.proxy_image.value.clone());
        proxy_image = Some(format!("{registry}/{}", last_segment(&proxy)));
        debug_image = Some(format!("{registry}/{}", last_segment(&base.debug_image.value)));
    }
    if let Some(image) = proxy_image {
        set(key::PROXY_IMAGE, image, &base.proxy_image.value);
    }
    if let Some(image) = debug_image {
        set(key::DEBUG_IMAGE, image, &base.debug_image.value);
    }
    if let Some(version) = text("proxy-version", &flags.proxy_version)? {
        set(key::PROXY_VERSION, version, &base.proxy_version.value);
    }
    if let Some(policy) = &flags.image_pull_policy {
        if !["Always", "IfNotPresent", "Never"].contains(&policy.as_str()) {
            return Err(invalid("image-pull-policy", policy, "Always, IfNotPresent or Never"));
        }
        set(key::IMAGE_PULL_POLICY, policy.clone(), &base.image_pull_policy.value);
    }
    let ports = [
        ("inbound-port", &flags.inbound_port, key::INBOUND_PORT, base.inbound_port.value),
        ("outbound-port", &flags.outbound_port, key::OUTBOUND_PORT, base.outbound_port.value),
        ("control-port", &flags.control_port, key::CONTROL_PORT, base.control_port.value),
        ("admin-port", &flags.admin_port, key::ADMIN_PORT, base.admin_port.value),
    ];
    for (flag, value, annotation, current) in ports {
        if let Some(value) = value {
            let port = key::parse_port(value).ok_or_else(|| invalid(flag, value, key::PORT_FORM))?;
            set(annotation, port.to_string(), &current.to_string());
        }
    }
    let lists = [
        ("skip-inbound-ports", &flags.skip_inbound_ports, key::SKIP_INBOUND_PORTS, &base.skip_inbound_ports.value),
        ("skip-outbound-ports", &flags.skip_outbound_ports, key::SKIP_OUTBOUND_PORTS, &base.skip_outbound_ports.value),
        (
            "require-identity-on-inbound-ports",
            &flags.require_identity_on_inbound_ports,
            key::REQUIRE_IDENTITY_INBOUND_PORTS,
            &base.require_identity_inbound_ports.value,
        ),
    ];
    for (flag, items, annotation, current) in lists {
        if let Some(items) = items {
            if let Some(bad) = items.iter().find(|i| PortRange::parse(i).is_none()) {
                return Err(invalid(flag, bad, key::PORT_LIST_FORM));
            }
            set(annotation, items.iter().map(|i| i.trim()).collect::<Vec<_>>().join(","), current);
        }
    }
    if let Some(items) = &flags.opaque_ports {
        let bad_name = |i: &str| i.trim().is_empty() || i.contains(char::is_whitespace);
        if let Some(bad) = items.iter().find(|i| PortRange::parse(i).is_none() && bad_name(i)) {
            return Err(invalid("opaque-ports", bad, "ports, ranges or container port names"));
        }
        set(key::OPAQUE_PORTS, items.join(","), &base.opaque_ports.value);
    }
    let ids = [
        ("proxy-uid", &flags.proxy_uid, key::PROXY_UID, base.uid.value),
        ("proxy-gid", &flags.proxy_gid, key::PROXY_GID, base.gid.value),
    ];
    for (flag, value, annotation, current) in ids {
        if let Some(value) = value {
            let id: i64 = value.parse().map_err(|_| invalid(flag, value, "an integer id"))?;
            set(annotation, id.to_string(), &current.to_string());
        }
    }
    if let Some(level) = text("proxy-log-level", &flags.proxy_log_level)? {
        set(key::PROXY_LOG_LEVEL, level, &base.log_level.value);
    }
    let quantities = [
        ("proxy-cpu-request", &flags.proxy_cpu_request, key::PROXY_CPU_REQUEST, &base.cpu_request.value),
        ("proxy-cpu", &flags.proxy_cpu, key::PROXY_CPU_REQUEST, &base.cpu_request.value),
        ("proxy-cpu-limit", &flags.proxy_cpu_limit, key::PROXY_CPU_LIMIT, &base.cpu_limit.value),
        ("proxy-memory-request", &flags.proxy_memory_request, key::PROXY_MEMORY_REQUEST, &base.memory_request.value),
        ("proxy-memory", &flags.proxy_memory, key::PROXY_MEMORY_REQUEST, &base.memory_request.value),
        ("proxy-memory-limit", &flags.proxy_memory_limit, key::PROXY_MEMORY_LIMIT, &base.memory_limit.value),
    ];
    for (flag, value, annotation, current) in quantities {
        if let Some(value) = value {
            Quantity::parse(value)
                .and_then(|q| q.ceil_whole())
                .ok_or_else(|| invalid(flag, value, key::QUANTITY_FORM))?;
            set(annotation, value.clone(), current);
        }
    }
    let bools = [
        (
            "enable-external-profiles",
            &flags.enable_external_profiles,
            key::ENABLE_EXTERNAL_PROFILES,
            base.external_profiles.value,
        ),
        ("native-sidecar", &flags.native_sidecar, key::NATIVE_SIDECAR, base.native_sidecar.value),
    ];
    for (flag, value, annotation, current) in bools {
        if let Some(value) = value {
            let parsed = key::parse_bool(value).ok_or_else(|| invalid(flag, value, key::BOOL_FORM))?;
            set(annotation, parsed.to_string(), &current.to_string());
        }
    }
    if let Some(policy) = &flags.default_inbound_policy {
        let accepted = [
            "all-unauthenticated",
            "all-authenticated",
            "cluster-unauthenticated",
            "cluster-authenticated",
            "deny",
            "audit",
        ];
        if !accepted.contains(&policy.as_str()) {
            return Err(invalid("default-inbound-policy", policy, &accepted.join(", ")));
        }
        set(key::DEFAULT_INBOUND_POLICY, policy.clone(), &base.default_inbound_policy.value);
    }
    if let Some(seconds) = &flags.wait_before_exit_seconds {
        let n: u64 =
            seconds.parse().map_err(|_| invalid("wait-before-exit-seconds", seconds, "a whole number of seconds"))?;
        set(key::WAIT_BEFORE_EXIT_SECONDS, n.to_string(), &base.wait_before_exit_seconds.value.to_string());
    }
    if flags.ingress {
        out.insert(key::INJECT, "ingress", Source::Flag);
    }
    if flags.enable_debug_sidecar {
        out.insert(key::ENABLE_DEBUG_SIDECAR, "true", Source::Flag);
    }
    if let Some(timeout) = &flags.close_wait_timeout {
        let nanos = key::parse_go_duration(timeout)
            .filter(|n| *n >= 0)
            .ok_or_else(|| invalid("close-wait-timeout", timeout, key::DURATION_FORM))?;
        if nanos > 0 {
            out.insert(key::CLOSE_WAIT_TIMEOUT, go_duration_string(nanos), Source::Flag);
        }
    }
    Ok(out)
}

/// Go's `time.Duration.String()` for non-negative durations (`1m0s`, `1.5s`, `300ms`).
pub fn go_duration_string(nanos: i128) -> String {
    const SECOND: i128 = 1_000_000_000;
    let fraction = |value: i128, unit: i128| {
        let whole = value / unit;
        let rest = value % unit;
        if rest == 0 {
            return whole.to_string();
        }
        let digits = unit.to_string().len() - 1;
        let frac = format!("{rest:0digits$}");
        format!("{whole}.{}", frac.trim_end_matches('0'))
    };
    match nanos {
        0 => "0s".into(),
        n if n < 1_000 => format!("{n}ns"),
        n if n < 1_000_000 => format!("{}µs", fraction(n, 1_000)),
        n if n < SECOND => format!("{}ms", fraction(n, 1_000_000)),
        n => {
            let hours = n / (3600 * SECOND);
            let minutes = (n / (60 * SECOND)) % 60;
            let seconds = fraction(n % (60 * SECOND), SECOND);
            match (hours, minutes) {
                (0, 0) => format!("{seconds}s"),
                (0, m) => format!("{m}m{seconds}s"),
                (h, m) => format!("{h}h{m}m{seconds}s"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(flags: ProxyFlags) -> Result<Vec<(String, String)>, String> {
        overrides(&flags, &ValuesDocument::default())
            .map(|set| set.iter().map(|(k, v, _)| (k.to_string(), v.to_string())).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn changed_flags_become_annotations_and_unchanged_do_not() {
        let flags = ProxyFlags {
            admin_port: Some("1234".into()),
            inbound_port: Some("4143".into()),
            skip_outbound_ports: Some(vec!["25".into(), "100-200".into()]),
            registry: Some("my.reg/linkerd/".into()),
            ingress: true,
            close_wait_timeout: Some("90s".into()),
            ..ProxyFlags::default()
        };
        let got = run(flags).unwrap();
        let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "config.linkerd.io/admin-port",
                "config.linkerd.io/close-wait-timeout",
                "config.linkerd.io/debug-image",
                "config.linkerd.io/proxy-image",
                "config.linkerd.io/skip-outbound-ports",
                "linkerd.io/inject"
            ]
        );
        assert!(got.contains(&("config.linkerd.io/proxy-image".into(), "my.reg/linkerd/proxy".into())));
        assert!(got.contains(&("config.linkerd.io/close-wait-timeout".into(), "1m30s".into())));
        assert!(got.contains(&("config.linkerd.io/skip-outbound-ports".into(), "25,100-200".into())));
    }

    #[test]
    fn bad_values_name_the_flag() {
        let err = run(ProxyFlags { admin_port: Some("abc".into()), ..ProxyFlags::default() }).unwrap_err();
        assert_eq!(err, "invalid value \"abc\" for --admin-port: expected a port number from 1 to 65535");
        let err = run(ProxyFlags { proxy_cpu_request: Some("lots".into()), ..ProxyFlags::default() }).unwrap_err();
        assert!(err.contains("--proxy-cpu-request"), "{err}");
        let err = run(ProxyFlags { skip_inbound_ports: Some(vec!["80".into(), "x".into()]), ..ProxyFlags::default() })
            .unwrap_err();
        assert!(err.contains("--skip-inbound-ports"), "{err}");
        let err = run(ProxyFlags { disable_identity: true, ..ProxyFlags::default() }).unwrap_err();
        assert!(err.contains("no longer supported"), "{err}");
    }

    #[test]
    fn go_duration_strings() {
        let s = |n: i128| go_duration_string(n);
        assert_eq!(s(60_000_000_000), "1m0s");
        assert_eq!(s(3_600_000_000_000), "1h0m0s");
        assert_eq!(s(1_500_000_000), "1.5s");
        assert_eq!(s(300_000_000), "300ms");
        assert_eq!(s(5), "5ns");
    }
}
