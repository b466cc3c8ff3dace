//! What the webhook knows of the cluster, without API calls on the hot path: namespaces,
//! ReplicaSets and Jobs kept in memory by metadata-only watches. Something missing from the cache
//! (just created) is fetched live once.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("namespace {0:?} not found")]
    NamespaceNotFound(String),
    #[error("cannot read namespace {name:?} from the API server: {source}")]
    Api { name: String, source: kube::Error },
}

/// The workload a pod belongs to (§2.4), and the object Events about it are attached to.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedOwner {
    /// Lower-case kind (`deployment`, `replicaset`, `pod`, ...).
    pub kind: String,
    pub name: String,
    pub reference: Option<ObjectReference>,
}

/// What injection and governance read of a namespace.
#[derive(Debug, Clone, Default)]
pub struct NamespaceFacts {
    /// As JSON strings, the form the engine reads annotations in.
    pub annotations: Map<String, Value>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    replica_sets: Store<PartialObjectMeta<ReplicaSet>>,
    jobs: Store<PartialObjectMeta<Job>>,
}

fn watch<K>(client: &kube::Client) -> Store<PartialObjectMeta<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let api = Api::<PartialObjectMeta<K>>::all(client.clone());
    let stream =
        reflector::reflector(writer, watcher(api, watcher::Config::default()).default_backoff()).touched_objects();
    let kind = K::kind(&()).to_string();
    tokio::spawn(async move {
        stream
            .for_each(|event| {
                if let Err(error) = event {
                    tracing::warn!(%kind, %error, "watch error; retrying");
                }
                futures::future::ready(())
            })
            .await;
    });
    reader
}

impl Cluster {
    /// Starts the watches; [`Cluster::synced`] resolves once every cache holds its first list.
    pub fn start(client: kube::Client) -> Self {
        Cluster {
            namespaces: watch::<Namespace>(&client),
            replica_sets: watch::<ReplicaSet>(&client),
            jobs: watch::<Job>(&client),
            client,
        }
    }

    pub async fn synced(&self) {
        let _ = self.namespaces.wait_until_ready().await;
        let _ = self.replica_sets.wait_until_ready().await;
        let _ = self.jobs.wait_until_ready().await;
    }

    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The namespace's annotations, and its labels if asked (a copy per admission otherwise
    /// wasted): from the cache, else one live read.
    pub async fn namespace(&self, name: &str, with_labels: bool) -> Result<NamespaceFacts, ClusterError> {
        // Only the two maps are copied out of the cached object, never the whole metadata.
        let facts = |meta: &ObjectMeta| NamespaceFacts {
            annotations: meta
                .annotations
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
            labels: meta.labels.as_ref().filter(|_| with_labels).cloned().unwrap_or_default(),
        };
        if let Some(cached) = self.namespaces.get(&ObjectRef::new(name)) {
            return Ok(facts(&cached.metadata));
        }
        let api = Api::<Namespace>::all(self.client.clone());
        match api.get_metadata_opt(name).await {
            Ok(Some(fetched)) => Ok(facts(&fetched.metadata)),
            Ok(None) => Err(ClusterError::NamespaceNotFound(name.into())),
            Err(source) => Err(ClusterError::Api { name: name.into(), source }),
        }
    }

    /// Resolves a pod's owner: a ReplicaSet's Deployment (or other single controller), a Job's
    /// CronJob; a pod with no owner, or several, owns itself.
    pub async fn resolve_owner(&self, namespace: &str, pod: &Value) -> ResolvedOwner {
        let pod_name = pod
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .or_else(|| pod.pointer("/metadata/generateName").and_then(Value::as_str))
            .unwrap_or("")
            .to_string();
        let itself = ResolvedOwner { kind: "pod".into(), name: pod_name, reference: None };
        let owners: Vec<OwnerReference> = pod
            .pointer("/metadata/ownerReferences")
            .and_then(|o| serde_json::from_value(o.clone()).ok())
            .unwrap_or_default();
        let [owner] = owners.as_slice() else { return itself };
        let direct = ResolvedOwner {
            kind: owner.kind.to_ascii_lowercase(),
            name: owner.name.clone(),
            reference: Some(reference(owner, namespace)),
        };
        let grand_owners = match owner.kind.as_str() {
            "ReplicaSet" => self.owners_of(&self.replica_sets, namespace, &owner.name).await,
            "Job" => self.owners_of(&self.jobs, namespace, &owner.name).await,
            _ => return direct,
        };
        match grand_owners.as_slice() {
            [grand]
                if owner.kind == "Job"
                    || ["Job", "StatefulSet", "DaemonSet", "Deployment"].contains(&grand.kind.as_str()) =>
            {
                ResolvedOwner {
                    kind: grand.kind.to_ascii_lowercase(),
                    name: grand.name.clone(),
                    reference: Some(reference(grand, namespace)),
                }
            }
            _ => direct,
        }
    }

