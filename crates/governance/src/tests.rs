use std::collections::BTreeMap;

use inject::values::ValuesDocument;
use inject::{Injector, Origin, Request};
use serde_json::{Value, json};

use crate::{Mode, Namespace, Policy, Rule, Subject, Surroundings, advise};

fn injector(extra: Value) -> Injector {
    let mut values =
        json!({"identityTrustAnchorsPEM": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"});
    inject::values::merge_value(&mut values, extra);
    Injector::new(ValuesDocument::from_value(values).unwrap(), "linkerd").unwrap()
}

fn policy_of(policy: Value) -> Result<Policy, crate::PolicyError> {
    let injector = injector(json!({"proxyInjector": {"policy": policy}}));
    Policy::from_values(&injector.values().values)
}

fn pod(annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "shop", "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "nginx", "ports": [{"containerPort": 80}]}]}})
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The rules a pod breaks in namespace `shop` (injection enabled there) with these labels.
fn violations(policy: Value, pod: &Value, namespace_labels: &BTreeMap<String, String>) -> Vec<(Rule, Mode, String)> {
    let injector = injector(json!({"proxyInjector": {"policy": policy}}));
    let policy = Policy::from_values(&injector.values().values).unwrap();
    let namespace_annotations = json!({"linkerd.io/inject": "enabled"});
    let origin =
        Origin::Webhook { namespace: "shop", namespace_annotations: namespace_annotations.as_object(), owner: None };
    let outcome = injector.evaluate(&Request { object: pod, kind: None, origin }).unwrap();
    let subject = Subject {
        outcome: &outcome,
        values: &injector.values().values,
        annotations: pod.pointer("/metadata/annotations").and_then(Value::as_object),
        namespace: Some(Namespace { name: "shop", labels: namespace_labels }),
    };
    policy.review(&subject).into_iter().map(|v| (v.rule, v.mode, v.to_string())).collect()
}

#[test]
fn the_chart_default_is_every_rule_off() {
    let policy = Policy::from_values(&injector(json!({})).values().values).unwrap();
    let found = violations(json!({}), &pod(json!({"config.linkerd.io/proxy-image": "evil.io/proxy"})), &labels(&[]));
    assert!(found.is_empty(), "{found:?}");
    assert!(!policy.needs_opted_out_pods());
}

#[test]
fn images_from_other_repositories_break_the_rule_in_either_mode() {
    for mode in ["audit", "enforce"] {
        let rule = json!({"images": {"mode": mode, "allowedRepositories": ["cr.l5d.io/linkerd/"]}});
        let found =
            violations(rule.clone(), &pod(json!({"config.linkerd.io/proxy-image": "evil.io/proxy"})), &labels(&[]));
        assert_eq!(found.len(), 1, "init runs the proxy image, named once: {found:?}");
        assert_eq!(found[0].0, Rule::Images);
        assert_eq!(found[0].1, if mode == "audit" { Mode::Audit } else { Mode::Enforce });
        assert!(found[0].2.contains("\"evil.io/proxy:"), "{}", found[0].2);
        assert!(
            found[0].2.starts_with(&format!("policy rule proxyInjector.policy.images ({mode}):")),
            "{}",
            found[0].2
        );
        assert!(violations(rule, &pod(json!({})), &labels(&[])).is_empty(), "the chart's own images are allowed");
    }
}

#[test]
fn a_repository_prefix_stops_at_a_boundary() {
    let rule = json!({"images": {"mode": "enforce", "allowedRepositories": ["cr.l5d.io"]}});
    let lookalike = pod(json!({"config.linkerd.io/proxy-image": "cr.l5d.io.evil.com/proxy"}));
    assert_eq!(violations(rule.clone(), &lookalike, &labels(&[])).len(), 1);
    let under = pod(json!({"config.linkerd.io/proxy-image": "cr.l5d.io/other/proxy"}));
    assert!(violations(rule, &under, &labels(&[])).is_empty());
}

#[test]
fn digests_are_required_when_asked() {
    let rule = json!({"images": {"mode": "enforce", "requireDigest": true}});
    let tagged = violations(rule.clone(), &pod(json!({})), &labels(&[]));
    assert!(
        tagged.iter().all(|(r, _, text)| *r == Rule::Images && text.contains("not pinned by digest")),
        "{tagged:?}"
    );
    let digest = format!("v1@sha256:{}", "a".repeat(64));
    let pinned = pod(json!({"config.linkerd.io/proxy-version": digest}));
    assert!(violations(rule, &pinned, &labels(&[])).is_empty());
}

#[test]
fn the_debug_image_is_checked_only_when_the_sidecar_runs() {
    let rule = json!({"images": {"mode": "audit", "allowedRepositories": ["cr.l5d.io/linkerd/proxy"]}});
    assert!(violations(rule.clone(), &pod(json!({})), &labels(&[])).is_empty());
    let debug = pod(json!({"config.linkerd.io/enable-debug-sidecar": "true"}));
    let found = violations(rule, &debug, &labels(&[]));
    assert_eq!(found.len(), 1);
    assert!(found[0].2.contains("linkerd-debug image"), "{}", found[0].2);
}

#[test]
fn resources_above_the_bounds_break_the_rule_only_when_set_by_annotation() {
    let rule = json!({"resources": {"mode": "enforce", "max": {"cpuLimit": "1", "memoryLimit": "512Mi"}}});
    let big = pod(json!({"config.linkerd.io/proxy-cpu-limit": "1500m", "config.linkerd.io/proxy-memory-limit": "1Gi"}));
    let found = violations(rule.clone(), &big, &labels(&[]));
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].2.contains("config.linkerd.io/proxy-cpu-limit: \"1500m\" is above the allowed maximum 1"));
    let within =
        pod(json!({"config.linkerd.io/proxy-cpu-limit": "1", "config.linkerd.io/proxy-memory-limit": "0.5Gi"}));
    assert!(violations(rule.clone(), &within, &labels(&[])).is_empty());
    let by_values = json!({"proxyInjector": {"policy": rule}, "proxy": {"resources": {"cpu": {"limit": "4"}}}});
    let injector = injector(by_values);
    let policy = Policy::from_values(&injector.values().values).unwrap();
    let enabled = json!({"linkerd.io/inject": "enabled"});
    let origin = Origin::Webhook { namespace: "shop", namespace_annotations: enabled.as_object(), owner: None };
    let plain = pod(json!({}));
    let outcome = injector.evaluate(&Request { object: &plain, kind: None, origin }).unwrap();
    let subject = Subject { outcome: &outcome, values: &injector.values().values, annotations: None, namespace: None };
    assert!(policy.review(&subject).is_empty(), "the platform's own values are not bounded");
}

#[test]
fn forbidden_overrides_have_namespace_exceptions() {
    let rule = json!({"forbiddenOverrides": {"mode": "audit", "annotations": ["config.linkerd.io/skip-inbound-ports"],
        "exceptNamespaces": {"matchLabels": {"team": "platform"}}}});
    let skipping = pod(json!({"config.linkerd.io/skip-inbound-ports": "8080"}));
    let found = violations(rule.clone(), &skipping, &labels(&[("team", "payments")]));
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].0, found[0].1), (Rule::ForbiddenOverrides, Mode::Audit));
    assert!(found[0].2.contains("config.linkerd.io/skip-inbound-ports may not be set in namespace \"shop\""));
    assert!(violations(rule, &skipping, &labels(&[("team", "platform")])).is_empty());
}

