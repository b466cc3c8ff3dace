//! The mutating admission webhook: an HTTPS AdmissionReview server around the injection engine.
//!
//! [`Config`] is the whole configuration; [`run`] serves until SIGTERM or SIGINT.

#![forbid(unsafe_code)]

pub mod admission;
pub mod certs;
pub mod cluster;
pub mod connections;
pub mod handler;
mod json_reader;
pub mod limits;
pub mod metrics;
mod object_view;
pub mod policy_sync;
pub mod registration;
pub mod reload;
pub mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::net::TcpListener;

pub use crate::handler::ErrorPolicy;
use crate::server::Flag;

#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub paths: reload::Paths,
    /// `None`: the in-cluster service account, else `$KUBECONFIG` / `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    pub control_plane_ns: String,
    pub error_policy: ErrorPolicy,
    /// Answer every request "allowed" without a patch (the floor for load benchmarks).
    pub no_op: bool,
    pub limits: limits::Limits,
    pub reload_interval: Duration,
    pub shutdown_grace: Duration,
    /// Keep this admission policy compiled from the loaded configuration.
    pub policy_sync: Option<policy_sync::PolicySync>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("cannot configure the Kubernetes client: {0}")]
    Kube(String),
}

async fn kube_client(kubeconfig: Option<&PathBuf>) -> Result<kube::Client, RunError> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| RunError::Kube(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| RunError::Kube(e.to_string()))?
        }
        None => kube::Config::infer().await.map_err(|e| RunError::Kube(e.to_string()))?,
    };
    kube::Client::try_from(config).map_err(|e| RunError::Kube(e.to_string()))
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr).await.map_err(|source| RunError::Listen { addr, source })
}

/// Resolves on SIGTERM or SIGINT.
async fn termination() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match terminate.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// Raises the soft open-file limit to the hard one: every admission connection is a descriptor,
/// and containers start with a soft limit of 1,024.
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::info!(from = soft, to = hard, "raised the open-file limit"),
            Err(error) => tracing::warn!(soft, hard, %error, "cannot raise the open-file limit"),
        },
        Ok((soft, hard)) => tracing::info!(soft, hard, "open-file limit"),
        Err(error) => tracing::warn!(%error, "cannot read the open-file limit"),
    }
}

pub async fn run(config: Config) -> Result<(), RunError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    raise_open_file_limit();
    tracing::info!(
        body_budget = config.limits.body_budget,
        memory_limit = limits::cgroup_memory_limit(),
        max_in_flight = config.limits.max_in_flight,
        "admission limits"
    );
    let metrics = Arc::new(metrics::Metrics::default());
    let resolver = Arc::new(certs::CertResolver::default());
    let loaded = Arc::new(ArcSwapOption::empty());

    let mut reloader = reload::Reloader::new(
        config.paths.clone(),
        config.control_plane_ns.clone(),
        loaded.clone(),
        resolver.clone(),
        metrics.clone(),
    );
    reloader.check();
    let interval = config.reload_interval;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            reloader.check();
        }
    });

    let client = kube_client(config.kubeconfig.as_ref()).await?;
    let cluster = cluster::Cluster::start(client.clone());
    let synced = Arc::new(Flag::default());
    {
        let (cluster, synced) = (cluster.clone(), synced.clone());
        tokio::spawn(async move {
            cluster.synced().await;
            synced.set();
            tracing::info!("cluster caches synced");
        });
    }
    if let Some(sync) = config.policy_sync.clone() {
        tokio::spawn(policy_sync::run(client.clone(), sync, loaded.clone(), metrics.clone(), config.reload_interval));
    }
    let events = cluster::EventSink::start(client, metrics.clone());

    let admission_listener = bind(config.addr).await?;
    let admin_listener = bind(config.admin_addr).await?;
    tracing::info!(
        addr = %server::local_addr(&admission_listener),
        admin = %server::local_addr(&admin_listener),
        "listening"
    );

    let ready: Arc<dyn Fn() -> bool + Send + Sync> = {
        let (synced, resolver, loaded) = (synced.clone(), resolver.clone(), loaded.clone());
        Arc::new(move || synced.get() && resolver.is_loaded() && loaded.load().is_some())
    };
    let rendered = metrics.clone();
    tokio::spawn(server::serve_admin(admin_listener, Arc::new(move || rendered.render()), ready));

    let handler =
        handler::Handler { loaded, cluster, events, metrics, on_error: config.error_policy, no_op: config.no_op };
    let admission = Arc::new(server::AdmissionServer {
        handler,
        slots: Arc::new(tokio::sync::Semaphore::new(config.limits.max_in_flight)),
        budget: limits::Budget::new(config.limits.body_budget),
        limits: config.limits,
    });
    let tls = Arc::new(certs::server_config(resolver));
    server::serve_admission(admission_listener, tls, admission, termination(), config.shutdown_grace).await;
    Ok(())
}
