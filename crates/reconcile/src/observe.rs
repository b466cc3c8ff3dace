//! From the objects the apiserver serves (as JSON) to the facts the plan reads.

use std::collections::BTreeMap;

use governance::selector::LabelSelector;
use inject::annotation as key;
use inject::render::PROXY_CONTAINER;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::plan::{Budget, Kind, Observed, Pod, Proxy, Workload};

/// The objects of one observation, each list as the apiserver returns it.
#[derive(Debug, Default)]
pub struct Objects {
    pub namespaces: Vec<Value>,
    pub pods: Vec<Value>,
    pub deployments: Vec<Value>,
    pub stateful_sets: Vec<Value>,
    pub daemon_sets: Vec<Value>,
    pub replica_sets: Vec<Value>,
    pub jobs: Vec<Value>,
    pub budgets: Vec<Value>,
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn number(object: &Value, pointer: &str) -> Option<i64> {
    object.pointer(pointer).and_then(Value::as_i64)
}

fn string_map(object: &Value, pointer: &str) -> BTreeMap<String, String> {
    let map = object.pointer(pointer).and_then(Value::as_object);
    map.into_iter().flatten().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect()
}

/// The owner reference with `controller: true`: (kind, name).
fn controller(object: &Value) -> Option<(&str, &str)> {
    let references = object.pointer("/metadata/ownerReferences")?.as_array()?;
    references
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|r| (text(r, "/kind"), text(r, "/name")))
}

/// Why the workload's rollout is not finished, as its controller reports it.
fn rollout(kind: Kind, object: &Value) -> Option<String> {
    let generation = number(object, "/metadata/generation").unwrap_or(0);
    let observed = number(object, "/status/observedGeneration").unwrap_or(0);
    if observed < generation {
        return Some(format!("its controller has not yet observed generation {generation}"));
    }
    let replicas = || number(object, "/spec/replicas").unwrap_or(1);
    let updated = number(object, "/status/updatedReplicas").unwrap_or(0);
    match kind {
        Kind::Deployment => {
            if object.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
                return Some("paused".into());
            }
            let total = number(object, "/status/replicas").unwrap_or(0);
            if updated < replicas() {
                return Some(format!("{updated} of {} pods updated", replicas()));
            }
            (total > updated).then(|| format!("{} old pods remain", total - updated))
        }
        Kind::StatefulSet => {
            let current = text(object, "/status/currentRevision");
            let update = text(object, "/status/updateRevision");
            if !current.is_empty() && !update.is_empty() && current != update {
                return Some(format!("pods at revision {current} remain"));
            }
            (updated < replicas()).then(|| format!("{updated} of {} pods updated", replicas()))
        }
        Kind::DaemonSet => {
            let desired = number(object, "/status/desiredNumberScheduled").unwrap_or(0);
            let updated = number(object, "/status/updatedNumberScheduled").unwrap_or(0);
            (updated < desired).then(|| format!("{updated} of {desired} pods updated"))
        }
        Kind::ReplicaSet | Kind::Job | Kind::Pod => None,
    }
}

fn workload(kind: Kind, object: &Value) -> Workload {
    let template = match kind {
        Kind::Pod => object.clone(),
        _ => object.pointer("/spec/template").cloned().unwrap_or(Value::Null),
    };
    Workload {
        kind,
        namespace: text(object, "/metadata/namespace").to_string(),
        name: text(object, "/metadata/name").to_string(),
        annotations: string_map(object, "/metadata/annotations"),
        template,
        rollout: rollout(kind, object),
    }
}

fn proxy(pod: &Value) -> Option<Proxy> {
    let named_proxy = |list: &str| {
        pod.pointer(list)
            .and_then(Value::as_array)
            .is_some_and(|containers| containers.iter().any(|c| text(c, "/name") == PROXY_CONTAINER))
    };
    if !named_proxy("/spec/containers") && !named_proxy("/spec/initContainers") {
        return None;
    }
    let annotations = string_map(pod, "/metadata/annotations");
    Some(Proxy {
        version: annotations.get(key::PROXY_VERSION_STATUS).cloned(),
        fingerprint: annotations.get(inject::FINGERPRINT).cloned(),
    })
}

impl Objects {
    /// The facts, with each pod attributed to the workload whose template it was created from.
    pub fn observe(&self) -> Observed {
        let mut workloads = Vec::new();
        for (kind, list) in [
            (Kind::Deployment, &self.deployments),
            (Kind::StatefulSet, &self.stateful_sets),
            (Kind::DaemonSet, &self.daemon_sets),
            (Kind::Job, &self.jobs),
        ] {
            workloads.extend(list.iter().map(|o| workload(kind, o)));
        }
        // A ReplicaSet with a Deployment is that Deployment's; one without is a workload itself.
        let mut replica_set_owner = BTreeMap::new();
        for set in &self.replica_sets {
            let id = (text(set, "/metadata/namespace"), text(set, "/metadata/name"));
            match controller(set) {
                Some(("Deployment", deployment)) => {
                    replica_set_owner.insert(id, (Kind::Deployment, deployment.to_string()));
                }
                _ => workloads.push(workload(Kind::ReplicaSet, set)),
            }
        }
        let mut pods = Vec::new();
        for pod in &self.pods {
            let namespace = text(pod, "/metadata/namespace");
            let name = text(pod, "/metadata/name");
            let owner = match controller(pod) {
                Some(("ReplicaSet", set)) => {
                    replica_set_owner.get(&(namespace, set)).cloned().unwrap_or((Kind::ReplicaSet, set.to_string()))
                }
                Some(("StatefulSet", set)) => (Kind::StatefulSet, set.to_string()),
                Some(("DaemonSet", set)) => (Kind::DaemonSet, set.to_string()),
                Some(("Job", job)) => (Kind::Job, job.to_string()),
                // Bare pods, and pods of controllers the reconciler does not know, are their own.
                _ => {
                    workloads.push(workload(Kind::Pod, pod));
                    (Kind::Pod, name.to_string())
                }
            };
            pods.push(Pod {
                namespace: namespace.to_string(),
                name: name.to_string(),
                owner: Some(owner),
                proxy: proxy(pod),
                terminating: pod.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()),
            });
        }
        let namespaces = self
            .namespaces
            .iter()
            .map(|ns| {
                let annotations: Map<String, Value> =
                    string_map(ns, "/metadata/annotations").into_iter().map(|(k, v)| (k, Value::String(v))).collect();
                (text(ns, "/metadata/name").to_string(), annotations)
            })
            .collect();
        let budgets = self
            .budgets
            .iter()
            .filter_map(|b| {
                // A budget without a selector selects nothing (policy/v1); one whose selector does
                // not read as a selector is taken to select everything, so it holds restarts.
                let selector = b.pointer("/spec/selector").filter(|s| !s.is_null())?;
                let selector = LabelSelector::deserialize(selector).unwrap_or_default();
                Some(Budget {
                    namespace: text(b, "/metadata/namespace").to_string(),
                    name: text(b, "/metadata/name").to_string(),
                    selector,
                    disruptions_allowed: number(b, "/status/disruptionsAllowed").unwrap_or(0) as i32,
                })
            })
            .collect();
        Observed { workloads, pods, namespaces, budgets }
    }
}