#[test]
fn opting_out_where_the_mesh_is_required_breaks_the_rule() {
    let rule = json!({"meshRequired": {"mode": "enforce", "namespaceSelector": {"matchLabels": {"mesh": "required"}}}});
    let opted_out = pod(json!({"linkerd.io/inject": "disabled"}));
    let found = violations(rule.clone(), &opted_out, &labels(&[("mesh", "required")]));
    assert_eq!(found.len(), 1);
    assert!(found[0].2.contains("namespace \"shop\" requires the mesh"), "{}", found[0].2);
    assert!(found[0].2.contains("to comply, remove the linkerd.io/inject annotation"), "{}", found[0].2);
    assert!(violations(rule.clone(), &opted_out, &labels(&[("mesh", "optional")])).is_empty());
    assert!(policy_of(rule).unwrap().needs_opted_out_pods());
}

#[test]
fn a_policy_that_cannot_work_is_refused_with_its_path() {
    let cases = [
        (json!({"images": {"mode": "enforce"}}), "proxyInjector.policy.images"),
        (
            json!({"images": {"mode": "audit", "allowedRepositories": [""]}}),
            "proxyInjector.policy.images.allowedRepositories[0]",
        ),
        (json!({"images": {"mode": "on"}}), "proxyInjector.policy.images.mode"),
        (json!({"images": {"mdoe": "audit"}}), "proxyInjector.policy.images.mdoe"),
        (json!({"resources": {"mode": "audit"}}), "proxyInjector.policy.resources.max"),
        (json!({"resources": {"max": {"cpuLimit": "lots"}}}), "proxyInjector.policy.resources.max.cpuLimit"),
        (json!({"forbiddenOverrides": {"mode": "enforce"}}), "proxyInjector.policy.forbiddenOverrides.annotations"),
        (json!({"meshRequired": {"mode": "enforce"}}), "proxyInjector.policy.meshRequired.namespaceSelector"),
        (
            json!({"meshRequired": {"mode": "audit", "namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}}),
            "proxyInjector.policy.meshRequired.namespaceSelector",
        ),
    ];
    for (policy, path) in cases {
        let error = policy_of(policy.clone()).expect_err(&policy.to_string());
        assert_eq!(error.path, path, "{policy}: {error}");
    }
    assert!(policy_of(json!({"images": {"mode": false, "allowedRepositories": ["x/"]}})).is_ok(), "YAML 1.1 off");
}

fn advice(object: Value, namespace_annotations: Value) -> Vec<String> {
    advice_with(json!({}), object, namespace_annotations)
}

fn advice_with(policy: Value, object: Value, namespace_annotations: Value) -> Vec<String> {
    let injector = injector(json!({"proxyInjector": {"policy": policy}}));
    let policy = Policy::from_values(&injector.values().values).unwrap();
    let kind = object["kind"].as_str().unwrap().to_string();
    let namespace_labels = labels(&[("mesh", "required")]);
    let around = Surroundings {
        namespace: "shop",
        namespace_annotations: namespace_annotations.as_object(),
        namespace_labels: Some(&namespace_labels),
    };
    advise(&injector, &policy, &object, &kind, around)
}

fn deployment(metadata_annotations: Value, template_annotations: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "annotations": metadata_annotations},
        "spec": {"template": {"metadata": {"annotations": template_annotations},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]}}}})
}

