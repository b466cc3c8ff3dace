//! Decodes the admitted object keeping only what injection reads. The parts it never looks at
//! (environment variables, commands, resources, volume sources, `managedFields`, `status`) are
//! scanned without being built (see `json_reader`): each becomes an empty value of its own JSON type, so the
//! object's shape, which the engine checks, is kept while its bulk costs no allocation.

use serde_json::{Map, Value};

use crate::json_reader::{JsonError, Kind, Reader};

/// Where in the object a value sits, which decides what of it is kept.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Level {
    /// The admitted object itself.
    Object,
    Metadata,
    Spec,
    Containers,
    Container,
    Volumes,
    Volume,
    /// Kept whole.
    Whole,
    /// Only its JSON type is kept.
    Skimmed,
}

/// Container fields injection reads: sidecar detection, ports, probes, the security context
/// and service-account mount it copies, and the `env` list's type (checked, never read).
const CONTAINER_FIELDS: &[&str] =
    &["name", "image", "ports", "livenessProbe", "readinessProbe", "securityContext", "volumeMounts"];

impl Level {
    fn field(self, key: &str) -> Level {
        match (self, key) {
            (Level::Object, "metadata") => Level::Metadata,
            (Level::Object, "spec") => Level::Spec,
            (Level::Object, "status") | (Level::Metadata, "managedFields") => Level::Skimmed,
            (Level::Spec, "containers" | "initContainers") => Level::Containers,
            // A workload's pod template (and a CronJob's Job template) reads like an object.
            (Level::Spec, "template" | "jobTemplate") => Level::Object,
            (Level::Spec, "volumes") => Level::Volumes,
            (Level::Container, key) if CONTAINER_FIELDS.contains(&key) => Level::Whole,
            (Level::Container, _) => Level::Skimmed,
            (Level::Volume, "name") => Level::Whole,
            (Level::Volume, _) => Level::Skimmed,
            _ => Level::Whole,
        }
    }

    fn item(self) -> Level {
        match self {
            Level::Containers => Level::Container,
            Level::Volumes => Level::Volume,
            _ => Level::Whole,
        }
    }
}

