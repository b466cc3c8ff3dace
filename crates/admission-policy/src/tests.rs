use serde_json::{Value, json};

use super::*;

const EXAMPLE_VALUES: &str = include_str!("../../../examples/values.yaml");
const INSTALL_DEFAULT_VALUES: &str = include_str!("../../../fixtures/linkerd-config/install-default.values.yaml");

fn injector(values: &str, overrides: Value) -> Injector {
    let mut document = manifest::parse_stream(values).unwrap().remove(0).value;
    inject::values::merge_value(&mut document, overrides);
    Injector::new(inject::values::ValuesDocument::from_value(document).unwrap(), "linkerd").unwrap()
}

fn options() -> Options {
    Options {
        name: POLICY_NAME.into(),
        failure_policy: "Ignore",
        namespace_selector: json!({}),
        object_selector: json!({}),
        control_plane_ns: "linkerd".into(),
    }
}

#[test]
fn the_unedited_install_values_and_the_examples_compile() {
    for values in [EXAMPLE_VALUES, INSTALL_DEFAULT_VALUES] {
        let mut overrides = json!({});
        if !values.contains("identityTrustAnchorsPEM: |") {
            overrides = json!({"identityTrustAnchorsPEM": manifest::parse_stream(EXAMPLE_VALUES).unwrap()[0].value["identityTrustAnchorsPEM"]});
        }
        let compiled = compile(&injector(values, overrides), &options()).unwrap();
        let mutation = compiled.policy["spec"]["mutations"][0]["jsonPatch"]["expression"].as_str().unwrap();
        assert!(mutation.contains(&compiled.fingerprint()), "the pods carry the policy's digest");
        assert_eq!(compiled.policy["metadata"]["annotations"][COMPILED_FROM], compiled.digest);
    }
}

#[test]
fn what_the_policy_cannot_compile_is_refused_by_name() {
    let tracing = json!({"proxy": {"tracing": {"enabled": true, "collector": {"endpoint": "c:4317",
        "meshIdentity": {"serviceAccountName": "c", "namespace": "t"}}}}});
    let error = compile(&injector(EXAMPLE_VALUES, tracing), &options()).unwrap_err();
    assert!(error.to_string().contains("proxy.tracing.enabled"), "{error}");
    let named =
        compile(&injector(EXAMPLE_VALUES, json!({"proxy": {"opaquePorts": "25,mysql"}})), &options()).unwrap_err();
    assert!(named.to_string().contains("proxy.opaquePorts"), "{named}");
}

#[test]
fn the_readme_names_every_condition_the_policy_leaves_to_the_webhook() {
    let readme = include_str!("../../../README.md");
    let every = Support { token_projection: false, opaque_ports_annotation: true };
    let names: Vec<&str> = support::conditions(&every).iter().map(|c| c.name).collect();
    assert_eq!(names.len(), 8, "every condition, with both optional ones");
    for name in names {
        assert!(readme.contains(&format!("- `{name}`")) || readme.contains(&format!("and `{name}`")), "README: {name}");
    }
}
