//! What the reconciler would do, as a pure function of what it observed: the engine's decision
//! for each workload's pod template (as the webhook would take it for a new pod), compared with
//! the pods that run it, then the safety rules and the rate limits.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use governance::selector::LabelSelector;
use inject::annotation as key;
use inject::{Action, Injector, Origin, Owner, Request};
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use serde_json::{Map, Value, json};

/// Namespace or workload annotation that keeps the reconciler's hands off.
pub const OPT_OUT: &str = "config.linkerd.io/reconcile";
/// The template annotation `kubectl rollout restart` sets; the reconciler restarts the same way.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Kind {
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    Job,
    Pod,
}

impl Kind {
    /// Only these are restarted; the others are reported, since restarting them means deleting pods.
    pub fn restartable(self) -> bool {
        matches!(self, Kind::Deployment | Kind::StatefulSet | Kind::DaemonSet)
    }

    /// The owner kind the engine's owner labels use (`linkerd.io/proxy-deployment`, ...).
    fn owner_kind(self) -> &'static str {
        match self {
            Kind::Deployment => "deployment",
            Kind::StatefulSet => "statefulset",
            Kind::DaemonSet => "daemonset",
            Kind::ReplicaSet => "replicaset",
            Kind::Job => "job",
            Kind::Pod => "pod",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// A workload and the pod template its controller creates pods from.
#[derive(Debug, Clone)]
pub struct Workload {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub annotations: BTreeMap<String, String>,
    /// `metadata` and `spec` of the pods it creates (for a bare pod: the pod).
    pub template: Value,
    /// Why a rollout is still in progress, if one is.
    pub rollout: Option<String>,
}

/// One pod, with the workload that owns it resolved (a ReplicaSet's pods belong to its Deployment).
#[derive(Debug, Clone)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub owner: Option<(Kind, String)>,
    pub proxy: Option<Proxy>,
    pub terminating: bool,
}

/// What the pod's injection recorded about its proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    pub version: Option<String>,
    pub fingerprint: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Budget {
    pub namespace: String,
    pub name: String,
    pub selector: LabelSelector,
    pub disruptions_allowed: i32,
}

#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub workloads: Vec<Workload>,
    pub pods: Vec<Pod>,
    /// Namespace annotations, as JSON strings (the engine's form), by namespace name.
    pub namespaces: BTreeMap<String, Map<String, Value>>,
    pub budgets: Vec<Budget>,
}

impl Observed {
    /// Only these namespaces' workloads and pods (a reconciler scoped to some namespaces paces
    /// only their rollouts).
    pub fn retain_namespaces(&mut self, namespaces: &BTreeSet<String>) {
        self.workloads.retain(|w| namespaces.contains(&w.namespace));
        self.pods.retain(|p| namespaces.contains(&p.namespace));
    }
}

/// How carefully restarts are paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Workloads rolling at once (whoever started the rollout) past which no restart is started.
    pub max_rolling: usize,
    /// Time between two restarts.
    pub min_interval: Duration,
    /// A workload restarted this recently (its `restartedAt`) is not restarted again: if its new
    /// pods still need a restart, something else is wrong and a person should look.
    pub retry_after: Duration,
}

