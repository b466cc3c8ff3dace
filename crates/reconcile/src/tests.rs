use std::time::Duration;

use inject::Injector;
use inject::values::ValuesDocument;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::observe::Objects;
use crate::plan::{self, Expectation, Kind, Limits, Memory, Observed, Step};

const LIMITS: Limits = Limits { max_rolling: 2, min_interval: Duration::ZERO, retry_after: Duration::from_secs(600) };

fn injector(version: &str) -> Injector {
    let values = json!({"identityTrustAnchorsPEM": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        "proxy": {"image": {"version": version}}});
    Injector::new(ValuesDocument::from_value(values).unwrap(), "linkerd").unwrap()
}

fn now() -> Timestamp {
    "2026-12-02T12:00:00Z".parse().unwrap()
}

fn namespace(name: &str, annotations: Value) -> Value {
    json!({"metadata": {"name": name, "annotations": annotations}})
}

fn deployment(ns: &str, name: &str) -> Value {
    json!({"metadata": {"namespace": ns, "name": name, "generation": 1},
        "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "app", "image": "app:1", "ports": [{"containerPort": 8080}]}]}}},
        "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2}})
}

fn replica_set(ns: &str, deployment: &str) -> Value {
    json!({"metadata": {"namespace": ns, "name": format!("{deployment}-abc"),
        "ownerReferences": [{"kind": "Deployment", "name": deployment, "controller": true}]}})
}

/// A pod of the workload's ReplicaSet; `annotations` of an injected pod when `proxied`.
fn pod(ns: &str, name: &str, owner: (&str, &str), proxied: Option<Value>) -> Value {
    let mut containers = vec![json!({"name": "app", "image": "app:1"})];
    if proxied.is_some() {
        containers.push(json!({"name": "linkerd-proxy", "image": "cr.l5d.io/linkerd/proxy:x"}));
    }
    json!({"metadata": {"namespace": ns, "name": name, "annotations": proxied.unwrap_or(json!({})),
        "ownerReferences": [{"kind": owner.0, "name": owner.1, "controller": true}]},
        "spec": {"containers": containers}})
}

/// A namespace `shop` with injection enabled, Deployment `web` (ReplicaSet `web-abc`) and its pods.
fn shop(pods: Vec<Value>) -> Objects {
    Objects {
        namespaces: vec![namespace("shop", json!({"linkerd.io/inject": "enabled"}))],
        deployments: vec![deployment("shop", "web")],
        replica_sets: vec![replica_set("shop", "web")],
        pods,
        ..Objects::default()
    }
}

fn web_fingerprint(injector: &Injector, observed: &Observed) -> (String, String) {
    let web = observed.workloads.iter().find(|w| w.name == "web").unwrap();
    match plan::expectation(injector, web, observed.namespaces.get("shop")) {
        Expectation::Injected { version, fingerprint } => (version, fingerprint),
        other => panic!("web should be injected, is {other:?}"),
    }
}

fn plan_of(injector: &Injector, objects: &Objects) -> plan::Plan {
    plan::plan(injector, &objects.observe(), &LIMITS, &Memory::default(), now())
}

fn step_of<'a>(plan: &'a plan::Plan, name: &str) -> &'a Step {
    &plan.workloads.iter().find(|w| w.name == name).unwrap_or_else(|| panic!("no workload {name}")).step
}

#[test]
fn pods_admitted_without_the_proxy_restart_their_deployment() {
    let injector = injector("v2");
    let objects = shop(vec![
        pod("shop", "web-abc-1", ("ReplicaSet", "web-abc"), None),
        pod("shop", "web-abc-2", ("ReplicaSet", "web-abc"), None),
    ]);
    let plan = plan_of(&injector, &objects);
    let web = &plan.workloads[0];
    assert_eq!((web.kind, web.name.as_str()), (Kind::Deployment, "web"));
    assert_eq!(web.pods.unmeshed, 2);
    assert_eq!(web.step, Step::Restart("2 pods without the proxy".into()));
    assert!(matches!(&web.expected, Expectation::Injected { version, .. } if version == "v2"));
}

