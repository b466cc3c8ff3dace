//! Kubernetes label selectors (`matchLabels` and `matchExpressions`), over namespace labels.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelSelector {
    /// What the apiserver would refuse in a selector, as text naming the requirement.
    pub fn problem(&self) -> Option<String> {
        self.match_expressions.iter().find_map(|r| match (r.operator, r.values.is_empty()) {
            (Operator::In | Operator::NotIn, true) => {
                Some(format!("matchExpressions for key {:?}: {:?} needs values", r.key, r.operator))
            }
            (Operator::Exists | Operator::DoesNotExist, false) => {
                Some(format!("matchExpressions for key {:?}: {:?} takes no values", r.key, r.operator))
            }
            _ => None,
        })
    }

    /// As Kubernetes matches: every label and every requirement; an empty selector matches all.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator {
                    Operator::In => value.is_some_and(|v| r.values.contains(v)),
                    Operator::NotIn => value.is_none_or(|v| !r.values.contains(v)),
                    Operator::Exists => value.is_some(),
                    Operator::DoesNotExist => value.is_none(),
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn selector(json: serde_json::Value) -> LabelSelector {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn matches_as_kubernetes_does() {
        let team = labels(&[("mesh", "required"), ("team", "payments")]);
        assert!(selector(serde_json::json!({})).matches(&team), "an empty selector matches everything");
        assert!(selector(serde_json::json!({"matchLabels": {"mesh": "required"}})).matches(&team));
        assert!(!selector(serde_json::json!({"matchLabels": {"mesh": "optional"}})).matches(&team));
        let expr = |op: &str, values: &[&str]| {
            selector(serde_json::json!({"matchExpressions": [{"key": "team", "operator": op, "values": values}]}))
        };
        assert!(expr("In", &["payments", "search"]).matches(&team));
        assert!(!expr("In", &["search"]).matches(&team));
        assert!(expr("NotIn", &["search"]).matches(&team));
        assert!(expr("NotIn", &["search"]).matches(&labels(&[])), "NotIn matches an absent label");
        assert!(expr("Exists", &[]).matches(&team));
        assert!(!expr("DoesNotExist", &[]).matches(&team));
    }

    #[test]
    fn malformed_requirements_are_named() {
        let bad = selector(serde_json::json!({"matchExpressions": [{"key": "team", "operator": "In"}]}));
        assert_eq!(bad.problem().unwrap(), "matchExpressions for key \"team\": In needs values");
        let bad =
            selector(serde_json::json!({"matchExpressions": [{"key": "t", "operator": "Exists", "values": ["x"]}]}));
        assert_eq!(bad.problem().unwrap(), "matchExpressions for key \"t\": Exists takes no values");
        assert!(serde_json::from_value::<LabelSelector>(serde_json::json!({"matchLabel": {}})).is_err());
    }
}
