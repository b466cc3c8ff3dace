//! RFC 6902 JSON patches made only of `add` operations, with RFC 6901 pointer escaping.

use serde::{Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::json_text;

/// An operation's value as JSON text, written once when the operation is added: the webhook
/// sends it as it is, and the fingerprint digests it.
#[derive(Debug, Clone)]
pub struct PatchValue(Box<str>);

impl PatchValue {
    /// The value's compact JSON text.
    pub fn text(&self) -> &str {
        &self.0
    }

    /// The value as a tree (parsed from its text).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.0).expect("the engine writes valid JSON")
    }

    fn tree(&self, parsed: &mut ParsedValues) -> Value {
        if let Some((_, value)) = parsed.recent.iter().find(|(text, _)| *text == self.0) {
            return value.clone();
        }
        let value = self.to_value();
        if parsed.recent.len() == ParsedValues::HELD {
            parsed.recent.remove(0);
        }
        parsed.recent.push((self.0.clone(), value.clone()));
        value
    }
}

impl Serialize for PatchValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw = RawValue::from_string(self.0.to_string()).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

/// The trees of the values parsed last, with their texts. The CLI applies a patch to every
/// workload of a stream, and most operations (the proxy container above all) are the same text for
/// every workload with the same configuration and ports; a copy of a tree costs a fraction of
/// parsing it.
#[derive(Debug, Default)]
pub struct ParsedValues {
    recent: Vec<(Box<str>, Value)>,
}

impl ParsedValues {
    /// More than the operations of one injection, so a stream's repeated ones stay.
    const HELD: usize = 32;
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
        let mut text = Vec::new();
        json_text::value(&mut text, &value);
        let text = String::from_utf8(text).expect("serde_json writes UTF-8");
        self.add_serialized(path, text.into_boxed_str());
    }

    /// Adds JSON text the engine wrote; it is written into the patch as it is.
    pub(crate) fn add_serialized(&mut self, path: String, json: Box<str>) {
        self.0.push(PatchOperation { op: "add", path, value: PatchValue(json) });
    }

    pub fn operations(&self) -> &[PatchOperation] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The patch as compact JSON, as the webhook sends it.
    pub fn to_json(&self) -> Vec<u8> {
        let len: usize = self.0.iter().map(|op| op.path.len() + op.value.text().len() + 32).sum();
        let mut out = Vec::with_capacity(len);
        json_text::list(&mut out, &self.0, |out, operation| {
            let mut object = json_text::Object::start(out);
            object.string("op", operation.op);
            object.string("path", &operation.path);
            object.key("value").extend_from_slice(operation.value.text().as_bytes());
            object.end();
        });
        out
    }

    /// Applies the patch in place; on error the target may be partly patched, so callers apply
    /// to a copy they can discard.
    pub fn apply(&self, target: &mut Value) -> Result<(), PatchError> {
        self.apply_reusing(target, &mut ParsedValues::default())
    }

    /// [`Patch::apply`], reusing the tree of a serialized value `parsed` holds when the text is
    /// the same.
    pub fn apply_reusing(&self, target: &mut Value, parsed: &mut ParsedValues) -> Result<(), PatchError> {
        self.0.iter().try_for_each(|op| add(target, &op.path, op.value.tree(parsed)))
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
            patch.add_serialized("/x".into(), text.into());
            patch
        };
        let (a, b) = (serialized(r#"{"name":"a","n":[1]}"#), serialized(r#"{"name":"b"}"#));
        let (a_tree, b_tree) = (json!({"name": "a", "n": [1]}), json!({"name": "b"}));
        let mut parsed = ParsedValues::default();
        for (patch, expected) in [(&a, &a_tree), (&a, &a_tree), (&b, &b_tree), (&a, &a_tree)] {
            let mut doc = json!({});
            patch.apply_reusing(&mut doc, &mut parsed).unwrap();
            assert_eq!(&doc["x"], expected);
        }
    }

    #[test]
    fn the_written_patch_is_what_serde_json_writes() {
        let mut patch = Patch::default();
        patch.add("/metadata/annotations".into(), json!({}));
        patch.add(format!("/metadata/annotations/{}", escape_token("a/\"quoted\"")), json!("x\ny"));
        patch.add_serialized("/spec/containers/-".into(), r#"{"name":"linkerd-proxy","env":[]}"#.into());
        let expected = json!([
            {"op": "add", "path": "/metadata/annotations", "value": {}},
            {"op": "add", "path": "/metadata/annotations/a~1\"quoted\"", "value": "x\ny"},
            {"op": "add", "path": "/spec/containers/-", "value": {"name": "linkerd-proxy", "env": []}},
        ]);
        assert_eq!(String::from_utf8(patch.to_json()).unwrap(), expected.to_string());
        assert_eq!(serde_json::to_value(&patch).unwrap(), expected);
    }

    #[test]
    fn reports_missing_parents() {
        let mut doc = json!({});
        let mut patch = Patch::default();
        patch.add("/spec/volumes/-".into(), json!({}));
        assert_eq!(patch.apply(&mut doc).unwrap_err().reason, "the parent does not exist");
    }
}
