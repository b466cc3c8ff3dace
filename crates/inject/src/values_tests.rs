//! The chart defaults are data: the real `linkerd-config` loads, partial values keep every
//! default they do not name, and `null` means the zero value.

use serde_json::{Map, Value, json};

use super::*;
use crate::values::chart_values;

/// The `values` key of `linkerd-config` exactly as `linkerd install` writes it.
pub(crate) const INSTALL_DEFAULT_VALUES: &str =
    include_str!("../../../fixtures/linkerd-config/install-default.values.yaml");

const ANCHORS: &str = "-----BEGIN CERTIFICATE-----\nEXAMPLE\n-----END CERTIFICATE-----\n";

fn fixture() -> Value {
    serde_saphyr::from_str(INSTALL_DEFAULT_VALUES).unwrap()
}

/// A pod that every part of the rendering looks at: ports, probes, a service-account mount,
/// capabilities, and annotations for the debug sidecar and tracing attributes.
fn rich_pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "emojivoto",
            "annotations": {"linkerd.io/inject": "enabled", "config.linkerd.io/enable-debug-sidecar": "true",
                "resource.opentelemetry.io/team": "a"},
            "labels": {"app.kubernetes.io/name": "web"}},
        "spec": {"containers": [{"name": "web", "image": "web:v1",
            "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 3306}],
            "livenessProbe": {"httpGet": {"port": 80}},
            "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}},
            "volumeMounts": [{"name": "sa", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]}]}})
}

/// Base configurations under which different parts of the values are rendered.
fn bases() -> Vec<Value> {
    let tracing = json!({"enabled": true, "collector": {"endpoint": "collector:4317",
        "meshIdentity": {"serviceAccountName": "collector", "namespace": "tracing"}}});
    vec![
        json!({}),
        json!({"cniEnabled": true}),
        json!({"proxy": {"nativeSidecar": false, "waitBeforeExitSeconds": 3, "tracing": tracing}}),
        json!({"proxy": {"nativeSidecar": false, "await": false}, "proxyInit": {"runAsRoot": true}}),
    ]
}

fn with_anchors(mut values: Value) -> Value {
    if values.get("identityTrustAnchorsPEM").and_then(Value::as_str).is_none_or(str::is_empty) {
        values["identityTrustAnchorsPEM"] = json!(ANCHORS);
    }
    values
}

fn render(values: Value) -> Result<Value, String> {
    let document = ValuesDocument::from_value(with_anchors(values)).map_err(|e| e.to_string())?;
    let injector = Injector::new(document, "linkerd").map_err(|e| e.to_string())?.with_version("dev-undefined");
    let object = rich_pod();
    let origin = Origin::Webhook {
        namespace: "emojivoto",
        namespace_annotations: None,
        owner: Some(Owner { kind: "deployment", name: "web" }),
    };
    let outcome = injector.evaluate(&Request { object: &object, kind: None, origin }).map_err(|e| e.to_string())?;
    let mut pod = object.clone();
    outcome.patch.apply(&mut pod).map_err(|e| e.to_string())?;
    Ok(pod)
}

/// Every leaf of a document as (path, value); empty maps and lists count as leaves.
fn leaves(value: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, Value)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                path.push(key.clone());
                leaves(child, path, out);
                path.pop();
            }
        }
        leaf => out.push((path.clone(), leaf.clone())),
    }
}

/// A document holding only `value` at `path`.
fn only(path: &[String], value: Value) -> Value {
    path.iter().rev().fold(value, |inner, key| Value::Object(Map::from_iter([(key.clone(), inner)])))
}

fn merged(base: &Value, overlay: Value) -> Value {
    let mut out = base.clone();
    crate::values::merge_value(&mut out, overlay);
    out
}

#[test]
fn the_unedited_linkerd_install_values_load_and_inject() {
    let document = ValuesDocument::from_value(fixture()).expect("linkerd install's values load");
    assert!(document.values.proxy.additional_env.is_empty());
    assert_eq!(document.values.linkerd_version, "dev-undefined");
    let pod = render(fixture()).unwrap();
    let proxy =
        pod["spec"]["initContainers"].as_array().unwrap().iter().find(|c| c["name"] == "linkerd-proxy").unwrap();
    assert_eq!(proxy["image"], "cr.l5d.io/linkerd/proxy:dev-undefined");
    assert_eq!(pod["metadata"]["annotations"]["linkerd.io/proxy-version"], "dev-undefined");
    let debug = pod["spec"]["containers"].as_array().unwrap().iter().find(|c| c["name"] == "linkerd-debug").unwrap();
    assert_eq!(debug["image"], "cr.l5d.io/linkerd/debug:dev-undefined");
}