/// What the engine would do with a new pod of the workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "meshed")]
pub enum Expectation {
    /// Injected by the webhook, with this proxy.
    #[serde(rename = "yes")]
    Injected { version: String, fingerprint: String },
    /// The template itself carries the proxy (manual injection): left to whoever wrote it.
    #[serde(rename = "in-template")]
    InTemplate,
    #[serde(rename = "no")]
    NotInjected { reason: String },
    /// The engine refused the template (its error).
    #[serde(rename = "unknown")]
    Unknown { reason: String },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodCounts {
    /// With the proxy the current configuration gives.
    pub meshed: usize,
    /// Without a proxy although new pods would get one.
    pub unmeshed: usize,
    /// With a proxy other than the one new pods would get.
    pub stale: usize,
    /// Of the stale ones, those an admission policy compiled from another configuration
    /// injected: while that policy is installed, a restart gives the same proxy again.
    pub stale_by_policy: usize,
    /// With a proxy although new pods would get none.
    pub unwanted: usize,
    /// Without a proxy, as expected.
    pub plain: usize,
}

impl PodCounts {
    fn needing_restart(&self) -> usize {
        self.unmeshed + self.stale + self.unwanted
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "action", content = "reason")]
pub enum Step {
    /// Nothing to do.
    #[serde(rename = "none")]
    Nothing,
    #[serde(rename = "restart")]
    Restart(String),
    /// A restart is needed and waits (opt-out, rollout, budget, rate limit).
    #[serde(rename = "held")]
    Held(String),
    /// A restart is needed and is not the reconciler's to do (Jobs, ReplicaSets, bare pods).
    #[serde(rename = "report")]
    Report(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadReport {
    pub namespace: String,
    pub kind: Kind,
    pub name: String,
    pub expected: Expectation,
    pub pods: PodCounts,
    pub proxy_versions: BTreeSet<String>,
    #[serde(flatten)]
    pub step: Step,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub workloads: Vec<WorkloadReport>,
    /// When a restart held only by `--min-interval` may go ahead: nothing else may change in the
    /// meantime, so the loop must wake by itself.
    #[serde(skip)]
    pub next_restart_in: Option<Duration>,
}

impl Plan {
    pub fn restarts(&self) -> impl Iterator<Item = &WorkloadReport> {
        self.workloads.iter().filter(|w| matches!(w.step, Step::Restart(_)))
    }

    pub fn totals(&self) -> PodCounts {
        self.workloads.iter().fold(PodCounts::default(), |mut sum, w| {
            sum.meshed += w.pods.meshed;
            sum.unmeshed += w.pods.unmeshed;
            sum.stale += w.pods.stale;
            sum.stale_by_policy += w.pods.stale_by_policy;
            sum.unwanted += w.pods.unwanted;
            sum.plain += w.pods.plain;
            sum
        })
    }
}

/// The engine's decision for a new pod of `workload`, as the webhook would take it.
pub fn expectation(
    injector: &Injector,
    workload: &Workload,
    namespace_annotations: Option<&Map<String, Value>>,
) -> Expectation {
    let mut metadata = workload.template.get("metadata").cloned().unwrap_or_else(|| json!({}));
    if let Some(map) = metadata.as_object_mut() {
        map.insert("namespace".into(), workload.namespace.clone().into());
    }
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
        "spec": workload.template.get("spec").cloned().unwrap_or_else(|| json!({}))});
    let owner = Owner { kind: workload.kind.owner_kind(), name: &workload.name };
    let origin = Origin::Webhook { namespace: &workload.namespace, namespace_annotations, owner: Some(owner) };
    let outcome = match injector.evaluate(&Request { object: &pod, kind: Some("Pod"), origin }) {
        Ok(outcome) => outcome,
        Err(error) => return Expectation::Unknown { reason: error.to_string() },
    };
    if outcome.action == Action::Injected {
        let version = outcome
            .written_annotations
            .iter()
            .find(|(k, _, _)| k == key::PROXY_VERSION_STATUS)
            .map(|(_, v, _)| v.clone())
            .unwrap_or_default();
        return Expectation::Injected { version, fingerprint: outcome.fingerprint.unwrap_or_default() };
    }
    if outcome.reasons.contains(&inject::decision::SkipReason::SidecarAlreadyExists) {
        return Expectation::InTemplate;
    }
    let reason = outcome.reasons.iter().map(|r| r.text()).collect::<Vec<_>>().join("; ");
    Expectation::NotInjected { reason }
}

/// `policy_fingerprint`: what pods the admission policy compiled from this configuration carry
/// (it injects what the webhook would, so those pods are as current as the webhook's).
fn classify(expected: &Expectation, proxy: Option<&Proxy>, policy_fingerprint: Option<&str>, counts: &mut PodCounts) {
    match (expected, proxy) {
        (Expectation::Injected { version, fingerprint }, Some(proxy)) => {
            // Pods injected before fingerprints (or by Linkerd's own injector) compare by version.
            let current = match &proxy.fingerprint {
                Some(recorded) => recorded == fingerprint || Some(recorded.as_str()) == policy_fingerprint,
                None => proxy.version.as_deref() == Some(version.as_str()),
            };
            if current {
                counts.meshed += 1;
            } else {
                counts.stale += 1;
                let by_policy =
                    proxy.fingerprint.as_ref().is_some_and(|f| f.starts_with(admission_policy::FINGERPRINT_PREFIX));
                counts.stale_by_policy += usize::from(by_policy);
            }
        }
        (Expectation::Injected { .. }, None) => counts.unmeshed += 1,
        (Expectation::NotInjected { .. }, Some(_)) => counts.unwanted += 1,
        (Expectation::InTemplate | Expectation::Unknown { .. }, Some(_)) => counts.meshed += 1,
        (_, None) => counts.plain += 1,
    }
}

fn why_restart(counts: &PodCounts) -> String {
    let mut parts = Vec::new();
    for (n, what) in [
        (counts.unmeshed, "without the proxy"),
        (counts.stale, "with a stale proxy"),
        (counts.unwanted, "with a proxy that injection no longer gives"),
    ] {
        if n > 0 {
            parts.push(format!("{n} pod{} {what}", if n == 1 { "" } else { "s" }));
        }
    }
    if counts.stale_by_policy > 0 {
        parts.push(format!(
            "{} of them from an admission policy compiled from another configuration (`proxy-injector check`)",
            counts.stale_by_policy
        ));
    }
    parts.join(", ")
}

fn opted_out(annotations: impl IntoIterator<Item = (String, String)>) -> bool {
    annotations.into_iter().any(|(k, v)| k == OPT_OUT && v == "disabled")
}

fn template_labels(template: &Value) -> BTreeMap<String, String> {
    let labels = template.pointer("/metadata/labels").and_then(Value::as_object);
    labels.into_iter().flatten().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect()
}

fn restarted_at(template: &Value) -> Option<Timestamp> {
    let text = template.pointer("/metadata/annotations")?.get(RESTARTED_AT)?.as_str()?;
    text.parse().ok()
}

fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// What this reconciler did, which the objects it watches may not show yet.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    pub last_restart: Option<Timestamp>,
    /// When each workload was restarted, by (namespace, kind, name).
    pub restarted: BTreeMap<(String, Kind, String), Timestamp>,
}

