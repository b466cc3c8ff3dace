//! The few cluster reads the command line makes: the control plane's `linkerd-config` values and
//! a namespace's annotations.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::Args;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Map, Value};

/// How to reach the cluster, as kubectl's flags say it.
#[derive(Debug, Clone, Default, Args)]
pub struct ClusterArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster)
    #[arg(long, global = true, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Name of the kubeconfig context to use
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// User to impersonate for Kubernetes operations
    #[arg(long = "as", global = true)]
    pub impersonate: Option<String>,
    /// Group to impersonate for Kubernetes operations (repeatable)
    #[arg(long = "as-group", global = true)]
    pub impersonate_groups: Vec<String>,
    /// Override the Kubernetes API server address from the kubeconfig
    #[arg(long, global = true)]
    pub api_addr: Option<String>,
}

impl ClusterArgs {
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let options = KubeConfigOptions { context: self.context.clone(), ..KubeConfigOptions::default() };
        let mut config = match &self.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?
            }
            None if self.context.is_some() => kube::Config::from_kubeconfig(&options).await?,
            None => kube::Config::infer().await?,
        };
        if let Some(address) = &self.api_addr {
            config.cluster_url = address.parse().with_context(|| format!("invalid --api-addr {address:?}"))?;
        }
        if let Some(user) = &self.impersonate {
            config.auth_info.impersonate = Some(user.clone());
        }
        if !self.impersonate_groups.is_empty() {
            config.auth_info.impersonate_groups = Some(self.impersonate_groups.clone());
        }
        config.connect_timeout = Some(Duration::from_secs(10));
        config.read_timeout = Some(Duration::from_secs(30));
        Ok(kube::Client::try_from(config)?)
    }

    /// The `values` key of the `linkerd-config` ConfigMap in the control-plane namespace.
    pub fn linkerd_values(&self, control_plane_ns: &str) -> anyhow::Result<String> {
        let hint = "use --values FILE to give the configuration, or --ignore-cluster for the chart defaults";
        block_on(async {
            let client = self.client().await?;
            let api = kube::Api::<ConfigMap>::namespaced(client, control_plane_ns);
            let config_map = api.get("linkerd-config").await?;
            config_map
                .data
                .and_then(|mut data| data.remove("values"))
                .ok_or_else(|| anyhow!("ConfigMap {control_plane_ns}/linkerd-config has no \"values\" key"))
        })
        .with_context(|| format!("cannot read the Linkerd configuration from the cluster; {hint}"))
    }

    /// A namespace's annotations (as JSON strings, as the engine reads them) and labels.
    pub fn namespace(&self, name: &str) -> anyhow::Result<(Map<String, Value>, BTreeMap<String, String>)> {
        block_on(async {
            let client = self.client().await?;
            let namespace = kube::Api::<Namespace>::all(client).get(name).await?;
            let annotations = namespace.metadata.annotations.unwrap_or_default();
            let annotations = annotations.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
            Ok((annotations, namespace.metadata.labels.unwrap_or_default()))
        })
        .with_context(|| format!("cannot read namespace {name:?} from the cluster"))
    }
}

fn block_on<T>(future: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(future)
}