#[test]
fn the_fingerprint_tells_current_from_stale_and_the_version_is_the_fallback() {
    let injector = injector("v2");
    let (version, fingerprint) = web_fingerprint(&injector, &shop(vec![]).observe());
    assert!(!fingerprint.is_empty());
    let pods = vec![
        pod(
            "shop",
            "current",
            ("ReplicaSet", "web-abc"),
            Some(json!({inject::FINGERPRINT: fingerprint, "linkerd.io/proxy-version": version})),
        ),
        pod(
            "shop",
            "other-config",
            ("ReplicaSet", "web-abc"),
            Some(json!({inject::FINGERPRINT: "0000", "linkerd.io/proxy-version": "v2"})),
        ),
        pod("shop", "same-version", ("ReplicaSet", "web-abc"), Some(json!({"linkerd.io/proxy-version": "v2"}))),
        pod("shop", "old-version", ("ReplicaSet", "web-abc"), Some(json!({"linkerd.io/proxy-version": "v1"}))),
    ];
    let plan = plan_of(&injector, &shop(pods));
    let web = &plan.workloads[0];
    assert_eq!((web.pods.meshed, web.pods.stale), (2, 2));
    assert_eq!(web.proxy_versions.iter().map(String::as_str).collect::<Vec<_>>(), ["v1", "v2"]);
    assert_eq!(web.step, Step::Restart("2 pods with a stale proxy".into()));
}

#[test]
fn a_pod_the_current_admission_policy_injected_is_current_and_an_older_policys_is_stale() {
    let (current, upgraded) = (injector("v2"), injector("v3"));
    let by_policy = admission_policy::fingerprint(&current).unwrap();
    assert!(by_policy.starts_with(admission_policy::FINGERPRINT_PREFIX));
    let annotations =
        |fingerprint: &str| Some(json!({inject::FINGERPRINT: fingerprint, "linkerd.io/proxy-version": "v2"}));
    let pods = vec![
        pod("shop", "current", ("ReplicaSet", "web-abc"), annotations(&by_policy)),
        pod("shop", "older-policy", ("ReplicaSet", "web-abc"), annotations("policy-0123456789abcdef")),
    ];
    let plan = plan_of(&current, &shop(pods));
    assert_eq!((plan.workloads[0].pods.meshed, plan.workloads[0].pods.stale), (1, 1));
    assert_eq!(plan.workloads[0].pods.stale_by_policy, 1);
    assert_eq!(
        plan.workloads[0].step,
        Step::Restart(
            "1 pod with a stale proxy, 1 of them from an admission policy compiled from another configuration \
             (`proxy-injector check`)"
                .into()
        )
    );
    let after_upgrade =
        plan_of(&upgraded, &shop(vec![pod("shop", "p", ("ReplicaSet", "web-abc"), annotations(&by_policy))]));
    assert_eq!(after_upgrade.workloads[0].pods.stale, 1, "a policy compiled from the old configuration is stale");
}

#[test]
fn a_fresh_pod_is_current_and_nothing_is_done() {
    let injector = injector("v2");
    let (version, fingerprint) = web_fingerprint(&injector, &shop(vec![]).observe());
    let annotations = json!({inject::FINGERPRINT: fingerprint, "linkerd.io/proxy-version": version});
    let plan = plan_of(&injector, &shop(vec![pod("shop", "p", ("ReplicaSet", "web-abc"), Some(annotations))]));
    assert_eq!(plan.workloads[0].step, Step::Nothing);
    assert_eq!(plan.totals().meshed, 1);
}

#[test]
fn a_proxy_where_injection_is_now_off_is_unwanted() {
    let injector = injector("v2");
    let mut objects = shop(vec![pod("shop", "p", ("ReplicaSet", "web-abc"), Some(json!({})))]);
    objects.namespaces = vec![namespace("shop", json!({}))];
    let plan = plan_of(&injector, &objects);
    assert_eq!(plan.workloads[0].pods.unwanted, 1);
    assert!(
        matches!(&plan.workloads[0].expected, Expectation::NotInjected { reason } if reason.contains("linkerd.io/inject"))
    );
    assert_eq!(plan.workloads[0].step, Step::Restart("1 pod with a proxy that injection no longer gives".into()));
}