#[test]
fn a_well_formed_workload_gets_no_advice() {
    assert!(advice(deployment(json!({}), json!({"linkerd.io/inject": "enabled"})), json!({})).is_empty());
    assert!(advice(deployment(json!({}), json!({})), json!({"linkerd.io/inject": "enabled"})).is_empty());
}

#[test]
fn invalid_template_annotations_are_named_with_their_accepted_form() {
    let found = advice(
        deployment(json!({}), json!({"config.linkerd.io/proxy-cpu-request": "lots"})),
        json!({"linkerd.io/inject": "enabled"}),
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("pods of this Deployment: annotation config.linkerd.io/proxy-cpu-request:"),
        "{}",
        found[0]
    );
    assert!(found[0].contains("\"lots\"") && found[0].contains("Kubernetes quantity"), "{}", found[0]);
}

#[test]
fn annotations_at_the_wrong_level_are_pointed_to_the_template() {
    let found = advice(deployment(json!({"linkerd.io/inject": "enabled"}), json!({})), json!({}));
    assert_eq!(
        found,
        vec![
            "annotation linkerd.io/inject on the Deployment's own metadata has no effect on its pods; set it in spec.template.metadata.annotations"
        ]
    );
    let cron = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
        "spec": {"schedule": "@daily", "jobTemplate": {"metadata": {"annotations": {"config.linkerd.io/proxy-cpu-limit": "1"}},
            "spec": {"template": {"spec": {"containers": [{"name": "job", "image": "busybox"}]}}}}}});
    let found = advice(cron, json!({}));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("set it in spec.jobTemplate.spec.template.metadata.annotations"), "{}", found[0]);
}

