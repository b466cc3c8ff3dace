//! RFC 6902 JSON patches made only of `add` operations, with RFC 6901 pointer escaping.

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// An operation's value: a JSON tree, or JSON already serialized (the proxy container, rendered
/// straight to text because it is most of every patch).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum PatchValue {
    Json(Value),
    Serialized(Box<RawValue>),
}

impl PatchValue {
    pub fn to_value(&self) -> Value {
        match self {
            PatchValue::Json(value) => value.clone(),
            PatchValue::Serialized(raw) => LAST_PARSED.with_borrow_mut(|last| {
                if let Some((_, value)) = last.as_ref().filter(|(text, _)| **text == *raw.get()) {
                    return value.clone();
                }
                let value: Value = serde_json::from_str(raw.get()).expect("rendered JSON is valid");
                *last = Some((raw.get().into(), value.clone()));
                value
            }),
        }
    }
}

thread_local! {
    /// The serialized value parsed back last, with its text. Applying a patch (the CLI does it for
    /// every workload of a stream) parses the rendered proxy container, which is the same text for
    /// every workload with the same configuration and ports; a copy of the tree costs a fraction
    /// of parsing it again.
    static LAST_PARSED: std::cell::RefCell<Option<(Box<str>, Value)>> = const { std::cell::RefCell::new(None) };
}

#[derive(Debug, Clone, Serialize)]
pub struct PatchOperation {
    pub op: &'static str,
    pub path: String,
    pub value: PatchValue,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct Patch(Vec<PatchOperation>);

/// A patch that does not fit the document it is applied to.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("cannot add at {path}: {reason}")]
pub struct PatchError {
    pub path: String,
    pub reason: &'static str,
}

/// Escapes one reference token: `~` → `~0`, `/` → `~1`.
pub fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

impl Patch {
    pub fn add(&mut self, path: String, value: Value) {
        self.0.push(PatchOperation { op: "add", path, value: PatchValue::Json(value) });
    }

    pub fn add_serialized(&mut self, path: String, value: Box<RawValue>) {
        self.0.push(PatchOperation { op: "add", path, value: PatchValue::Serialized(value) });
    }

    pub fn operations(&self) -> &[PatchOperation] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.0).expect("a patch of JSON values always serializes")
    }

    /// Applies the patch in place; on error the target may be partly patched, so callers apply
    /// to a copy they can discard.
    pub fn apply(&self, target: &mut Value) -> Result<(), PatchError> {
        self.0.iter().try_for_each(|op| add(target, &op.path, op.value.to_value()))
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn add(target: &mut Value, path: &str, value: Value) -> Result<(), PatchError> {
    let error = |reason| PatchError { path: path.to_string(), reason };
    if path.is_empty() {
        *target = value;
        return Ok(());
    }
    let (parent_path, last) = path.rsplit_once('/').ok_or_else(|| error("a pointer must start with /"))?;
    let parent = if parent_path.is_empty() { Some(target) } else { target.pointer_mut(parent_path) };
    match parent.ok_or_else(|| error("the parent does not exist"))? {
        Value::Object(map) => {
            map.insert(unescape(last), value);
            Ok(())
        }
        Value::Array(items) => {
            let index = if last == "-" { items.len() } else { last.parse().map_err(|_| error("bad array index"))? };
            if index > items.len() {
                return Err(error("array index out of bounds"));
            }
            items.insert(index, value);
            Ok(())
        }
        _ => Err(error("the parent is neither an object nor a list")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escapes_tilde_and_slash() {
        assert_eq!(escape_token("config.linkerd.io/a~b"), "config.linkerd.io~1a~0b");
        assert_eq!(unescape(&escape_token("a/~1")), "a/~1");
    }

    #[test]
    fn applies_adds_to_objects_and_lists() {
        let mut doc = json!({"metadata": {}, "spec": {"containers": [{"name": "a"}]}});
        let mut patch = Patch::default();
        patch.add("/metadata/annotations".into(), json!({}));
        patch.add(format!("/metadata/annotations/{}", escape_token("x/y")), json!("\"quoted\"\n"));
        patch.add("/spec/containers/0".into(), json!({"name": "first"}));
        patch.add("/spec/containers/-".into(), json!({"name": "last"}));
        patch.apply(&mut doc).unwrap();
        assert_eq!(doc["metadata"]["annotations"]["x/y"], "\"quoted\"\n");
        let names: Vec<_> = doc["spec"]["containers"].as_array().unwrap().iter().map(|c| c["name"].clone()).collect();
        assert_eq!(names, vec![json!("first"), json!("a"), json!("last")]);
        let parsed: json_patch::Patch = serde_json::from_slice(&patch.to_json()).unwrap();
        assert_eq!(parsed.0.len(), 4);
    }

    #[test]
    fn serialized_values_parse_to_their_own_tree_whatever_was_parsed_before() {
        let serialized = |text: &str| {
            let mut patch = Patch::default();
            patch.add_serialized("/x".into(), RawValue::from_string(text.into()).unwrap());
            patch
        };
        let (a, b) = (serialized(r#"{"name":"a","n":[1]}"#), serialized(r#"{"name":"b"}"#));
        let (a_tree, b_tree) = (json!({"name": "a", "n": [1]}), json!({"name": "b"}));
        for (patch, expected) in [(&a, &a_tree), (&a, &a_tree), (&b, &b_tree), (&a, &a_tree)] {
            let mut doc = json!({});
            patch.apply(&mut doc).unwrap();
            assert_eq!(&doc["x"], expected);
        }
    }

    #[test]
    fn reports_missing_parents() {
        let mut doc = json!({});
        let mut patch = Patch::default();
        patch.add("/spec/volumes/-".into(), json!({}));
        assert_eq!(patch.apply(&mut doc).unwrap_err().reason, "the parent does not exist");
    }
}
