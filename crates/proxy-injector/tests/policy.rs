//! Governance from the command line: `inject` and `explain` apply `proxyInjector.policy` as the
//! webhook does, and `install` registers what the rules need.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// `proxy-injector <command>` with the example values and the example policy.
fn cli(command_args: &[&str]) -> Command {
    let mut command = Command::cargo_bin("proxy-injector").unwrap();
    command.env_remove("KUBECONFIG").env_remove("LINKERD_NAMESPACE").env_remove("LINKERD_DOCKER_REGISTRY");
    command.args(command_args).arg("--values").arg(examples().join("values.yaml"));
    command.arg("--values").arg(examples().join("policy.yaml"));
    command
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn deployment(annotations: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  template:\n    metadata:\n      annotations:\n{annotations}\n    spec:\n      containers:\n      - name: web\n        image: web:v1\n"
    )
}

#[test]
fn an_enforced_rule_refuses_the_object_with_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "web.yaml", &deployment("        config.linkerd.io/proxy-image: docker.io/evil/proxy"));
    let output = cli(&["inject", "--manual", "--ignore-cluster"]).arg(&file).output().unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(output.stdout.is_empty(), "no partial output");
    assert!(stderr.contains("web.yaml: document 1 (deployment/web): the webhook would deny its pods"), "{stderr}");
    assert!(stderr.contains("policy rule proxyInjector.policy.images (enforce)"), "{stderr}");
    assert!(stderr.contains("\"docker.io/evil/proxy:"), "{stderr}");
    let big = write(&dir, "big.yaml", &deployment("        config.linkerd.io/proxy-memory-limit: 4Gi"));
    let output = cli(&["inject", "--manual", "--ignore-cluster"]).arg(&big).output().unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("config.linkerd.io/proxy-memory-limit: \"4Gi\" is above the allowed maximum 1Gi"),
        "{stderr}"
    );
}

#[test]
fn an_audited_rule_injects_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "web.yaml", &deployment("        config.linkerd.io/skip-inbound-ports: \"8080\""));
    let output = cli(&["inject", "--manual", "--ignore-cluster"]).arg(&file).output().unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{stderr}");
    assert!(String::from_utf8(output.stdout).unwrap().contains("name: linkerd-proxy"));
    assert!(
        stderr.contains("deployment/web: policy rule proxyInjector.policy.forbiddenOverrides (audit): the annotation config.linkerd.io/skip-inbound-ports may not be set"),
        "{stderr}"
    );
}

#[test]
fn explain_names_the_rules_with_the_namespace_labels() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "web.yaml", &deployment("        linkerd.io/inject: disabled"));
    let namespace = |labels: &str| {
        write(
            &dir,
            "ns.yaml",
            &format!(
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels:\n{labels}\n  annotations:\n    linkerd.io/inject: enabled\n"
            ),
        )
    };
    let explain = |namespace_file: &Path| -> Value {
        let output = cli(&["explain", "--ignore-cluster", "-o", "json"])
            .arg("--namespace-file")
            .arg(namespace_file)
            .arg(&file)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let required = explain(&namespace("    mesh: required"));
    let policy = &required[0]["result"]["policy"];
    assert_eq!(policy.as_array().unwrap().len(), 1, "{policy}");
    assert_eq!(policy[0]["rule"], "meshRequired");
    assert_eq!(policy[0]["mode"], "enforce");
    assert!(policy[0]["problem"].as_str().unwrap().contains("namespace \"shop\" requires the mesh"));
    let optional = explain(&namespace("    mesh: optional"));
    assert_eq!(optional[0]["result"]["policy"], serde_json::json!([]));
    let table = cli(&["explain", "--ignore-cluster"])
        .arg("--namespace-file")
        .arg(namespace("    mesh: required"))
        .arg(&file)
        .output()
        .unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.contains("  policy: denied by rule meshRequired: namespace \"shop\" requires the mesh"), "{table}");
}

fn registration(extra: &[&str]) -> Value {
    let output = Command::cargo_bin("proxy-injector")
        .unwrap()
        .args(["install", "--ignore-cluster", "-o", "json", "--values"])
        .arg(examples().join("values.yaml"))
        .args(extra)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let objects: Value = serde_json::from_slice(&output.stdout).unwrap();
    let items = objects.get("items").cloned().unwrap_or(objects);
    items.as_array().unwrap().iter().find(|o| o["kind"] == "MutatingWebhookConfiguration").unwrap().clone()
}

#[test]
fn install_registers_advice_apart_and_opted_out_pods_only_when_a_rule_needs_them() {
    let conditions = |configuration: &Value| -> Vec<String> {
        configuration["webhooks"][0]["matchConditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    let plain = registration(&["--ha"]);
    assert_eq!(conditions(&plain), ["not-already-injected", "not-opted-out"]);
    assert_eq!(plain["webhooks"][0]["failurePolicy"], "Fail", "--ha denies pods on failure");
    let advice = &plain["webhooks"][1];
    assert_eq!(advice["name"], "advice.proxy-injector.linkerd.io");
    assert_eq!(advice["failurePolicy"], "Ignore", "advice never blocks, even with --ha");
    assert_eq!(advice["timeoutSeconds"], 2);
    assert_eq!(advice["sideEffects"], "None");
    let resources: Vec<&str> = advice["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["resources"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()))
        .collect();
    assert_eq!(
        resources,
        ["deployments", "statefulsets", "daemonsets", "replicasets", "jobs", "cronjobs", "services", "namespaces"]
    );
    let policed = registration(&["--values", &examples().join("policy.yaml").display().to_string()]);
    assert_eq!(conditions(&policed), ["not-already-injected"], "meshRequired needs the opted-out pods");
}

#[test]
fn a_broken_policy_stops_every_command_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(&dir, "bad.yaml", "proxyInjector:\n  policy:\n    meshRequired:\n      mode: enforce\n");
    for command in [&["install", "--ignore-cluster"][..], &["inject", "--ignore-cluster", "-"][..]] {
        let output = Command::cargo_bin("proxy-injector")
            .unwrap()
            .args(command)
            .arg("--values")
            .arg(examples().join("values.yaml"))
            .arg("--values")
            .arg(&bad)
            .write_stdin("")
            .output()
            .unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(!output.status.success() && output.stdout.is_empty(), "{command:?}: {stderr}");
        assert!(
            stderr.contains(
                "at `proxyInjector.policy.meshRequired.namespaceSelector`: the rule is on but selects no namespace"
            ),
            "{command:?}: {stderr}"
        );
    }
}
