//! Writing CEL: string literals, and JSON values as CEL literals.
//!
//! Kubernetes CEL refuses list and map literals whose elements differ in type, so a JSON object
//! whose keys are all identifiers becomes a typed object (`Object.spec.containers{name: ...}`,
//! the type named by its field path, which the apiserver checks), and only maps with keys like
//! `linkerd.io/x` become map literals. Expressions are spliced into a value through markers:
//! a string that starts with [`EXPRESSION`] is written as the CEL after it, and a key that starts
//! with `?` becomes an optional field (`?key: <optional expression>`).

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::CompileError;

/// Marks a JSON string as CEL to be written as it is.
pub const EXPRESSION: char = '\u{1}';

/// A JSON string holding the expression `cel`, for [`literal`].
pub fn expression(cel: impl AsRef<str>) -> Value {
    Value::String(format!("{EXPRESSION}{}", cel.as_ref()))
}

/// A CEL string literal.
pub fn string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A list of strings as a CEL list literal.
pub fn string_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let items: Vec<String> = items.into_iter().map(string).collect();
    format!("[{}]", items.join(", "))
}

const RESERVED: &[&str] = &[
    "as",
    "break",
    "const",
    "continue",
    "else",
    "false",
    "for",
    "function",
    "if",
    "import",
    "in",
    "let",
    "loop",
    "package",
    "namespace",
    "null",
    "return",
    "true",
    "var",
    "void",
    "while",
];

fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !RESERVED.contains(&key)
}

/// `value` as a CEL literal; objects are typed `type_path{...}`. `pointer` names the value in
/// errors.
pub fn literal(value: &Value, type_path: &str, pointer: &str) -> Result<String, CompileError> {
    let mut out = String::new();
    write_literal(value, type_path, pointer, &mut out)?;
    Ok(out)
}

fn write_literal(value: &Value, type_path: &str, pointer: &str, out: &mut String) -> Result<(), CompileError> {
    let unsupported = |why: &str| CompileError::Inexpressible { pointer: pointer.to_string(), why: why.to_string() };
    match value {
        Value::String(s) => match s.strip_prefix(EXPRESSION) {
            Some(cel) => out.push_str(cel),
            None => out.push_str(&string(s)),
        },
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match n.as_i64() {
            Some(i) => {
                let _ = write!(out, "{i}");
            }
            None => return Err(unsupported("only integers are written (no fractions, nothing above 2^63)")),
        },
        Value::Null => return Err(unsupported("null has no place in a typed object")),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_literal(item, type_path, &format!("{pointer}/{i}"), out)?;
            }
            out.push(']');
        }
        Value::Object(map) => write_object(map, type_path, pointer, out)?,
    }
    Ok(())
}

fn field(key: &str) -> &str {
    key.strip_prefix('?').unwrap_or(key)
}

fn write_object(
    map: &Map<String, Value>,
    type_path: &str,
    pointer: &str,
    out: &mut String,
) -> Result<(), CompileError> {
    if map.keys().all(|k| is_identifier(field(k))) {
        out.push_str(type_path);
        out.push('{');
        for (i, (key, value)) in map.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let name = field(key);
            let _ = write!(out, "{key}: ");
            write_literal(value, &format!("{type_path}.{name}"), &format!("{pointer}/{name}"), out)?;
        }
        out.push('}');
        return Ok(());
    }
    // A map (annotations, resource quantities): its values must be of one kind.
    if map.values().any(|v| !v.is_string()) {
        return Err(CompileError::Inexpressible {
            pointer: pointer.to_string(),
            why: "a map with keys that are not identifiers must hold only strings".into(),
        });
    }
    out.push('{');
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&string(key));
        out.push_str(": ");
        write_literal(value, type_path, &format!("{pointer}/{key}"), out)?;
    }
    out.push('}');
    Ok(())
}

/// Whether a constant carries a marker of its own (it would be read as CEL).
pub fn has_marker(value: &Value) -> bool {
    match value {
        Value::String(s) => s.starts_with(EXPRESSION),
        Value::Array(items) => items.iter().any(has_marker),
        Value::Object(map) => map.iter().any(|(k, v)| k.starts_with('?') || has_marker(v)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_escape_quotes_backslashes_and_control_characters() {
        assert_eq!(string("a\"b\\c\nd\u{7}é"), r#""a\"b\\c\nd\u0007é""#);
    }

    #[test]
    fn objects_with_identifier_keys_are_typed_by_their_path() {
        let value = json!({"name": "p", "ports": [{"containerPort": 4191, "name": "admin"}],
            "securityContext": {"readOnlyRootFilesystem": true}});
        assert_eq!(
            literal(&value, "Object.spec.containers", "").unwrap(),
            "Object.spec.containers{name: \"p\", ports: [Object.spec.containers.ports{containerPort: 4191, name: \"admin\"}], \
             securityContext: Object.spec.containers.securityContext{readOnlyRootFilesystem: true}}"
        );
    }

    #[test]
    fn maps_expressions_and_optional_fields() {
        let value = json!({"limits": {"ephemeral-storage": "1Gi"}, "?capabilities": expression("variables.c"),
            "value": expression("variables.v")});
        assert_eq!(
            literal(&value, "T", "").unwrap(),
            "T{limits: {\"ephemeral-storage\": \"1Gi\"}, ?capabilities: variables.c, value: variables.v}"
        );
    }

    #[test]
    fn what_cel_cannot_hold_is_refused_with_its_place() {
        let error = literal(&json!({"a": [{"x.y": {"z": 1}}]}), "T", "/c").unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot write /c/a/0 as CEL: a map with keys that are not identifiers must hold only strings"
        );
        assert!(literal(&json!({"a": 1.5}), "T", "").is_err());
        assert!(literal(&json!({"in": 1}), "T", "").is_err(), "a reserved word is no field name");
        assert!(has_marker(&json!({"a": ["\u{1}x"]})) && !has_marker(&json!({"a": "x"})));
    }
}