#[test]
fn opt_outs_rollouts_budgets_and_recent_restarts_hold_the_restart() {
    let injector = injector("v2");
    let unmeshed = || vec![pod("shop", "p", ("ReplicaSet", "web-abc"), None)];
    let held = |objects: &Objects, needle: &str| match step_of(&plan_of(&injector, objects), "web") {
        Step::Held(why) => assert!(why.contains(needle), "{why:?} should say {needle:?}"),
        other => panic!("expected held ({needle}), got {other:?}"),
    };

    let mut objects = shop(unmeshed());
    objects.namespaces = vec![namespace("shop", json!({"linkerd.io/inject": "enabled", plan::OPT_OUT: "disabled"}))];
    held(&objects, "namespace has config.linkerd.io/reconcile: disabled");

    let mut objects = shop(unmeshed());
    objects.deployments[0]["metadata"]["annotations"] = json!({plan::OPT_OUT: "disabled"});
    held(&objects, "workload has");

    let mut objects = shop(unmeshed());
    objects.deployments[0]["status"]["updatedReplicas"] = json!(1);
    held(&objects, "rollout in progress (1 of 2 pods updated)");

    let mut objects = shop(unmeshed());
    objects.deployments[0]["metadata"]["generation"] = json!(2);
    held(&objects, "not yet observed generation 2");

    let budget = |selector: Value, allowed: i64| {
        json!({"metadata": {"namespace": "shop", "name": "web-pdb"}, "spec": {"selector": selector},
            "status": {"disruptionsAllowed": allowed}})
    };
    let mut objects = shop(unmeshed());
    objects.budgets = vec![budget(json!({"matchLabels": {"app": "web"}}), 0)];
    held(&objects, "PodDisruptionBudget web-pdb allows no disruption");
    objects.budgets =
        vec![budget(json!({"matchLabels": {"app": "other"}}), 0), budget(json!({"matchLabels": {"app": "web"}}), 1)];
    assert!(matches!(step_of(&plan_of(&injector, &objects), "web"), Step::Restart(_)));
    objects.budgets = vec![budget(json!({"matchLabels": "not a map"}), 0)];
    held(&objects, "PodDisruptionBudget web-pdb");

    let mut objects = shop(unmeshed());
    objects.deployments[0]["spec"]["template"]["metadata"]["annotations"] =
        json!({plan::RESTARTED_AT: "2026-12-02T11:58:00Z"});
    held(&objects, "restarted 120s ago and not again within 600s");
    objects.deployments[0]["spec"]["template"]["metadata"]["annotations"] =
        json!({plan::RESTARTED_AT: "2026-12-02T11:00:00Z"});
    assert!(matches!(step_of(&plan_of(&injector, &objects), "web"), Step::Restart(_)));
}

#[test]
fn the_reconcilers_own_restarts_count_before_the_watch_shows_them() {
    let injector = injector("v2");
    let objects = shop(vec![pod("shop", "p", ("ReplicaSet", "web-abc"), None)]);
    let observed = objects.observe();
    let first = plan::plan(&injector, &observed, &LIMITS, &Memory::default(), now());
    let mut memory = Memory::default();
    memory.restarted(&first.workloads[0], now());
    let second = plan::plan(&injector, &observed, &LIMITS, &memory, now() + SignedDuration::from_secs(1));
    assert!(matches!(&second.workloads[0].step, Step::Held(why) if why.contains("restarted 1s ago")));
}

fn fleet(n: usize) -> Objects {
    let mut objects =
        Objects { namespaces: vec![namespace("shop", json!({"linkerd.io/inject": "enabled"}))], ..Objects::default() };
    for i in 0..n {
        let name = format!("web{i}");
        objects.deployments.push(deployment("shop", &name));
        objects.replica_sets.push(replica_set("shop", &name));
        objects.pods.push(pod("shop", &format!("{name}-abc-1"), ("ReplicaSet", &format!("{name}-abc")), None));
    }
    objects
}

