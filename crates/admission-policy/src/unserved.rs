//! Without the webhook (`install --injection policy`), a pod that opted in but is outside the
//! policy's support would be created without a proxy and without a word. This
//! ValidatingAdmissionPolicy (which the apiserver evaluates after every mutation) warns whoever
//! applies such a pod, names the conditions it fails, and records the event in the audit log.

use inject::annotation::{self as key};
use inject::decision;
use inject::render::PROXY_CONTAINER;
use serde_json::{Value, json};

use crate::support::{self, Support};
use crate::{Options, cel};

/// CEL: the pod asks for a proxy, by its own annotation or its namespace's.
fn opted_in() -> String {
    let wants = cel::string_list(decision::INJECT_VALUES.iter().copied().filter(|v| *v != "disabled"));
    let own = format!("object.metadata.?annotations[?{}]", cel::string(key::INJECT));
    let namespace = format!("namespaceObject.metadata.?annotations[?{}]", cel::string(key::INJECT));
    format!("({own}.orValue('') in {wants} || (!{own}.hasValue() && {namespace}.orValue('') in {wants}))")
}

/// CEL: the pod has the proxy (the policy, or anything before it, added one).
fn has_proxy() -> String {
    let named = format!("c.name == {}", cel::string(PROXY_CONTAINER));
    format!("(object.spec.containers.exists(c, {named}) || object.spec.?initContainers.orValue([]).exists(c, {named}))")
}

/// The warning policy's name beside the mutating policy's: `unserved.proxy-injector.linkerd.io`.
pub fn name(policy_name: &str) -> String {
    format!("unserved.{policy_name}")
}

/// The warning policy and its binding, for the namespaces and objects the mutation reaches.
pub fn warning(support: &Support, options: &Options) -> Vec<Value> {
    let reasons: Vec<String> = support::conditions(support)
        .into_iter()
        .map(|c| format!("({}) ? '' : {}", c.cel(support), cel::string(c.unmet)))
        .collect();
    let name = name(&options.name);
    let message = format!(
        "'this pod opted in to the Linkerd proxy but is created without one: the admission policy {} \
         does not inject it' + (size(variables.unmet) > 0 ? ' (' + variables.unmet.join('; ') + ')' : '') + \
         ', and no webhook is installed for the pods it leaves (install --injection both)'",
        options.name
    );
    let labels = options.labels();
    vec![
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "failurePolicy": "Ignore",
                "matchConstraints": options.pod_creations(),
                "variables": [{"name": "unmet", "expression": format!("[{}].filter(r, r != '')", reasons.join(", "))}],
                "validations": [{"expression": format!("!{} || {}", opted_in(), has_proxy()),
                    "messageExpression": message, "reason": "Invalid"}],
            },
        }),
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name, "labels": labels},
            "spec": {"policyName": name, "validationActions": ["Warn", "Audit"]},
        }),
    ]
}