/// Reads the next value as `level` says: containers by field, kept values whole, the rest
/// skimmed.
pub fn read(reader: &mut Reader<'_>, level: Level) -> Result<Value, JsonError> {
    if level == Level::Skimmed {
        return reader.skim();
    }
    match reader.kind()? {
        Kind::Object => {
            let mut fields = Map::new();
            reader.object(|reader, key| {
                let value = read(reader, level.field(&key))?;
                fields.insert(key.into_owned(), value);
                Ok(())
            })?;
            Ok(Value::Object(fields))
        }
        Kind::Array => {
            let mut items = Vec::new();
            reader.array(|reader| {
                items.push(read(reader, level.item())?);
                Ok(())
            })?;
            Ok(Value::Array(items))
        }
        _ => reader.scalar(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn view(object: &Value) -> Value {
        let text = object.to_string();
        let mut reader = Reader::new(text.as_bytes()).unwrap();
        read(&mut reader, Level::Object).unwrap()
    }

    /// What the view of `value` must be, computed from the whole value.
    fn expected(level: Level, value: &Value) -> Value {
        match (level, value) {
            (Level::Skimmed, Value::Object(_)) => json!({}),
            (Level::Skimmed, Value::Array(_)) => json!([]),
            (Level::Skimmed, Value::String(_)) => json!(""),
            (Level::Skimmed, Value::Number(_)) => json!(0),
            (Level::Skimmed, Value::Bool(_)) => json!(false),
            (_, Value::Object(fields)) => {
                Value::Object(fields.iter().map(|(k, v)| (k.clone(), expected(level.field(k), v))).collect())
            }
            (_, Value::Array(items)) => Value::Array(items.iter().map(|v| expected(level.item(), v)).collect()),
            (_, scalar) => scalar.clone(),
        }
    }

    /// JSON values whose keys include the ones the view treats apart.
    fn any_object() -> impl Strategy<Value = Value> {
        let keys = prop::sample::select(vec![
            "metadata",
            "spec",
            "status",
            "managedFields",
            "containers",
            "initContainers",
            "template",
            "jobTemplate",
            "volumes",
            "name",
            "image",
            "ports",
            "env",
            "command",
            "securityContext",
            "x",
            "caf\u{e9}",
            "a\"b",
            "\\",
        ]);
        let scalar = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e12f64..1e12).prop_map(Value::from),
            "[ -~\\n\\t\u{e9}\u{1F600}]{0,12}".prop_map(Value::String),
        ];
        scalar.prop_recursive(6, 64, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((keys.clone(), inner), 0..6)
                    .prop_map(|entries| Value::Object(entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn the_view_of_any_value_is_the_whole_value_skimmed(value in any_object(), pretty in any::<bool>()) {
            let text = if pretty { serde_json::to_string_pretty(&value) } else { serde_json::to_string(&value) }.unwrap();
            // What serde_json decodes, floats' rounding included, is what the view must keep.
            let decoded: Value = serde_json::from_str(&text).unwrap();
            let mut reader = Reader::new(text.as_bytes()).unwrap();
            prop_assert_eq!(read(&mut reader, Level::Object).unwrap(), expected(Level::Object, &decoded));
            reader.finish().unwrap();
        }

        #[test]
        fn a_damaged_value_serde_json_takes_is_taken(value in any_object(), at in any::<prop::sample::Index>(),
            byte in prop::sample::select(b"{}[]:,\"\\ 0-.etn\x01".to_vec())) {
            let mut text = serde_json::to_string(&value).unwrap().into_bytes();
            let at = at.index(text.len());
            text[at] = byte;
            let ours = Reader::new(&text).and_then(|mut reader| {
                read(&mut reader, Level::Object)?;
                reader.finish()
            });
            // Skipped containers are checked for their strings and brackets, not for the grammar
            // between them, so the view may take what serde_json refuses, never the reverse.
            let theirs = serde_json::from_slice::<Value>(&text);
            if theirs.is_ok() {
                prop_assert!(ours.is_ok(), "{}: {:?}", String::from_utf8_lossy(&text), ours);
            }
        }
    }

    #[test]
    fn keeps_what_injection_reads_and_the_shape_of_the_rest() {
        let pod = json!({"kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}, "managedFields": [{"manager": "x"}]},
            "spec": {"containers": [{"name": "app", "image": "nginx", "env": [{"name": "A", "value": "1"}],
                "command": ["sh"], "ports": [{"containerPort": 80}], "resources": {"limits": {"cpu": "1"}},
                "volumeMounts": [{"name": "v", "mountPath": "/v"}]}],
                "volumes": [{"name": "v", "configMap": {"name": "c"}}], "hostNetwork": true, "nodeName": "n"},
            "status": {"phase": "Pending"}});
        assert_eq!(
            view(&pod),
            json!({"kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}, "managedFields": []},
                "spec": {"containers": [{"name": "app", "image": "nginx", "env": [], "command": [],
                    "ports": [{"containerPort": 80}], "resources": {}, "volumeMounts": [{"name": "v", "mountPath": "/v"}]}],
                    "volumes": [{"name": "v", "configMap": {}}], "hostNetwork": true, "nodeName": "n"},
                "status": {}})
        );
    }

    #[test]
    fn wrong_types_stay_wrong() {
        let pod = json!({"kind": "Pod", "spec": {"containers": "nope", "volumes": [7]}, "metadata": []});
        assert_eq!(view(&pod), pod);
        let skimmed = json!({"kind": "Pod", "spec": {"containers": [{"name": "a", "env": "x", "args": 3}]}});
        assert_eq!(
            view(&skimmed),
            json!({"kind": "Pod", "spec": {"containers": [{"name": "a", "env": "", "args": 0}]}})
        );
    }

    #[test]
    fn the_engine_answers_the_view_as_it_answers_the_whole_object() {
        let anchors = json!({"identityTrustAnchorsPEM": "-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n"});
        let injector =
            inject::Injector::new(inject::values::ValuesDocument::from_value(anchors).unwrap(), "linkerd").unwrap();
        let env: Vec<Value> = (0..50).map(|i| json!({"name": format!("V{i}"), "value": "x"})).collect();
        let pods = [
            json!({"kind": "Pod", "metadata": {"name": "a", "annotations": {"linkerd.io/inject": "enabled",
                    "config.linkerd.io/opaque-ports": "http,9000", "config.linkerd.io/enable-debug-sidecar": "true"}},
                "spec": {"initContainers": [{"name": "init", "image": "i", "ports": [{"containerPort": 11211}]}],
                    "containers": [{"name": "web", "image": "w", "env": env, "command": ["run"],
                        "ports": [{"containerPort": 8080, "name": "http"}, {"containerPort": 3306}],
                        "livenessProbe": {"httpGet": {"port": 8080}}, "readinessProbe": {"httpGet": {"port": "http"}},
                        "securityContext": {"capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}},
                        "volumeMounts": [{"name": "sa", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]}],
                    "volumes": [{"name": "sa", "projected": {"sources": []}}]},
                "status": {"phase": "Pending"}}),
            json!({"kind": "Pod", "metadata": {"name": "b"}, "spec": {"hostNetwork": true, "containers": [{"name": "x"}]}}),
            json!({"kind": "Pod", "metadata": {"name": "c"}, "spec": {"containers": [{"name": "istio-proxy", "image": "p"}]}}),
        ];
        let namespace = json!({"linkerd.io/inject": "enabled"});
        for pod in pods {
            let answer = |object: &Value| {
                let origin = inject::Origin::Webhook {
                    namespace: "ns",
                    namespace_annotations: namespace.as_object(),
                    owner: None,
                };
                let outcome = injector.evaluate(&inject::Request { object, kind: Some("Pod"), origin }).unwrap();
                (outcome.patch.to_json(), outcome.warnings, outcome.reasons)
            };
            assert_eq!(answer(&view(&pod)), answer(&pod), "{pod}");
        }
    }

    #[test]
    fn services_and_other_objects_are_kept_whole() {
        let service = json!({"kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80, "targetPort": "http"}]}});
        assert_eq!(view(&service), service);
    }
}