#[test]
fn at_most_max_rolling_workloads_roll_and_one_restart_per_interval() {
    let injector = injector("v2");
    let mut objects = fleet(4);
    objects.deployments[3]["status"]["updatedReplicas"] = json!(0);
    let plan = plan_of(&injector, &objects);
    let steps: Vec<&Step> = plan.workloads.iter().map(|w| &w.step).collect();
    // web3 is rolling: one of the two slots is taken.
    assert!(matches!(steps[0], Step::Restart(_)));
    assert!(matches!(steps[1], Step::Held(why) if why.contains("1 workloads rolling, at most 2 at once")));
    assert!(matches!(steps[3], Step::Held(why) if why.contains("rollout in progress")));

    let paced = Limits { max_rolling: 10, min_interval: Duration::from_secs(10), ..LIMITS };
    let observed = fleet(3).observe();
    let plan = plan::plan(&injector, &observed, &paced, &Memory::default(), now());
    assert_eq!(plan.restarts().count(), 1);
    assert!(matches!(&plan.workloads[1].step, Step::Held(why) if why.contains("next restart in 10s (one every 10s)")));
    assert_eq!(plan.next_restart_in, Some(Duration::from_secs(10)), "the loop wakes when the next may go");
    let memory = Memory { last_restart: Some(now() - SignedDuration::from_secs(3)), ..Memory::default() };
    let plan = plan::plan(&injector, &observed, &paced, &memory, now());
    assert_eq!(plan.restarts().count(), 0);
    assert!(matches!(&plan.workloads[0].step, Step::Held(why) if why.contains("next restart in 7s")));
    assert_eq!(plan.next_restart_in, Some(Duration::from_secs(7)));
    let rolling_only = plan::plan(&injector, &objects.observe(), &LIMITS, &Memory::default(), now());
    assert_eq!(rolling_only.next_restart_in, None, "a rollout's end is a change the watch sees");
}

#[test]
fn jobs_replica_sets_and_bare_pods_are_reported_not_restarted() {
    let injector = injector("v2");
    let mut objects = shop(vec![]);
    objects.jobs = vec![json!({"metadata": {"namespace": "shop", "name": "migrate"},
        "spec": {"template": {"spec": {"containers": [{"name": "m", "image": "m"}]}}}})];
    objects.replica_sets.push(json!({"metadata": {"namespace": "shop", "name": "loose"},
        "spec": {"template": {"spec": {"containers": [{"name": "l", "image": "l"}]}}}}));
    objects.pods = vec![
        pod("shop", "migrate-x", ("Job", "migrate"), None),
        pod("shop", "loose-x", ("ReplicaSet", "loose"), None),
        json!({"metadata": {"namespace": "shop", "name": "bare"}, "spec": {"containers": [{"name": "b", "image": "b"}]}}),
    ];
    let plan = plan_of(&injector, &objects);
    for (name, kind) in [("migrate", "Job"), ("loose", "ReplicaSet"), ("bare", "Pod")] {
        assert!(
            matches!(step_of(&plan, name), Step::Report(why) if why.starts_with("1 pod without the proxy") && why.contains(&format!("{kind} pods are not restarted"))),
            "{name}: {:?}",
            step_of(&plan, name)
        );
    }
}

#[test]
fn terminating_pods_and_old_replica_sets_are_attributed_correctly() {
    let injector = injector("v2");
    let mut terminating = pod("shop", "going", ("ReplicaSet", "web-abc"), None);
    terminating["metadata"]["deletionTimestamp"] = json!("2026-12-02T11:59:00Z");
    let mut objects = shop(vec![terminating, pod("shop", "old", ("ReplicaSet", "web-old"), None)]);
    let mut old = replica_set("shop", "web");
    old["metadata"]["name"] = json!("web-old");
    objects.replica_sets.push(old);
    let plan = plan_of(&injector, &objects);
    assert_eq!(plan.workloads.len(), 1, "{plan:?}");
    assert_eq!(plan.workloads[0].pods.unmeshed, 1);
}

#[test]
fn the_plan_serializes_for_tools_and_prints_as_a_table() {
    let injector = injector("v2");
    let plan = plan_of(&injector, &shop(vec![pod("shop", "p", ("ReplicaSet", "web-abc"), None)]));
    let json = serde_json::to_value(&plan).unwrap();
    let web = &json["workloads"][0];
    assert_eq!(web["kind"], "Deployment");
    assert_eq!(web["expected"]["meshed"], "yes");
    assert_eq!(web["pods"]["unmeshed"], 1);
    assert_eq!(web["action"], "restart");
    assert_eq!(web["reason"], "1 pod without the proxy");
    let table = crate::report::table(&plan);
    assert!(table.starts_with("NAMESPACE"), "{table}");
    assert!(table.contains("shop       Deployment  web   yes (v2)"), "{table}");
    assert!(table.contains("restart: 1 pod without the proxy"), "{table}");
}
