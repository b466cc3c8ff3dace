//! `proxy-injector`: automatic Linkerd proxy injection.

#![forbid(unsafe_code)]

mod check;
mod cluster;
mod explain;
mod flags;
mod input;
mod install;
mod iptables;
mod logging;
mod reconciler;
mod report;
mod serve;
mod transform;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Admission handling allocates many small JSON maps; mimalloc measured about a third faster than
/// the system allocator for decision + patch (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "proxy-injector", version, about = "Automatic Linkerd proxy injection: webhook, CLI and proxy-init")]
struct Cli {
    /// Namespace of the Linkerd control plane
    #[arg(short = 'L', long, global = true, env = "LINKERD_NAMESPACE", default_value = "linkerd")]
    linkerd_namespace: String,
    /// Report every check, not only failures
    #[arg(long, global = true)]
    verbose: bool,
    /// Accepted for command-line compatibility with `linkerd inject`; CNI settings come from the values
    #[arg(long, global = true, hide = true)]
    cni_namespace: Option<String>,
    #[command(flatten)]
    cluster: cluster::ClusterArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Add the Linkerd proxy (or the inject annotation) to Kubernetes manifests
    Inject(Box<transform::InjectArgs>),
    /// Remove the Linkerd proxy from Kubernetes manifests
    Uninject(transform::UninjectArgs),
    /// Explain whether and how workloads are injected, and where each setting comes from
    Explain(explain::ExplainArgs),
    /// Run the mutating admission webhook
    Webhook(Box<serve::WebhookArgs>),
    /// Program iptables so the pod's TCP traffic goes through the proxy (the init container)
    ProxyInit(Box<iptables::ProxyInitArgs>),
    /// Check that the pod's traffic is redirected to the proxy (CNI mode); exits 95 if not
    NetworkValidator(iptables::ValidatorArgs),
    /// Print the manifests that install the webhook and/or the admission policy, for `kubectl apply -f -`
    Install(Box<install::InstallArgs>),
    /// Check that the installed webhook is registered, trusted and injecting, and the policy current
    Check(check::CheckArgs),
    /// Restart workloads whose pods lack the proxy, run a stale one, or have one they should not
    Reconcile(Box<reconciler::ReconcileArgs>),
    /// Per workload: meshed or not and why, its pods' proxies, and what the reconciler would do
    Status(reconciler::StatusArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Inject(args) => transform::inject(args, &cli.cluster, &cli.linkerd_namespace, cli.verbose),
        Command::Uninject(args) => transform::uninject_command(args),
        Command::Explain(args) => explain::run(args, &cli.cluster, &cli.linkerd_namespace).map(|()| true),
        Command::Webhook(args) => {
            serve::run(args, cli.cluster.kubeconfig.clone(), &cli.linkerd_namespace).map(|()| true)
        }
        Command::ProxyInit(args) => iptables::proxy_init(args).map(|()| true),
        Command::NetworkValidator(args) => iptables::network_validator(args),
        Command::Install(args) => install::run(args, &cli.cluster, &cli.linkerd_namespace).map(|()| true),
        Command::Check(args) => check::run(args, &cli.cluster, &cli.linkerd_namespace),
        Command::Reconcile(args) => reconciler::run(args, &cli.cluster, &cli.linkerd_namespace).map(|()| true),
        Command::Status(args) => reconciler::status(args, &cli.cluster, &cli.linkerd_namespace).map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("Error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