#[test]
fn the_chart_defaults_render_what_linkerd_install_writes() {
    // `linkerd install` writes the chart's defaults; injecting with them or with nothing at all
    // gives the same pod, once the version and trust anchors the install pins are the same.
    let pinned = json!({"linkerdVersion": "dev-undefined",
        "identityTrustAnchorsPEM": fixture()["identityTrustAnchorsPEM"].clone()});
    assert_eq!(render(fixture()).unwrap(), render(pinned).unwrap());
}

#[test]
fn each_null_of_the_fixture_means_the_zero_value() {
    let mut nulls = Vec::new();
    leaves(&fixture(), &mut Vec::new(), &mut nulls);
    nulls.retain(|(_, v)| v.is_null());
    assert_eq!(nulls.len(), 23, "the fixture's nulls: {nulls:?}");
    let chart = chart_values();
    for (path, _) in nulls {
        let pointer: String = path.iter().map(|k| format!("/{k}")).collect();
        let zero = match chart.pointer(&pointer) {
            None | Some(Value::Null) => None,
            Some(Value::String(_)) => Some(json!("")),
            Some(Value::Bool(_)) => Some(json!(false)),
            Some(Value::Number(_)) => Some(json!(0)),
            Some(Value::Array(_)) => Some(json!([])),
            Some(Value::Object(_)) => Some(json!({})),
        };
        let with_null = render(only(&path, Value::Null)).unwrap_or_else(|e| panic!("{pointer}: null: {e}"));
        let expected = match zero {
            Some(zero) => render(only(&path, zero)).unwrap(),
            None => render(json!({})).unwrap(),
        };
        assert_eq!(with_null, expected, "{pointer}: null is not the zero value");
    }
}

#[test]
fn setting_a_sibling_never_loses_a_chart_default() {
    let mut all = Vec::new();
    leaves(&chart_values(), &mut Vec::new(), &mut all);
    let mut checked = 0;
    for base in bases() {
        let expected = render(base.clone()).unwrap();
        for (path, value) in &all {
            let pointer: String = path.iter().map(|k| format!("/{k}")).collect();
            if base.pointer(&pointer).is_some() {
                continue;
            }
            // The sibling is given with its own default value: nothing may change, so any
            // default lost from the rest of its mapping shows in the rendered pod.
            let given = merged(&base, only(path, value.clone()));
            let got = render(given).unwrap_or_else(|e| panic!("{}: {e}", path.join(".")));
            assert!(got == expected, "giving only {} changed the pod (base {base})", path.join("."));
            checked += 1;
        }
    }
    assert!(checked > 400, "{checked} leaves checked");
}

#[test]
fn partial_blocks_keep_their_chart_defaults() {
    let pod = render(json!({"proxy": {"image": {"version": "v9"}, "livenessProbe": {"timeoutSeconds": 3},
        "startupProbe": {"periodSeconds": 2}}}))
    .unwrap();
    let init = &pod["spec"]["initContainers"];
    let proxy = init.as_array().unwrap().iter().find(|c| c["name"] == "linkerd-proxy").unwrap();
    assert_eq!(proxy["image"], "cr.l5d.io/linkerd/proxy:v9");
    assert_eq!(init[0]["image"], "cr.l5d.io/linkerd/proxy:v9");
    assert_eq!(proxy["livenessProbe"]["initialDelaySeconds"], 10);
    assert_eq!(proxy["livenessProbe"]["timeoutSeconds"], 3);
    assert_eq!(proxy["startupProbe"]["failureThreshold"], 120);
    assert_eq!(proxy["startupProbe"]["periodSeconds"], 2);
}

#[test]
fn the_embedded_chart_values_fit_the_schema() {
    let defaults = ValuesDocument::default();
    assert_eq!(defaults.values.proxy.ports.inbound, 4143);
    assert_eq!(defaults.values.proxy.startup_probe.failure_threshold, 120);
    assert!(!defaults.is_given("proxy.ports.inbound"));
}

// The last compatibility gaps, each against the reference's output as the contract gives it.

fn proxy_env(pod: &Value) -> Vec<(String, String)> {
    let proxy =
        pod["spec"]["initContainers"].as_array().unwrap().iter().find(|c| c["name"] == "linkerd-proxy").unwrap();
    proxy["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?.to_string(), e["value"].as_str()?.to_string())))
        .collect()
}

fn env<'a>(vars: &'a [(String, String)], name: &str) -> Option<&'a str> {
    vars.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn cli_manual(overrides: &AnnotationSet, object: &Value) -> (Value, Outcome) {
    let document = ValuesDocument::from_value(with_anchors(json!({}))).unwrap();
    let injector = Injector::new(document, "linkerd").unwrap();
    let outcome =
        injector.evaluate(&Request { object, kind: None, origin: Origin::Cli { manual: true, overrides } }).unwrap();
    let mut pod = object.clone();
    outcome.patch.apply(&mut pod).unwrap();
    (pod, outcome)
}

