//! Every field injection reads or writes must have its Kubernetes type before the object is
//! touched: a wrong type is an error naming the field path, never a silently replaced value.

use crate::fields::Fields;
use serde_json::{Map, Value};

use crate::values::kind_of;
use crate::workload::{Kind, Workload};

/// A field whose JSON type is not the one Kubernetes gives it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: expected {expected}, found {found}")]
pub struct ShapeError {
    /// Dotted path with list indices, e.g. `spec.template.spec.containers[0].ports`.
    pub path: String,
    pub expected: &'static str,
    pub found: &'static str,
}

/// A metadata value written as a YAML boolean or number, read as the string Kubernetes makes of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertedScalar {
    pub path: String,
    pub value: String,
}

/// Checks the fields injection and uninjection look at. `null` counts as absent, as it does when
/// the apiserver decodes an object.
pub fn check(object: &Value, kind_override: Option<&str>) -> Result<(), ShapeError> {
    let workload = Workload::new(object, kind_override);
    let Some(kind) = workload.kind else { return Ok(()) };
    let root = Path::root();
    let Some(top) = expect_map(object, &root, "a mapping")? else { return Ok(()) };
    metadata(top.field("metadata"), &root.key("metadata"))?;
    let Some(pointer) = kind.template_pointer() else { return Ok(()) };
    let segments: Vec<&str> = pointer.split('/').filter(|s| !s.is_empty()).collect();
    template(top, &segments, &root, kind)
}

/// Walks down to the template, checking every mapping on the way, then the template itself.
fn template(node: &Map<String, Value>, segments: &[&str], path: &Path<'_>, kind: Kind) -> Result<(), ShapeError> {
    if let Some((segment, rest)) = segments.split_first() {
        let here = path.key(segment);
        return match expect_map(node.field(segment).unwrap_or(&Value::Null), &here, "a mapping")? {
            Some(next) => template(next, rest, &here, kind),
            None => Ok(()),
        };
    }
    if kind != Kind::Pod {
        metadata(node.field("metadata"), &path.key("metadata"))?;
    }
    let spec_path = path.key("spec");
    if let Some(spec) = expect_map(node.field("spec").unwrap_or(&Value::Null), &spec_path, "a mapping")? {
        pod_spec(spec, &spec_path)?;
    }
    Ok(())
}

/// Rewrites boolean and number values of `metadata.annotations` and `metadata.labels` (the
/// object's and its template's) as strings, the way Kubernetes' YAML decoding reads them.
pub fn stringify_metadata_scalars(object: &mut Value, kind_override: Option<&str>) -> Vec<ConvertedScalar> {
    let pointer = Workload::new(object, kind_override).kind.and_then(Kind::template_pointer);
    let mut converted = Vec::new();
    let mut places = vec![String::new()];
    if let Some(pointer) = pointer.filter(|p| !p.is_empty()) {
        places.push(pointer.to_string());
    }
    for place in places {
        for field in ["annotations", "labels"] {
            let at = format!("{place}/metadata/{field}");
            let Some(Value::Object(map)) = object.pointer_mut(&at) else { continue };
            for (key, value) in map.iter_mut() {
                let text = match value {
                    Value::Bool(b) => b.to_string(),
                    Value::Number(n) => n.to_string(),
                    _ => continue,
                };
                let path = format!("{}.{key}", at.trim_start_matches('/').replace('/', "."));
                converted.push(ConvertedScalar { path, value: text.clone() });
                *value = Value::String(text);
            }
        }
    }
    converted
}

/// Where a field sits, as a chain of borrowed segments on the stack: it costs nothing until an
/// error has to name it.
#[derive(Clone, Copy)]
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    segment: Segment<'a>,
}

#[derive(Clone, Copy)]
enum Segment<'a> {
    Root,
    Key(&'a str),
    Index(usize),
}