impl Memory {
    pub fn restarted(&mut self, report: &WorkloadReport, at: Timestamp) {
        self.last_restart = Some(at);
        self.restarted.insert((report.namespace.clone(), report.kind, report.name.clone()), at);
    }
}

/// The plan for everything observed; `now` is the clock, passed in so the plan is reproducible.
pub fn plan(injector: &Injector, observed: &Observed, limits: &Limits, memory: &Memory, now: Timestamp) -> Plan {
    let mut pods_by_owner: BTreeMap<(&str, Kind, &str), Vec<&Pod>> = BTreeMap::new();
    for pod in observed.pods.iter().filter(|p| !p.terminating) {
        let owner = match &pod.owner {
            Some((kind, name)) => (*kind, name.as_str()),
            None => (Kind::Pod, pod.name.as_str()),
        };
        pods_by_owner.entry((pod.namespace.as_str(), owner.0, owner.1)).or_default().push(pod);
    }
    let mut workloads: Vec<&Workload> = observed.workloads.iter().collect();
    workloads.sort_by(|a, b| (&a.namespace, a.kind, &a.name).cmp(&(&b.namespace, b.kind, &b.name)));

    // Unsupported configurations (tracing, for one) have no policy, and so no policy pods.
    let policy_fingerprint = admission_policy::fingerprint(injector).ok();
    let mut reports = Vec::new();
    for workload in workloads {
        let namespace_annotations = observed.namespaces.get(&workload.namespace);
        let expected = expectation(injector, workload, namespace_annotations);
        let mut counts = PodCounts::default();
        let mut versions = BTreeSet::new();
        let owned = pods_by_owner.get(&(workload.namespace.as_str(), workload.kind, workload.name.as_str()));
        for pod in owned.into_iter().flatten() {
            classify(&expected, pod.proxy.as_ref(), policy_fingerprint.as_deref(), &mut counts);
            if let Some(version) = pod.proxy.as_ref().and_then(|p| p.version.clone()) {
                versions.insert(version);
            }
        }
        let step = if counts.needing_restart() == 0 {
            Step::Nothing
        } else {
            let remembered = memory.restarted.get(&(workload.namespace.clone(), workload.kind, workload.name.clone()));
            let restarted = restarted_at(&workload.template).max(remembered.copied());
            safety(workload, &counts, namespace_annotations, &observed.budgets, limits, restarted, now)
        };
        reports.push(WorkloadReport {
            namespace: workload.namespace.clone(),
            kind: workload.kind,
            name: workload.name.clone(),
            expected,
            pods: counts,
            proxy_versions: versions,
            step,
        });
    }
    let next_restart_in = pace(&mut reports, observed, limits, memory.last_restart, now);
    Plan { workloads: reports, next_restart_in }
}

