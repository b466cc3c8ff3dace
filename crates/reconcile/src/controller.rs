//! The thin I/O around the plan: watches that keep the observed objects current, the
//! configuration the webhook uses, the Lease, and the restarts with their Events and metrics.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use inject::Injector;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ObjectReference, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::lease::Elector;
use crate::metrics::Metrics;
use crate::observe::Objects;
use crate::plan::{self, Kind, Limits, Memory, Observed, Plan, RESTARTED_AT, Step, WorkloadReport};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {what}: {source}")]
    Read { what: String, source: kube::Error },
    #[error("the injector's configuration does not load: {0}")]
    Config(String),
    #[error("cannot restart {kind} {namespace}/{name}: {source}")]
    Restart { kind: Kind, namespace: String, name: String, source: kube::Error },
}

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity.
    pub holder: String,
    /// How long a holder that stops renewing keeps the Lease.
    pub duration: Duration,
}

/// Where the injector's configuration comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The files the webhook reads (when running beside it, from the same volumes).
    Files { values: PathBuf, trust_roots: PathBuf },
    /// The `linkerd-config` and `linkerd-identity-trust-roots` ConfigMaps of the control plane.
    Cluster,
}

impl Source {
    pub async fn load(&self, client: &Client, control_plane_ns: &str) -> Result<Injector, Error> {
        let (values, roots) = match self {
            Source::Files { values, trust_roots } => {
                let read = |path: &PathBuf| {
                    std::fs::read(path).map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))
                };
                (read(values)?, read(trust_roots)?)
            }
            Source::Cluster => {
                let api = Api::<ConfigMap>::namespaced(client.clone(), control_plane_ns);
                let key = |name: &'static str, key: &'static str| {
                    let api = api.clone();
                    async move {
                        let map = api.get(name).await.map_err(|source| Error::Read {
                            what: format!("ConfigMap {control_plane_ns}/{name}"),
                            source,
                        })?;
                        map.data.and_then(|mut d| d.remove(key)).ok_or_else(|| {
                            Error::Config(format!("ConfigMap {control_plane_ns}/{name} has no {key:?} key"))
                        })
                    }
                };
                let values = key("linkerd-config", "values").await?;
                let roots = key("linkerd-identity-trust-roots", "ca-bundle.crt").await?;
                (values.into_bytes(), roots.into_bytes())
            }
        };
        webhook::reload::build(&values, &roots, control_plane_ns).map(|loaded| loaded.injector).map_err(Error::Config)
    }
}

fn to_values<K: Serialize>(objects: impl IntoIterator<Item = K>) -> Vec<Value> {
    objects.into_iter().filter_map(|o| serde_json::to_value(o).ok()).collect()
}

async fn list<K>(client: &Client, what: &str) -> Result<Vec<Value>, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + Serialize + Debug,
    K::DynamicType: Default,
{
    let api = Api::<K>::all(client.clone());
    let list =
        api.list(&ListParams::default()).await.map_err(|source| Error::Read { what: what.to_string(), source })?;
    Ok(to_values(list.items))
}

/// Everything the plan reads, listed once (for `status`).
pub async fn list_objects(client: &Client) -> Result<Objects, Error> {
    let namespaces = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|source| Error::Read { what: "namespaces".into(), source })?;
    Ok(Objects {
        namespaces: to_values(namespaces.items),
        pods: list::<Pod>(client, "pods").await?,
        deployments: list::<Deployment>(client, "deployments").await?,
        stateful_sets: list::<StatefulSet>(client, "statefulsets").await?,
        daemon_sets: list::<DaemonSet>(client, "daemonsets").await?,
        replica_sets: list::<ReplicaSet>(client, "replicasets").await?,
        jobs: list::<Job>(client, "jobs").await?,
        budgets: list::<PodDisruptionBudget>(client, "poddisruptionbudgets").await?,
    })
}

/// A watched kind: its store, kept current by a reflector that wakes the loop on every change.
fn watch<K>(client: &Client, changed: &Arc<Notify>) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(Api::<K>::all(client.clone()), watcher::Config::default()))
        .default_backoff()
        .touched_objects();
    let changed = changed.clone();
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(item) = stream.next().await {
            if let Err(error) = item {
                tracing::warn!(%error, kind = %K::kind(&Default::default()), "watch error (retrying)");
            }
            changed.notify_one();
        }
    });
    reader
}

