//! Field lookup on decoded objects. serde_json's ordered map hashes every key it is asked for
//! with SipHash; the objects injection reads (containers, ports, probes, metadata) have a handful
//! of fields, where comparing keys costs less than hashing one. Checking a 64 KB pod's shape
//! spent half its time hashing.

use serde_json::{Map, Value};

/// Past this many fields a map is searched through its hash index.
const SCAN_LIMIT: usize = 12;

pub trait Fields {
    /// The value under `key`, if this is a map that has it.
    fn field(&self, key: &str) -> Option<&Value>;
}

impl Fields for Map<String, Value> {
    fn field(&self, key: &str) -> Option<&Value> {
        if self.len() > SCAN_LIMIT {
            return self.get(key);
        }
        self.iter().find_map(|(k, v)| (k == key).then_some(v))
    }
}

impl Fields for Value {
    fn field(&self, key: &str) -> Option<&Value> {
        self.as_object()?.field(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_what_get_finds_in_small_and_big_maps() {
        let small = json!({"name": "a", "image": "b", "ports": []});
        let big: Map<String, Value> = (0..40).map(|i| (format!("k{i}"), json!(i))).collect();
        for key in ["name", "image", "ports", "missing", ""] {
            assert_eq!(small.field(key), small.get(key), "{key}");
        }
        for key in ["k0", "k39", "k40"] {
            assert_eq!(big.field(key), big.get(key), "{key}");
        }
        assert_eq!(json!([1]).field("0"), None);
        assert_eq!(json!("text").field("len"), None);
    }
}
