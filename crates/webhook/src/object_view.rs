//! Decodes the admitted object keeping only what injection reads. The parts it never looks at
//! (environment variables, commands, resources, volume sources, `managedFields`, `status`) are
//! scanned without being built: each becomes an empty value of its own JSON type, so the
//! object's shape, which the engine checks, is kept while its bulk costs no allocation.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Where in the object a value sits, which decides what of it is kept.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Level {
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

impl<'de> DeserializeSeed<'de> for Level {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        match self {
            Level::Whole => serde::Deserialize::deserialize(deserializer),
            level => deserializer.deserialize_any(LevelVisitor(level)),
        }
    }
}

struct LevelVisitor(Level);

impl<'de> Visitor<'de> for LevelVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(if self.0 == Level::Skimmed { Value::Bool(false) } else { Value::Bool(v) })
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(if self.0 == Level::Skimmed { Value::from(0) } else { Value::from(v) })
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(if self.0 == Level::Skimmed { Value::from(0) } else { Value::from(v) })
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(if self.0 == Level::Skimmed { Value::from(0) } else { Value::from(v) })
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(if self.0 == Level::Skimmed { String::new() } else { v.to_owned() }))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(if self.0 == Level::Skimmed { String::new() } else { v }))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        if self.0 == Level::Skimmed {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
        } else {
            while let Some(item) = seq.next_element_seed(self.0.item())? {
                items.push(item);
            }
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = Map::new();
        if self.0 == Level::Skimmed {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        } else {
            while let Some(key) = map.next_key::<String>()? {
                let value = map.next_value_seed(self.0.field(&key))?;
                fields.insert(key, value);
            }
        }
        Ok(Value::Object(fields))
    }
}

/// `deserialize_with` for the AdmissionRequest's `object`.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    let value = Level::Object.deserialize(deserializer)?;
    Ok((!value.is_null()).then_some(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(object: &Value) -> Value {
        let text = object.to_string();
        let mut deserializer = serde_json::Deserializer::from_str(&text);
        Level::Object.deserialize(&mut deserializer).unwrap()
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
