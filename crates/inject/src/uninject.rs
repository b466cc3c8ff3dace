//! Removing what injection added (§7.5), used by `uninject` and before `inject` re-injects.

use serde_json::{Map, Value};

use crate::render::{
    DEBUG_CONTAINER, END_ENTITY_VOLUME, INIT_CONTAINER, PODINFO_VOLUME, PROXY_CONTAINER, TOKEN_VOLUME,
    VALIDATOR_CONTAINER, XTABLES_VOLUME,
};
use crate::workload::{Kind, Workload};

/// Which `linkerd.io/inject` values survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `uninject`: only `disabled` is kept, as the reference does.
    Uninject,
    /// The silent pass before `inject`: `ingress` is kept too, so re-injecting an ingress
    /// workload does not turn it into `enabled` (§10 row 8).
    BeforeInject,
}

/// Removes injected containers, volumes, annotations and labels in place. Returns whether
/// anything injection-related was removed. Unsupported kinds are left alone.
pub fn uninject(object: &mut Value, purpose: Purpose) -> bool {
    let kind = Workload::new(object, None).kind;
    let Some(kind) = kind else { return false };
    let control_plane = is_control_plane(object, kind);
    let mut changed = false;
    if !control_plane {
        changed |= strip_metadata(object.get_mut("metadata"), purpose);
    }
    let Some(pointer) = kind.template_pointer() else { return changed };
    let Some(template) = object.pointer_mut(pointer) else { return changed };
    if !control_plane && strip_metadata(template.get_mut("metadata"), purpose) {
        changed = true;
        if template.get("metadata").and_then(Value::as_object).is_some_and(Map::is_empty) {
            template.as_object_mut().map(|t| t.remove("metadata"));
        }
    }
    let Some(spec) = template.get_mut("spec").and_then(Value::as_object_mut) else { return changed };
    let mut removed = remove_named(spec, "initContainers", &[INIT_CONTAINER, PROXY_CONTAINER, VALIDATOR_CONTAINER]);
    removed |= remove_named(spec, "containers", &[PROXY_CONTAINER, DEBUG_CONTAINER]);
    removed |= remove_named(spec, "volumes", &[END_ENTITY_VOLUME, XTABLES_VOLUME, TOKEN_VOLUME, PODINFO_VOLUME]);
    // A spec that held only injected parts was created by injection, like an emptied list.
    if removed && spec.is_empty() {
        template.as_object_mut().map(|t| t.remove("spec"));
    }
    changed || removed
}

fn is_control_plane(object: &Value, kind: Kind) -> bool {
    let has_label =
        |v: Option<&Value>| v.and_then(|m| m.pointer("/metadata/labels/linkerd.io~1control-plane-component")).is_some();
    has_label(Some(object)) || kind.template_pointer().is_some_and(|p| has_label(object.pointer(p)))
}

fn strip_metadata(metadata: Option<&mut Value>, purpose: Purpose) -> bool {
    let Some(metadata) = metadata.and_then(Value::as_object_mut) else { return false };
    let mut changed = false;
    changed |= retain_in(metadata, "annotations", |k, v| {
        let kept_inject = k == crate::annotation::INJECT
            && match purpose {
                Purpose::Uninject => v == "disabled",
                Purpose::BeforeInject => v == "disabled" || v == "ingress",
            };
        !k.starts_with("linkerd.io") || kept_inject
    });
    retain_in(metadata, "labels", |k, _| !k.starts_with("linkerd.io"));
    changed
}

/// Keeps the entries of a metadata map that pass `keep`; a map emptied by this is removed, since
/// injection is what created it.
fn retain_in(metadata: &mut Map<String, Value>, field: &str, keep: impl Fn(&str, &Value) -> bool) -> bool {
    let Some(map) = metadata.get_mut(field).and_then(Value::as_object_mut) else { return false };
    let before = map.len();
    map.retain(|k, v| keep(k, v));
    let removed = map.len() != before;
    if removed && map.is_empty() {
        metadata.remove(field);
    }
    removed
}

fn remove_named(spec: &mut Map<String, Value>, field: &str, names: &[&str]) -> bool {
    let Some(items) = spec.get_mut(field).and_then(Value::as_array_mut) else { return false };
    let before = items.len();
    items.retain(|item| !item.get("name").and_then(Value::as_str).is_some_and(|n| names.contains(&n)));
    let removed = items.len() != before;
    if removed && items.is_empty() {
        spec.remove(field);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn removes_injected_parts_and_keeps_config_annotations() {
        let mut deployment = json!({"kind": "Deployment", "metadata": {"name": "web", "annotations": {"linkerd.io/inject": "enabled"}},
            "spec": {"template": {"metadata": {"annotations": {"linkerd.io/created-by": "x", "config.linkerd.io/admin-port": "1"},
                "labels": {"app": "web", "linkerd.io/control-plane-ns": "linkerd"}},
                "spec": {"initContainers": [{"name": "linkerd-init"}, {"name": "linkerd-proxy"}, {"name": "mine"}],
                    "containers": [{"name": "app"}],
                    "volumes": [{"name": "data"}, {"name": "linkerd-identity-end-entity"}]}}}});
        assert!(uninject(&mut deployment, Purpose::Uninject));
        assert!(deployment["metadata"].get("annotations").is_none());
        let template = &deployment["spec"]["template"];
        assert_eq!(template["metadata"]["annotations"], json!({"config.linkerd.io/admin-port": "1"}));
        assert_eq!(template["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(template["spec"]["initContainers"], json!([{"name": "mine"}]));
        assert_eq!(template["spec"]["volumes"], json!([{"name": "data"}]));
    }

    #[test]
    fn keeps_disabled_and_for_reinjection_ingress() {
        let pod =
            |value: &str| json!({"kind": "Pod", "metadata": {"annotations": {"linkerd.io/inject": value}}, "spec": {}});
        let mut disabled = pod("disabled");
        assert!(!uninject(&mut disabled, Purpose::Uninject));
        let mut ingress = pod("ingress");
        assert!(!uninject(&mut ingress, Purpose::BeforeInject));
        assert!(uninject(&mut ingress, Purpose::Uninject));
    }

    #[test]
    fn leaves_unsupported_kinds_and_control_plane_metadata() {
        let mut config_map = json!({"kind": "ConfigMap", "metadata": {"annotations": {"linkerd.io/x": "1"}}});
        assert!(!uninject(&mut config_map, Purpose::Uninject));
        let mut control = json!({"kind": "Pod", "metadata": {"labels": {"linkerd.io/control-plane-component": "x"},
            "annotations": {"linkerd.io/created-by": "x"}}, "spec": {"containers": [{"name": "linkerd-proxy"}]}});
        assert!(uninject(&mut control, Purpose::Uninject));
        assert_eq!(control["metadata"]["annotations"]["linkerd.io/created-by"], "x");
    }
}