    /// The owners of a ReplicaSet or Job, from the cache or else read once.
    async fn owners_of<K>(
        &self,
        store: &Store<PartialObjectMeta<K>>,
        namespace: &str,
        name: &str,
    ) -> Vec<OwnerReference>
    where
        K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned,
    {
        let owners = |meta: &ObjectMeta| meta.owner_references.clone().unwrap_or_default();
        if let Some(cached) = store.get(&ObjectRef::new(name).within(namespace)) {
            return owners(&cached.metadata);
        }
        let api = Api::<K>::namespaced(self.client.clone(), namespace);
        api.get_metadata_opt(name).await.ok().flatten().map(|m| owners(&m.metadata)).unwrap_or_default()
    }
}

fn reference(owner: &OwnerReference, namespace: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some(owner.api_version.clone()),
        kind: Some(owner.kind.clone()),
        name: Some(owner.name.clone()),
        namespace: Some(namespace.into()),
        uid: Some(owner.uid.clone()),
        ..ObjectReference::default()
    }
}

/// The same Event about the same object is recorded at most once per window, as client-go's
/// event correlator does: a 1,000-replica rollout makes one `Injected` Event, not 1,000 API writes
/// competing with the pods' own creation.
const EVENT_DEDUPLICATION_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

type EventKey = (String, &'static str, String);

/// Kubernetes Events, recorded off the admission path through a bounded queue.
#[derive(Clone)]
pub struct EventSink {
    queue: tokio::sync::mpsc::Sender<(kube::runtime::events::Event, ObjectReference)>,
    recent: Arc<std::sync::Mutex<std::collections::HashMap<EventKey, std::time::Instant>>>,
}

impl EventSink {
    pub fn start(client: kube::Client, metrics: Arc<crate::metrics::Metrics>) -> Self {
        let (queue, mut receiver) = tokio::sync::mpsc::channel::<(kube::runtime::events::Event, ObjectReference)>(1024);
        let reporter = kube::runtime::events::Reporter { controller: "linkerd-proxy-injector".into(), instance: None };
        let recorder = kube::runtime::events::Recorder::new(client, reporter);
        tokio::spawn(async move {
            while let Some((event, reference)) = receiver.recv().await {
                if let Err(error) = recorder.publish(&event, &reference).await {
                    metrics.event_not_recorded("api_error");
                    tracing::debug!(%error, "event not recorded");
                }
            }
        });
        EventSink { queue, recent: Arc::default() }
    }

    /// Queues an Event unless the same one about the same object was queued within the window;
    /// when the queue is full the Event is dropped and counted, never waited for.
    pub fn record(
        &self,
        metrics: &crate::metrics::Metrics,
        reference: ObjectReference,
        reason: &'static str,
        note: String,
    ) {
        let key = (reference.uid.clone().unwrap_or_default(), reason, note);
        {
            let now = std::time::Instant::now();
            let mut recent = self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if recent.get(&key).is_some_and(|at| now.duration_since(*at) < EVENT_DEDUPLICATION_WINDOW) {
                metrics.event_not_recorded("duplicate");
                return;
            }
            if recent.len() > 10_000 {
                recent.retain(|_, at| now.duration_since(*at) < EVENT_DEDUPLICATION_WINDOW);
            }
            recent.insert(key.clone(), now);
        }
        let (_, reason, note) = key;
        let event = kube::runtime::events::Event {
            type_: kube::runtime::events::EventType::Normal,
            reason: reason.into(),
            note: Some(note),
            action: "Injecting".into(),
            secondary: None,
        };
        if self.queue.try_send((event, reference)).is_err() {
            metrics.event_not_recorded("queue_full");
        }
    }
}