struct Stores {
    namespaces: Store<Namespace>,
    pods: Store<Pod>,
    deployments: Store<Deployment>,
    stateful_sets: Store<StatefulSet>,
    daemon_sets: Store<DaemonSet>,
    replica_sets: Store<ReplicaSet>,
    jobs: Store<Job>,
    budgets: Store<PodDisruptionBudget>,
}

fn values_of<K>(store: &Store<K>) -> Vec<Value>
where
    K: Resource + Serialize + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store.state().iter().filter_map(|o| serde_json::to_value(o.as_ref()).ok()).collect()
}

impl Stores {
    fn start(client: &Client, changed: &Arc<Notify>) -> Self {
        Stores {
            namespaces: watch(client, changed),
            pods: watch(client, changed),
            deployments: watch(client, changed),
            stateful_sets: watch(client, changed),
            daemon_sets: watch(client, changed),
            replica_sets: watch(client, changed),
            jobs: watch(client, changed),
            budgets: watch(client, changed),
        }
    }

    async fn ready(&self) {
        let _ = self.namespaces.wait_until_ready().await;
        let _ = self.pods.wait_until_ready().await;
        let _ = self.deployments.wait_until_ready().await;
        let _ = self.stateful_sets.wait_until_ready().await;
        let _ = self.daemon_sets.wait_until_ready().await;
        let _ = self.replica_sets.wait_until_ready().await;
        let _ = self.jobs.wait_until_ready().await;
        let _ = self.budgets.wait_until_ready().await;
    }

    fn objects(&self) -> Objects {
        Objects {
            namespaces: values_of(&self.namespaces),
            pods: values_of(&self.pods),
            deployments: values_of(&self.deployments),
            stateful_sets: values_of(&self.stateful_sets),
            daemon_sets: values_of(&self.daemon_sets),
            replica_sets: values_of(&self.replica_sets),
            jobs: values_of(&self.jobs),
            budgets: values_of(&self.budgets),
        }
    }
}

/// The reconciler's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: Source,
    pub control_plane_ns: String,
    pub limits: Limits,
    /// Plan and report, never restart.
    pub dry_run: bool,
    /// Re-plan at least this often, even without a change.
    pub resync: Duration,
    /// The Lease that elects the acting replica; `None`: always act.
    pub lease: Option<LeaseConfig>,
    /// Only these namespaces; empty: all.
    pub namespaces: BTreeSet<String>,
}

/// What the plan reads, limited to `namespaces` unless that is empty.
pub fn observe(objects: &Objects, namespaces: &BTreeSet<String>) -> Observed {
    let mut observed = objects.observe();
    if !namespaces.is_empty() {
        observed.retain_namespaces(namespaces);
    }
    observed
}

/// The restart `kubectl rollout restart` does: a new template annotation, so the workload's own
/// controller replaces its pods at its own pace and under its own update strategy.
async fn restart(client: &Client, report: &WorkloadReport, at: Timestamp) -> Result<(), kube::Error> {
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: at.to_string()}}}}});
    match report.kind {
        Kind::Deployment => patch_workload::<Deployment>(client, report, &patch).await,
        Kind::StatefulSet => patch_workload::<StatefulSet>(client, report, &patch).await,
        Kind::DaemonSet => patch_workload::<DaemonSet>(client, report, &patch).await,
        Kind::ReplicaSet | Kind::Job | Kind::Pod => Ok(()),
    }
}

async fn patch_workload<K>(client: &Client, report: &WorkloadReport, patch: &Value) -> Result<(), kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    let api = Api::<K>::namespaced(client.clone(), &report.namespace);
    api.patch(&report.name, &PatchParams::default(), &Patch::Merge(patch)).await.map(drop)
}

fn reference(report: &WorkloadReport) -> ObjectReference {
    let api_version = match report.kind {
        Kind::Deployment | Kind::StatefulSet | Kind::DaemonSet | Kind::ReplicaSet => "apps/v1",
        Kind::Job => "batch/v1",
        Kind::Pod => "v1",
    };
    ObjectReference {
        api_version: Some(api_version.into()),
        kind: Some(report.kind.to_string()),
        namespace: Some(report.namespace.clone()),
        name: Some(report.name.clone()),
        ..ObjectReference::default()
    }
}