fn plain_pod(annotations: Value) -> Value {
    json!({"kind": "Pod", "metadata": {"name": "p", "annotations": annotations},
        "spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80}]}]}})
}

#[test]
fn a_cpu_limit_flag_sets_the_resources_but_not_the_worker_maximum() {
    let mut flags = AnnotationSet::default();
    flags.insert(annotation::PROXY_CPU_LIMIT, "160m", Source::Flag);
    let (pod, _) = cli_manual(&flags, &plain_pod(json!({})));
    let vars = proxy_env(&pod);
    assert_eq!(env(&vars, "LINKERD2_PROXY_CORES_MAX"), None);
    let proxy = pod["spec"]["initContainers"][1].clone();
    assert_eq!(proxy["resources"]["limits"]["cpu"], "160m");
    // Written on the workload itself, the annotation does set the maximum, rounded up.
    let (pod, _) =
        cli_manual(&AnnotationSet::default(), &plain_pod(json!({"config.linkerd.io/proxy-cpu-limit": "160m"})));
    assert_eq!(env(&proxy_env(&pod), "LINKERD2_PROXY_CORES_MAX"), Some("1"));
}

#[test]
fn the_cpu_ratio_renders_as_the_number() {
    let (pod, _) =
        cli_manual(&AnnotationSet::default(), &plain_pod(json!({"config.linkerd.io/proxy-cpu-ratio-limit": "0.10"})));
    assert_eq!(env(&proxy_env(&pod), "LINKERD2_PROXY_CORES_MAX_RATIO"), Some("0.1"));
    let (pod, _) = cli_manual(
        &AnnotationSet::default(),
        &plain_pod(json!({"config.linkerd.io/proxy-cpu-ratio-limit": "0.00005"})),
    );
    assert_eq!(env(&proxy_env(&pod), "LINKERD2_PROXY_CORES_MAX_RATIO"), Some("5e-05"));
}

#[test]
fn an_opaque_port_name_that_names_no_port_is_dropped_with_a_warning() {
    // The reference keeps `mysql` in the env, which the proxy cannot parse; we drop it and say so.
    let (pod, outcome) =
        cli_manual(&AnnotationSet::default(), &plain_pod(json!({"config.linkerd.io/opaque-ports": "mysql,3306"})));
    assert_eq!(env(&proxy_env(&pod), "LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION"), Some("3306"));
    assert!(outcome.warnings.iter().any(|w| w.message.contains("ignored mysql")), "{:?}", outcome.warnings);
}

#[test]
fn default_opaque_ports_match_the_list_items_as_text() {
    let values = with_anchors(json!({"proxy": {"opaquePorts": "80,11211,3300-3310"}}));
    let injector = Injector::new(ValuesDocument::from_value(values).unwrap(), "linkerd").unwrap();
    let object = json!({"kind": "Pod", "metadata": {"name": "p", "annotations": {"linkerd.io/inject": "enabled"}},
        "spec": {"initContainers": [{"name": "cache", "ports": [{"containerPort": 11211}]}],
            "containers": [{"name": "db", "ports": [{"containerPort": 3306}, {"containerPort": 11211}]}]}});
    let origin = Origin::Webhook { namespace: "ns", namespace_annotations: None, owner: None };
    let outcome = injector.evaluate(&Request { object: &object, kind: None, origin }).unwrap();
    let mut pod = object.clone();
    outcome.patch.apply(&mut pod).unwrap();
    // 3306 lies in the range 3300-3310, but the reference matches the items as strings; the
    // port declared twice is listed twice, as the reference lists it.
    assert_eq!(pod["metadata"]["annotations"]["config.linkerd.io/opaque-ports"], "11211,11211");
}

/// Found by the `uninject` fuzz target: a template without `containers` came back with
/// `containers: []` after inject and uninject.
#[test]
fn a_template_without_containers_gets_no_empty_container_list() {
    let object = json!({"kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"template": {"spec": {"initContainers": [{"name": "migrate", "image": "m"}]}}}});
    let (injected, _) = cli_manual(&AnnotationSet::default(), &object);
    assert!(injected["spec"]["template"]["spec"].get("containers").is_none(), "{injected}");
    let mut round_trip = injected;
    crate::uninject::uninject(&mut round_trip, crate::uninject::Purpose::Uninject);
    assert_eq!(round_trip, object);
}

/// Found by the fuzz targets: a pod without a spec came back with `spec: {}` after inject and
/// uninject, and a workload whose template is `null` got a patch that could not apply.
#[test]
fn a_missing_spec_and_a_null_template_are_handled() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
    let (injected, _) = cli_manual(&AnnotationSet::default(), &pod);
    let mut round_trip = injected;
    crate::uninject::uninject(&mut round_trip, crate::uninject::Purpose::Uninject);
    assert_eq!(round_trip, pod);
    let statefulset = json!({"kind": "StatefulSet", "metadata": {"name": "s"}, "spec": {"template": null}});
    let (patched, outcome) = cli_manual(&AnnotationSet::default(), &statefulset);
    assert!(outcome.patch.is_empty());
    assert_eq!(patched, statefulset);
}
