//! `proxy-injector reconcile` and `proxy-injector status`: the reconciler's flags, and its plan
//! printed for people (a table) and for tools (`-o json`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use k8s_openapi::jiff::Timestamp;
use reconcile::controller::{self, Source};
use reconcile::plan::{Limits, Memory, Plan};

use crate::cluster::ClusterArgs;
use crate::serve::parse_duration;

#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Linkerd values file (as the webhook reads it); without it, the linkerd-config ConfigMap
    #[arg(long, requires = "trust_roots")]
    values: Option<PathBuf>,
    /// Identity trust roots file (PEM); without it, the linkerd-identity-trust-roots ConfigMap
    #[arg(long, requires = "values")]
    trust_roots: Option<PathBuf>,
}

impl SourceArgs {
    fn source(&self) -> Source {
        match (&self.values, &self.trust_roots) {
            (Some(values), Some(trust_roots)) => {
                Source::Files { values: values.clone(), trust_roots: trust_roots.clone() }
            }
            _ => Source::Cluster,
        }
    }
}

#[derive(Debug, Args)]
pub struct ScopeArgs {
    /// Only this namespace's workloads (repeatable; default: every namespace)
    #[arg(short = 'n', long = "namespace")]
    namespaces: Vec<String>,
}

impl ScopeArgs {
    fn namespaces(&self) -> BTreeSet<String> {
        self.namespaces.iter().cloned().collect()
    }
}

#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Workloads rolling at once (whoever started them) past which no restart starts
    #[arg(long, default_value_t = 2)]
    max_rolling: usize,
    /// Time between two restarts
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    min_interval: Duration,
    /// A workload restarted this recently is not restarted again (its new pods should have been right)
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    retry_after: Duration,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits { max_rolling: self.max_rolling.max(1), min_interval: self.min_interval, retry_after: self.retry_after }
    }
}

/// What a plan is made from: which namespaces, which configuration, which limits.
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    scope: ScopeArgs,
    #[command(flatten)]
    source: SourceArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    output: StatusFormat,
    #[command(flatten)]
    plan: PlanArgs,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Plan and report only; never restart anything
    #[arg(long)]
    dry_run: bool,
    /// One pass: print the plan (as `status` does), act on it unless --dry-run, and exit
    #[arg(long)]
    once: bool,
    /// Output format of --once
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    output: StatusFormat,
    /// Re-plan at least this often, even when nothing changed
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    resync: Duration,
    /// Name of the Lease that elects the acting replica
    #[arg(long, default_value = "proxy-injector-reconciler")]
    lease_name: String,
    /// Namespace of the Lease (default: $POD_NAMESPACE, else the control-plane namespace)
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Act without a Lease (a single replica)
    #[arg(long)]
    no_leader_election: bool,
    /// This replica's identity in the Lease (default: $POD_NAME, else the host name and process id)
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// How long a Lease holder that stops renewing keeps it
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    lease_duration: Duration,
    /// Address of the admin listener (/metrics, /ping, /ready)
    #[arg(long, default_value = "0.0.0.0:9996")]
    admin_addr: SocketAddr,
    #[command(flatten)]
    plan: PlanArgs,
    #[command(flatten)]
    log: crate::logging::LogArgs,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// One plan from a fresh list of the cluster's objects.
async fn plan_once(
    client: &kube::Client,
    source: &Source,
    limits: &Limits,
    control_plane_ns: &str,
    namespaces: &BTreeSet<String>,
) -> anyhow::Result<Plan> {
    let injector = source.load(client, control_plane_ns).await?;
    let observed = controller::observe(&controller::list_objects(client).await?, namespaces);
    Ok(reconcile::plan(&injector, &observed, limits, &Memory::default(), Timestamp::now()))
}

fn print(plan: &Plan, format: StatusFormat) -> anyhow::Result<()> {
    match format {
        StatusFormat::Table => print!("{}", reconcile::report::table(plan)),
        StatusFormat::Json => println!("{}", serde_json::to_string_pretty(plan)?),
    }
    Ok(())
}

pub fn status(args: &StatusArgs, cluster: &ClusterArgs, control_plane_ns: &str) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let client = cluster.client().await?;
        let (source, limits) = (args.plan.source.source(), args.plan.limits.limits());
        let plan = plan_once(&client, &source, &limits, control_plane_ns, &args.plan.scope.namespaces()).await?;
        print(&plan, args.output)
    })
}

pub fn run(args: &ReconcileArgs, cluster: &ClusterArgs, control_plane_ns: &str) -> anyhow::Result<()> {
    let limits = args.plan.limits.limits();
    let source = args.plan.source.source();
    if args.once {
        return runtime()?.block_on(async {
            let client = cluster.client().await?;
            let plan = plan_once(&client, &source, &limits, control_plane_ns, &args.plan.scope.namespaces()).await?;
            print(&plan, args.output)?;
            if !args.dry_run {
                controller::act_on(&client, &plan).await?;
            }
            Ok(())
        });
    }
    args.log.init()?;
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let config = controller::Config {
        source,
        control_plane_ns: control_plane_ns.to_string(),
        limits,
        dry_run: args.dry_run,
        resync: args.resync,
        lease: (!args.no_leader_election).then(|| controller::LeaseConfig {
            namespace: args.lease_namespace.clone().unwrap_or_else(|| control_plane_ns.to_string()),
            name: args.lease_name.clone(),
            holder: identity,
            duration: args.lease_duration,
        }),
        namespaces: args.plan.scope.namespaces(),
    };
    runtime()?.block_on(async {
        let client = cluster.client().await?;
        let metrics = Arc::new(reconcile::metrics::Metrics::default());
        let listener = tokio::net::TcpListener::bind(args.admin_addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.admin_addr))?;
        let rendered = metrics.clone();
        tokio::spawn(webhook::server::serve_admin(listener, Arc::new(move || rendered.render()), Arc::new(|| true)));
        controller::run(client, config, metrics).await?;
        Ok(())
    })
}