/// Runs until the process stops: watch, plan, act when leading.
pub async fn run(client: Client, config: Config, metrics: Arc<Metrics>) -> Result<(), Error> {
    let changed = Arc::new(Notify::new());
    let stores = Stores::start(&client, &changed);
    stores.ready().await;
    let holder = config.lease.as_ref().map_or_else(|| "reconciler".to_string(), |l| l.holder.clone());
    let elector = config
        .lease
        .as_ref()
        .map(|l| Elector::new(client.clone(), &l.namespace, &l.name, l.holder.clone(), l.duration));
    let recorder = recorder(&client, holder);
    let mut memory = Memory::default();
    let mut last_logged: Option<Plan> = None;
    tracing::info!(dry_run = config.dry_run, "reconciler watching");
    loop {
        // Batch the burst of changes a rollout causes into one pass.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let leading = match &elector {
            None => true,
            Some(elector) => match elector.try_lead().await {
                Ok(leading) => leading,
                Err(error) => {
                    tracing::warn!(%error, "cannot read or renew the reconciler Lease; not acting");
                    false
                }
            },
        };
        metrics.leader.set(i64::from(leading));
        let mut wait = config.resync;
        match config.source.load(&client, &config.control_plane_ns).await {
            Err(error) => {
                metrics.config_errors.inc();
                tracing::warn!(%error, "not reconciling");
            }
            Ok(injector) => {
                let observed = observe(&stores.objects(), &config.namespaces);
                let plan = plan::plan(&injector, &observed, &config.limits, &memory, Timestamp::now());
                metrics.observe(&plan);
                // A held restart's countdown is not a change worth a log line.
                if last_logged.as_ref().map(|p| &p.workloads) != Some(&plan.workloads) {
                    log_plan(&plan, leading, config.dry_run);
                    last_logged = Some(plan.clone());
                }
                if leading && !config.dry_run {
                    act(&client, &recorder, &plan, &mut memory, &metrics).await;
                    wait = plan.next_restart_in.map_or(wait, |next| next.min(wait));
                }
            }
        }
        let _ = tokio::time::timeout(wait, changed.notified()).await;
    }
}

fn log_plan(plan: &Plan, leading: bool, dry_run: bool) {
    let totals = plan.totals();
    tracing::info!(
        leading,
        dry_run,
        meshed = totals.meshed,
        unmeshed = totals.unmeshed,
        stale = totals.stale,
        unwanted = totals.unwanted,
        "pods observed"
    );
    for workload in &plan.workloads {
        let (step, why) = match &workload.step {
            Step::Nothing => continue,
            Step::Restart(why) => ("restart", why),
            Step::Held(why) => ("held", why),
            Step::Report(why) => ("report", why),
        };
        tracing::info!(namespace = %workload.namespace, kind = %workload.kind, name = %workload.name, step, reason = %why, "plan");
    }
}

fn recorder(client: &Client, instance: String) -> Recorder {
    Recorder::new(client.clone(), Reporter { controller: "proxy-injector-reconciler".into(), instance: Some(instance) })
}

/// The restarts of one plan, without a Lease (`reconcile --once`); fails if any restart failed.
pub async fn act_on(client: &Client, plan: &Plan) -> Result<(), Error> {
    let recorder = recorder(client, "once".into());
    act(client, &recorder, plan, &mut Memory::default(), &Metrics::default()).await.map_or(Ok(()), Err)
}

/// The plan's restarts, each with a log line, an Event on the workload and a metric. Returns the
/// last restart that failed, if any.
async fn act(
    client: &Client,
    recorder: &Recorder,
    plan: &Plan,
    memory: &mut Memory,
    metrics: &Metrics,
) -> Option<Error> {
    let mut failed = None;
    for report in plan.restarts() {
        let Step::Restart(why) = &report.step else { continue };
        let at = Timestamp::now();
        if let Err(source) = restart(client, report, at).await {
            let error = Error::Restart {
                kind: report.kind,
                namespace: report.namespace.clone(),
                name: report.name.clone(),
                source,
            };
            metrics.restart_errors.inc();
            tracing::warn!(%error, "restart failed");
            failed = Some(error);
            continue;
        }
        memory.restarted(report, at);
        metrics.restarted(report.kind);
        tracing::info!(namespace = %report.namespace, kind = %report.kind, name = %report.name, reason = %why, "restarted");
        let event = Event {
            type_: EventType::Normal,
            reason: "ProxyRestart".into(),
            note: Some(format!("restarted by the Linkerd proxy injector's reconciler: {why}")),
            action: "Restart".into(),
            secondary: None,
        };
        if let Err(error) = recorder.publish(&event, &reference(report)).await {
            tracing::warn!(%error, "cannot record the restart Event");
        }
    }
    failed
}