impl<'a> Path<'a> {
    fn root() -> Path<'static> {
        Path { parent: None, segment: Segment::Root }
    }

    fn key(&'a self, key: &'a str) -> Path<'a> {
        Path { parent: Some(self), segment: Segment::Key(key) }
    }

    fn index(&'a self, index: usize) -> Path<'a> {
        Path { parent: Some(self), segment: Segment::Index(index) }
    }

    fn render(&self, out: &mut String) {
        if let Some(parent) = self.parent {
            parent.render(out);
        }
        match self.segment {
            Segment::Root => {}
            Segment::Key(key) if out.is_empty() => out.push_str(key),
            Segment::Key(key) => {
                out.push('.');
                out.push_str(key);
            }
            Segment::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }

    fn error(&self, expected: &'static str, found: &Value) -> ShapeError {
        let mut path = String::new();
        self.render(&mut path);
        ShapeError { path, expected, found: kind_of(found) }
    }
}

fn expect_map<'a>(
    value: &'a Value,
    path: &Path,
    expected: &'static str,
) -> Result<Option<&'a Map<String, Value>>, ShapeError> {
    match value {
        Value::Null => Ok(None),
        Value::Object(map) => Ok(Some(map)),
        other => Err(path.error(expected, other)),
    }
}

fn expect_list<'a>(value: Option<&'a Value>, path: &Path) -> Result<&'a [Value], ShapeError> {
    match value {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(path.error("a list", other)),
    }
}

fn expect_scalar(
    value: Option<&Value>,
    path: &Path,
    expected: &'static str,
    fits: fn(&Value) -> bool,
) -> Result<(), ShapeError> {
    match value {
        None | Some(Value::Null) => Ok(()),
        Some(v) if fits(v) => Ok(()),
        Some(other) => Err(path.error(expected, other)),
    }
}

fn string(map: &Map<String, Value>, key: &str, path: &Path) -> Result<(), ShapeError> {
    expect_scalar(map.field(key), &path.key(key), "a string", Value::is_string)
}

fn boolean(map: &Map<String, Value>, key: &str, path: &Path) -> Result<(), ShapeError> {
    expect_scalar(map.field(key), &path.key(key), "a boolean", Value::is_boolean)
}

fn integer(map: &Map<String, Value>, key: &str, path: &Path) -> Result<(), ShapeError> {
    expect_scalar(map.field(key), &path.key(key), "an integer", |v| v.is_i64() || v.is_u64())
}

/// A probe's port is a number or a port name.
fn int_or_string(map: &Map<String, Value>, key: &str, path: &Path) -> Result<(), ShapeError> {
    expect_scalar(map.field(key), &path.key(key), "an integer or a string", |v| {
        v.is_i64() || v.is_u64() || v.is_string()
    })
}

fn each_map<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    path: &Path,
    mut check_item: impl FnMut(&'a Map<String, Value>, &Path) -> Result<(), ShapeError>,
) -> Result<(), ShapeError> {
    let list_path = path.key(key);
    for (i, item) in expect_list(map.field(key), &list_path)?.iter().enumerate() {
        let item_path = list_path.index(i);
        if let Some(item) = expect_map(item, &item_path, "a mapping")? {
            check_item(item, &item_path)?;
        }
    }
    Ok(())
}

fn string_map(map: &Map<String, Value>, key: &str, path: &Path) -> Result<(), ShapeError> {
    let map_path = path.key(key);
    let Some(entries) = expect_map(map.field(key).unwrap_or(&Value::Null), &map_path, "a mapping of strings")? else {
        return Ok(());
    };
    for (entry, value) in entries {
        if !value.is_string() {
            return Err(map_path.key(entry).error("a string", value));
        }
    }
    Ok(())
}

fn metadata(value: Option<&Value>, path: &Path) -> Result<(), ShapeError> {
    let Some(meta) = expect_map(value.unwrap_or(&Value::Null), path, "a mapping")? else { return Ok(()) };
    for key in ["name", "generateName", "namespace"] {
        string(meta, key, path)?;
    }
    string_map(meta, "annotations", path)?;
    string_map(meta, "labels", path)?;
    each_map(meta, "ownerReferences", path, |owner, at| {
        for key in ["kind", "name", "apiVersion"] {
            string(owner, key, at)?;
        }
        boolean(owner, "controller", at)
    })
}

fn pod_spec(spec: &Map<String, Value>, path: &Path) -> Result<(), ShapeError> {
    boolean(spec, "hostNetwork", path)?;
    boolean(spec, "automountServiceAccountToken", path)?;
    each_map(spec, "volumes", path, |volume, at| string(volume, "name", at))?;
    each_map(spec, "initContainers", path, container)?;
    each_map(spec, "containers", path, container)
}