/// Whether this workload may be restarted now, leaving the rate limits to [`pace`].
fn safety(
    workload: &Workload,
    counts: &PodCounts,
    namespace_annotations: Option<&Map<String, Value>>,
    budgets: &[Budget],
    limits: &Limits,
    restarted: Option<Timestamp>,
    now: Timestamp,
) -> Step {
    let why = why_restart(counts);
    if !workload.kind.restartable() {
        return Step::Report(format!(
            "{why}; {} pods are not restarted by the reconciler: recreate them",
            workload.kind
        ));
    }
    let namespace_opt_out =
        namespace_annotations.into_iter().flatten().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())));
    if opted_out(namespace_opt_out) {
        return Step::Held(format!("{why}; namespace has {OPT_OUT}: disabled"));
    }
    if opted_out(workload.annotations.clone()) {
        return Step::Held(format!("{why}; workload has {OPT_OUT}: disabled"));
    }
    if let Some(rollout) = &workload.rollout {
        return Step::Held(format!("{why}; rollout in progress ({rollout})"));
    }
    let labels = template_labels(&workload.template);
    let blocking = budgets
        .iter()
        .find(|b| b.namespace == workload.namespace && b.disruptions_allowed <= 0 && b.selector.matches(&labels));
    if let Some(budget) = blocking {
        return Step::Held(format!("{why}; PodDisruptionBudget {} allows no disruption now", budget.name));
    }
    if let Some(at) = restarted {
        let since = Duration::try_from(now.duration_since(at)).unwrap_or_default();
        if since < limits.retry_after {
            let suspect = if counts.stale_by_policy > 0 {
                "is the admission policy compiled from the current linkerd-config?"
            } else {
                "is the webhook reachable?"
            };
            return Step::Held(format!(
                "{why}; restarted {}s ago and not again within {} (its new pods still need a restart: {suspect})",
                since.as_secs(),
                seconds(limits.retry_after)
            ));
        }
    }
    Step::Restart(why)
}

/// The rate limits, in the plan's order: at most `max_rolling` workloads rolling at once, and one
/// restart per `min_interval`.
fn pace(
    reports: &mut [WorkloadReport],
    observed: &Observed,
    limits: &Limits,
    last_restart: Option<Timestamp>,
    now: Timestamp,
) -> Option<Duration> {
    let rolling = observed.workloads.iter().filter(|w| w.kind.restartable() && w.rollout.is_some()).count();
    let mut slots = limits.max_rolling.saturating_sub(rolling);
    let wait = last_restart
        .map(|at| limits.min_interval.saturating_sub(Duration::try_from(now.duration_since(at)).unwrap_or_default()));
    let mut next_allowed = wait.filter(|w| !w.is_zero());
    let mut wake = None;
    for report in reports.iter_mut() {
        let Step::Restart(why) = &report.step else { continue };
        let held = if slots == 0 {
            Some(format!("{why}; {rolling} workloads rolling, at most {} at once", limits.max_rolling))
        } else {
            wake = wake.or(next_allowed);
            next_allowed.map(|w| {
                format!("{why}; next restart in {}s (one every {})", w.as_secs().max(1), seconds(limits.min_interval))
            })
        };
        if let Some(reason) = held {
            report.step = Step::Held(reason);
            continue;
        }
        slots -= 1;
        if !limits.min_interval.is_zero() {
            next_allowed = Some(limits.min_interval);
        }
    }
    wake
}
