//! The invariants the fuzz targets check, shared by all of them.

#![forbid(unsafe_code)]

use inject::values::ValuesDocument;
use inject::{Injector, Outcome};
use serde_json::{Map, Value, json};

const ANCHORS: &str = "-----BEGIN CERTIFICATE-----\nFUZZ\n-----END CERTIFICATE-----\n";

/// The engine with the chart defaults and a trust anchor.
pub fn injector() -> Injector {
    let values = ValuesDocument::from_value(json!({"identityTrustAnchorsPEM": ANCHORS})).expect("values load");
    Injector::new(values, "linkerd").expect("the injector builds")
}

/// Applies the outcome's patch with the engine and with an independent RFC 6902 implementation;
/// both must apply cleanly and agree.
pub fn apply(object: &Value, outcome: &Outcome) -> Value {
    let mut patched = object.clone();
    outcome.patch.apply(&mut patched).unwrap_or_else(|e| panic!("the patch does not apply: {e}"));
    let independent: json_patch::Patch =
        serde_json::from_slice(&outcome.patch.to_json()).expect("the patch is RFC 6902 JSON");
    let mut check = object.clone();
    json_patch::patch(&mut check, &independent).expect("json-patch applies the patch");
    assert_eq!(check, patched, "two RFC 6902 implementations disagree");
    patched
}

/// Whether the object deserializes as its typed k8s-openapi kind; `None` for other kinds.
pub fn typed_ok(object: &Value, kind: &str) -> Option<bool> {
    use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, core::v1 as core};
    fn ok<T: serde::de::DeserializeOwned>(object: &Value) -> bool {
        serde_json::from_value::<T>(object.clone()).is_ok()
    }
    Some(match kind.to_ascii_lowercase().as_str() {
        "pod" => ok::<core::Pod>(object),
        "deployment" => ok::<apps::Deployment>(object),
        "statefulset" => ok::<apps::StatefulSet>(object),
        "daemonset" => ok::<apps::DaemonSet>(object),
        "replicaset" => ok::<apps::ReplicaSet>(object),
        "job" => ok::<batch::Job>(object),
        "cronjob" => ok::<batch::CronJob>(object),
        "service" => ok::<core::Service>(object),
        "namespace" => ok::<core::Namespace>(object),
        _ => return None,
    })
}

/// A valid object of its kind stays valid once injected.
pub fn assert_still_typed(before: &Value, after: &Value, kind: &str) {
    if typed_ok(before, kind) == Some(true) {
        assert_eq!(typed_ok(after, kind), Some(true), "an injected {kind} no longer deserializes: {after}");
    }
}

/// As the reference's uninject reads it (contract §7.5): every key starting with `linkerd.io`,
/// slash or not, is Linkerd's.
fn injector_owned(key: &str) -> bool {
    key.starts_with("linkerd.io")
        || key.starts_with("config.linkerd.io/")
        || key.starts_with("config.alpha.linkerd.io/")
}

fn injector_item(item: &Value) -> bool {
    item.get("name").and_then(Value::as_str).is_some_and(|n| n.starts_with("linkerd-"))
}

/// Every field of `user` is in `result` with the same value: injection only adds. Lists keep the
/// user's items in order, with the injector's (`linkerd-*`) items around them; annotation and
/// label keys the injector owns may be written.
pub fn assert_only_added(user: &Value, result: &Value, path: &str) {
    match (user, result) {
        (Value::Object(u), Value::Object(r)) => {
            let owned_keys = path.ends_with("/annotations") || path.ends_with("/labels");
            for (key, value) in u {
                if owned_keys && injector_owned(key) {
                    continue;
                }
                let at = format!("{path}/{key}");
                match r.get(key) {
                    Some(found) => assert_only_added(value, found, &at),
                    // An explicit null is "absent" to Kubernetes; injection may fill it.
                    None => assert!(value.is_null(), "{at} was removed"),
                }
            }
        }
        (Value::Array(u), Value::Array(r)) => {
            let kept: Vec<&Value> = r.iter().filter(|item| !injector_item(item) || u.contains(item)).collect();
            assert_eq!(kept.len(), u.len(), "{path}: items were lost or added in the user's place");
            for (i, (a, b)) in u.iter().zip(kept).enumerate() {
                assert_only_added(a, b, &format!("{path}/{i}"));
            }
        }
        (Value::Null, _) => {}
        (u, r) => assert_eq!(u, r, "{path} was changed"),
    }
}

/// Lists and maps that injection creates when missing, and uninjection drops when empty: an
/// empty one in the input cannot be told apart from an absent one. That includes a pod spec with
/// no containers (`spec: {}`, `containers: []`), which no apiserver accepts: injection gives it
/// the proxy, and uninjection leaves nothing of it. A `null` is absent too, as Kubernetes decodes
/// it.
pub fn without_empty_containers(value: &mut Value) {
    if let Value::Object(map) = value {
        map.values_mut().for_each(without_empty_containers);
        map.retain(|key, v| {
            let droppable = ["annotations", "labels", "volumes", "initContainers", "containers", "spec", "metadata"].contains(&key.as_str());
            let empty = v.as_object().is_some_and(Map::is_empty) || v.as_array().is_some_and(Vec::is_empty);
            !v.is_null() && !(droppable && empty)
        });
    } else if let Value::Array(items) = value {
        items.iter_mut().for_each(without_empty_containers);
    }
}

/// Whether the object already carries anything of Linkerd's (so `uninject` would remove the
/// user's own content).
pub fn has_linkerd_content(value: &Value) -> bool {
    match value {
        Value::Object(map) => {
            map.iter().any(|(k, v)| injector_owned(k) || injector_item(value) || has_linkerd_content(v))
        }
        Value::Array(items) => items.iter().any(has_linkerd_content),
        Value::String(s) => s.contains("linkerd"),
        _ => false,
    }
}