fn container(container: &Map<String, Value>, path: &Path) -> Result<(), ShapeError> {
    string(container, "name", path)?;
    string(container, "image", path)?;
    each_map(container, "ports", path, |port, at| {
        integer(port, "containerPort", at)?;
        string(port, "name", at)?;
        string(port, "protocol", at)
    })?;
    expect_list(container.field("env"), &path.key("env"))?;
    each_map(container, "volumeMounts", path, |mount, at| {
        string(mount, "name", at)?;
        string(mount, "mountPath", at)?;
        boolean(mount, "readOnly", at)
    })?;
    let security_path = path.key("securityContext");
    if let Some(security) =
        expect_map(container.field("securityContext").unwrap_or(&Value::Null), &security_path, "a mapping")?
    {
        let caps_path = security_path.key("capabilities");
        if let Some(caps) = expect_map(security.field("capabilities").unwrap_or(&Value::Null), &caps_path, "a mapping")?
        {
            for list in ["add", "drop"] {
                let list_path = caps_path.key(list);
                for (i, cap) in expect_list(caps.field(list), &list_path)?.iter().enumerate() {
                    expect_scalar(Some(cap), &list_path.index(i), "a string", Value::is_string)?;
                }
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe"] {
        let probe_path = path.key(probe);
        let Some(probe) = expect_map(container.field(probe).unwrap_or(&Value::Null), &probe_path, "a mapping")? else {
            continue;
        };
        let get_path = probe_path.key("httpGet");
        if let Some(http_get) = expect_map(probe.field("httpGet").unwrap_or(&Value::Null), &get_path, "a mapping")? {
            int_or_string(http_get, "port", &get_path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn error_of(object: Value) -> String {
        check(&object, None).unwrap_err().to_string()
    }

    #[test]
    fn wrong_types_name_the_field_path() {
        assert_eq!(
            error_of(json!({"kind": "Deployment", "spec": {"template": {"spec": {"containers": "nope"}}}})),
            "spec.template.spec.containers: expected a list, found a string"
        );
        assert_eq!(
            error_of(json!({"kind": "Deployment", "metadata": [1, 2]})),
            "metadata: expected a mapping, found a list"
        );
        assert_eq!(
            error_of(json!({"kind": "Pod", "metadata": {"annotations": {"a": ["x"]}}})),
            "metadata.annotations.a: expected a string, found a list"
        );
        assert_eq!(
            error_of(
                json!({"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"metadata": {"labels": 3}}}}}})
            ),
            "spec.jobTemplate.spec.template.metadata.labels: expected a mapping of strings, found a number"
        );
        assert_eq!(
            error_of(
                json!({"kind": "Pod", "spec": {"containers": [{"name": "a", "ports": [{"containerPort": "80"}]}]}})
            ),
            "spec.containers[0].ports[0].containerPort: expected an integer, found a string"
        );
        assert_eq!(
            error_of(json!({"kind": "Pod", "spec": {"hostNetwork": "yes"}})),
            "spec.hostNetwork: expected a boolean, found a string"
        );
    }

    #[test]
    fn well_formed_objects_and_nulls_pass() {
        let ok = json!({"kind": "Deployment", "metadata": {"name": "w", "annotations": null},
            "spec": {"template": {"metadata": null, "spec": {"containers": [{"name": "a", "ports": null,
                "livenessProbe": {"httpGet": {"port": "http"}}}], "volumes": null}}}});
        assert_eq!(check(&ok, None), Ok(()));
        assert_eq!(check(&json!({"kind": "ConfigMap", "data": 1}), None), Ok(()));
    }

    #[test]
    fn yaml_booleans_and_numbers_in_metadata_become_strings() {
        let mut object = json!({"kind": "Deployment", "metadata": {"labels": {"tier": 1}},
            "spec": {"template": {"metadata": {"annotations": {"config.linkerd.io/enable-debug-sidecar": true}}}}});
        let converted = stringify_metadata_scalars(&mut object, None);
        assert_eq!(
            object["spec"]["template"]["metadata"]["annotations"]["config.linkerd.io/enable-debug-sidecar"],
            "true"
        );
        assert_eq!(object["metadata"]["labels"]["tier"], "1");
        assert_eq!(converted.len(), 2);
        assert_eq!(converted[1].path, "spec.template.metadata.annotations.config.linkerd.io/enable-debug-sidecar");
    }
}
