//! `proxy-injector webhook`: the admission webhook's flags, turned into its typed configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnError {
    /// Reject the object, with a message saying why (pairs with failurePolicy Fail)
    Deny,
    /// Admit it without the proxy, with a warning, an Event and a metric (pairs with failurePolicy Ignore)
    Admit,
}

#[derive(Debug, Args)]
pub struct WebhookArgs {
    /// Address of the HTTPS admission listener
    #[arg(long, default_value = "0.0.0.0:8443")]
    addr: SocketAddr,
    /// Address of the admin listener (/metrics, /ping, /ready)
    #[arg(long, alias = "metrics-addr", default_value = "0.0.0.0:9995")]
    admin_addr: SocketAddr,
    /// Linkerd values (the `values` key of the linkerd-config ConfigMap), reloaded when it changes
    #[arg(long, default_value = "/var/run/linkerd/config/values")]
    values: PathBuf,
    /// Identity trust roots (PEM), reloaded when they change
    #[arg(long, default_value = "/var/run/linkerd/identity/trust-roots/ca-bundle.crt")]
    trust_roots: PathBuf,
    /// Serving certificate chain (PEM), reloaded when it changes
    #[arg(long, default_value = "/var/run/linkerd/tls/tls.crt")]
    tls_cert: PathBuf,
    /// Serving private key (PEM)
    #[arg(long, default_value = "/var/run/linkerd/tls/tls.key")]
    tls_key: PathBuf,
    /// What to answer when the webhook itself fails (configuration missing, namespace unreadable)
    #[arg(long, value_enum, default_value = "admit")]
    on_error: OnError,
    /// Answer every request "allowed" without injecting (load-test baseline)
    #[arg(long)]
    no_op: bool,
    /// Admissions processed at once, counted once their body has arrived; more are refused
    /// immediately with 503. Sized for a burst of thousands of pods: each admission takes well
    /// under a millisecond of CPU.
    #[arg(long, default_value_t = 4096)]
    max_in_flight: usize,
    /// Bytes of request bodies read or processed at once (each counted 4 times, for its decoded
    /// form); past it requests get 503. Default: a third of the container's memory limit (cgroup v2
    /// memory.max), else 256Mi. Accepts plain bytes or Ki/Mi/Gi.
    #[arg(long, value_parser = parse_bytes)]
    body_budget: Option<usize>,
    /// How long a client may take to send a request's headers
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    header_read_timeout: Duration,
    /// Connections with no request in flight for this long are closed
    #[arg(long, default_value = "90s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Interval of HTTP/2 keep-alive pings (a peer that does not answer within it is dropped)
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    keepalive_interval: Duration,
    /// Concurrent streams one HTTP/2 connection may open
    #[arg(long, default_value_t = 250)]
    max_streams_per_connection: u32,
    /// Connections one peer address may hold open; at the maximum its longest-idle one is closed
    #[arg(long, default_value_t = 256)]
    max_connections_per_peer: usize,
    /// Connections the listener holds open; at the maximum the longest-idle one is closed
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// How often the values, trust roots and certificate files are checked for changes
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    reload_interval: Duration,
    /// Keep the MutatingAdmissionPolicy compiled from the loaded configuration (applied at start
    /// and after every change of linkerd-config; removed when the configuration has no policy),
    /// so the policy never injects a proxy older than the webhook's
    #[arg(long)]
    sync_admission_policy: bool,
    /// Name of the synced policy and its binding
    #[arg(long, default_value = admission_policy::POLICY_NAME, requires = "sync_admission_policy")]
    admission_policy_name: String,
    /// Give the synced policy only the namespaces with this label (a staged rollout); the others
    /// stay the webhook's
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_label, requires = "sync_admission_policy")]
    admission_policy_namespace_label: Option<(String, String)>,
    /// No webhook is registered for the pods the synced policy leaves (`install --injection
    /// policy --sync-policy`): the policy fails as --on-error says, and a warning policy tells
    /// whoever applies a pod it leaves
    #[arg(long, requires = "sync_admission_policy")]
    admission_policy_alone: bool,
    /// How long in-flight admissions may take to finish after SIGTERM
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    shutdown_grace: Duration,
    #[command(flatten)]
    log: crate::logging::LogArgs,
}

pub fn parse_duration(value: &str) -> Result<Duration, String> {
    inject::annotation::parse_go_duration(value)
        .filter(|n| *n > 0)
        .map(|n| Duration::from_nanos(n as u64))
        .ok_or_else(|| format!("{value:?} is not a positive duration such as 500ms or 10s"))
}

fn parse_label(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((key, label)) if !key.is_empty() => Ok((key.into(), label.into())),
        _ => Err(format!("{value:?} is not a label such as mesh.example.com/fast-path=true")),
    }
}

/// `268435456`, `256Mi`, `1Gi`, `512Ki`.
fn parse_bytes(value: &str) -> Result<usize, String> {
    let (number, unit) = match value.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => value.split_at(at),
        None => (value, ""),
    };
    let scale: usize = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return Err(format!("{value:?} is not a size such as 134217728, 128Mi or 1Gi")),
    };
    number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{value:?} is not a size such as 134217728, 128Mi or 1Gi"))
}

pub fn run(args: &WebhookArgs, kubeconfig: Option<PathBuf>, control_plane_ns: &str) -> anyhow::Result<()> {
    args.log.init()?;
    let defaults = webhook::limits::Limits::with_defaults(args.max_in_flight.max(1));
    let config = webhook::Config {
        addr: args.addr,
        admin_addr: args.admin_addr,
        paths: webhook::reload::Paths {
            values: args.values.clone(),
            trust_roots: args.trust_roots.clone(),
            tls_cert: args.tls_cert.clone(),
            tls_key: args.tls_key.clone(),
        },
        kubeconfig,
        control_plane_ns: control_plane_ns.into(),
        error_policy: match args.on_error {
            OnError::Deny => webhook::ErrorPolicy::Deny,
            OnError::Admit => webhook::ErrorPolicy::Admit,
        },
        no_op: args.no_op,
        limits: webhook::limits::Limits {
            body_budget: args.body_budget.unwrap_or(defaults.body_budget),
            header_read_timeout: args.header_read_timeout,
            idle_timeout: args.idle_timeout,
            keepalive_interval: args.keepalive_interval,
            max_streams_per_connection: args.max_streams_per_connection.max(1),
            max_connections_per_peer: args.max_connections_per_peer.max(1),
            max_connections: args.max_connections.max(1),
            ..defaults
        },
        reload_interval: args.reload_interval,
        shutdown_grace: args.shutdown_grace,
        policy_sync: args.sync_admission_policy.then(|| webhook::policy_sync::PolicySync {
            name: args.admission_policy_name.clone(),
            namespace_label: args.admission_policy_namespace_label.clone(),
            alone: args.admission_policy_alone.then_some(match args.on_error {
                OnError::Deny => "Fail",
                OnError::Admit => "Ignore",
            }),
        }),
    };
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(webhook::run(config))?;
    Ok(())
}