#[test]
fn pods_that_ask_for_the_proxy_but_will_be_skipped_are_explained() {
    let mut host = deployment(json!({}), json!({"linkerd.io/inject": "enabled"}));
    host["spec"]["template"]["spec"]["hostNetwork"] = json!(true);
    let found = advice(host, json!({}));
    assert_eq!(
        found,
        vec!["pods of this Deployment ask for the linkerd proxy but will not be injected: hostNetwork is enabled"]
    );
    let mut quiet = deployment(json!({}), json!({}));
    quiet["spec"]["template"]["spec"]["hostNetwork"] = json!(true);
    assert!(advice(quiet, json!({})).is_empty(), "not asked, nothing to say");
}

#[test]
fn a_job_whose_proxy_would_keep_it_running_is_warned() {
    let job = |native: &str| {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"},
            "spec": {"template": {"metadata": {"annotations": {"linkerd.io/inject": "enabled",
                "config.linkerd.io/proxy-enable-native-sidecar": native}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "job", "image": "busybox"}]}}}})
    };
    let found = advice(job("false"), json!({}));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("stops the Job from completing"), "{}", found[0]);
    assert!(advice(job("true"), json!({})).is_empty());
}

#[test]
fn policy_violations_are_announced_at_apply_time() {
    let rule = json!({"meshRequired": {"mode": "enforce", "namespaceSelector": {"matchLabels": {"mesh": "required"}}},
        "images": {"mode": "audit", "allowedRepositories": ["cr.l5d.io/"]}});
    let found = advice_with(
        rule.clone(),
        deployment(json!({}), json!({"linkerd.io/inject": "disabled"})),
        json!({"linkerd.io/inject": "enabled"}),
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("pods of this Deployment will be denied: policy rule proxyInjector.policy.meshRequired"),
        "{}",
        found[0]
    );
    let found = advice_with(
        rule,
        deployment(json!({}), json!({"config.linkerd.io/proxy-image": "docker.io/proxy"})),
        json!({"linkerd.io/inject": "enabled"}),
    );
    assert!(
        found.iter().all(|w| w.starts_with(
            "pods of this Deployment will be admitted with a warning: policy rule proxyInjector.policy.images"
        )),
        "{found:?}"
    );
}

#[test]
fn namespaces_and_services_are_told_what_they_cannot_do() {
    let ns = |annotations: Value| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "annotations": annotations}});
    assert!(
        advice(ns(json!({"linkerd.io/inject": "enabled", "config.linkerd.io/proxy-cpu-limit": "1"})), json!({}))
            .is_empty()
    );
    let found = advice(ns(json!({"linkerd.io/inject": "yes"})), json!({}));
    assert_eq!(found.len(), 1);
    assert!(found[0].contains("invalid value \"yes\""), "{}", found[0]);
    let found = advice(ns(json!({"config.linkerd.io/proxy-cpu-limit": "lots"})), json!({}));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("pods of this namespace: annotation config.linkerd.io/proxy-cpu-limit"),
        "{}",
        found[0]
    );
    let found = advice(ns(json!({"config.linkerd.io/close-wait-timeout": "3s"})), json!({}));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("has no effect on a namespace"), "{}", found[0]);
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web",
        "annotations": {"config.linkerd.io/opaque-ports": "3306", "config.linkerd.io/skip-inbound-ports": "80"}}});
    assert_eq!(
        advice(service, json!({})),
        vec![
            "annotation config.linkerd.io/skip-inbound-ports has no effect on a Service (it reads only config.linkerd.io/opaque-ports); set it on the pod templates"
        ]
    );
}
