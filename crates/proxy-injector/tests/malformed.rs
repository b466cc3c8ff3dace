//! What users actually feed the CLI: wrong types, YAML scalars in metadata, one-key values
//! files. Bad input is refused with the field path named and nothing printed; accepted input
//! keeps every value of the user's.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::{Value, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cli() -> Command {
    let mut command = Command::cargo_bin("proxy-injector").unwrap();
    command.env_remove("KUBECONFIG").env_remove("LINKERD_NAMESPACE").env_remove("LINKERD_DOCKER_REGISTRY");
    command
}

fn documents(text: &str) -> Vec<Value> {
    manifest::parse_stream(text).unwrap().into_iter().map(|d| d.value).collect()
}

/// A values file holding only the trust anchors: every other setting is the chart's.
fn one_key_values(dir: &Path) -> PathBuf {
    let example = std::fs::read_to_string(root().join("examples/values.yaml")).unwrap();
    let anchors = documents(&example)[0]["identityTrustAnchorsPEM"].clone();
    let path = dir.join("one-key.yaml");
    std::fs::write(&path, serde_json::to_string(&json!({"identityTrustAnchorsPEM": anchors})).unwrap()).unwrap();
    path
}

#[test]
fn wrong_types_are_refused_with_the_field_path_and_no_output() {
    let cases = [
        (
            "kind: Pod\nmetadata:\n  name: p\nspec:\n  containers: nope\n",
            "spec.containers: expected a list, found a string",
        ),
        ("kind: Deployment\nmetadata: [1, 2]\n", "metadata: expected a mapping, found a list"),
        (
            "kind: Deployment\nmetadata:\n  name: d\nspec:\n  template:\n    metadata:\n      labels: [a]\n",
            "spec.template.metadata.labels: expected a mapping of strings, found a list",
        ),
        (
            "kind: DaemonSet\nmetadata:\n  name: d\nspec:\n  template:\n    spec:\n      initContainers: {a: 1}\n",
            "spec.template.spec.initContainers: expected a list, found a mapping",
        ),
        (
            "kind: Pod\nmetadata:\n  name: p\n  annotations:\n    config.linkerd.io/proxy-uid: [1]\n",
            "metadata.annotations.config.linkerd.io/proxy-uid: expected a string, found a list",
        ),
    ];
    for (manifest, message) in cases {
        for args in [
            &["inject", "--ignore-cluster", "-"][..],
            &["inject", "--manual", "--values"][..],
            &["uninject", "-"][..],
            &["explain", "--ignore-cluster", "-"][..],
        ] {
            let mut command = cli();
            command.args(args);
            if args[1] == "--manual" {
                command.arg(root().join("examples/values.yaml")).arg("-");
            }
            let output = command.write_stdin(manifest).output().unwrap();
            let stdout = String::from_utf8(output.stdout).unwrap();
            let stderr = String::from_utf8(output.stderr).unwrap();
            if args[0] == "explain" {
                assert!(stdout.contains(message), "{args:?}: {stdout}");
                continue;
            }
            assert!(!output.status.success(), "{args:?} accepted {manifest}");
            assert_eq!(stdout, "", "{args:?} printed partial output");
            assert!(stderr.contains(message) && stderr.contains("document 1"), "{args:?}: {stderr}");
        }
    }
}

#[test]
fn yaml_booleans_in_annotations_are_read_as_strings() {
    let manifest = "kind: Deployment\nmetadata:\n  name: d\nspec:\n  template:\n    metadata:\n      annotations:\n        config.linkerd.io/enable-debug-sidecar: true\n    spec:\n      containers:\n      - name: a\n        image: a\n";
    let output = cli()
        .args(["inject", "--manual", "--values"])
        .arg(root().join("examples/values.yaml"))
        .arg("-")
        .write_stdin(manifest)
        .output()
        .unwrap();
    assert!(output.status.success());
    let doc = &documents(&String::from_utf8(output.stdout).unwrap())[0];
    let template = &doc["spec"]["template"];
    assert_eq!(template["metadata"]["annotations"]["config.linkerd.io/enable-debug-sidecar"], "true");
    assert!(template["spec"]["containers"].as_array().unwrap().iter().any(|c| c["name"] == "linkerd-debug"));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("the unquoted YAML value true is read as the string \"true\""), "{stderr}");
}

#[test]
fn the_readme_examples_work_with_a_one_key_values_file() {
    let dir = tempfile::tempdir().unwrap();
    let values = one_key_values(dir.path());
    let examples = root().join("examples");
    let output =
        cli().args(["inject", "--manual", "--values"]).arg(&values).arg(examples.join("manifests")).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let injected = String::from_utf8(output.stdout).unwrap();
    let docs = documents(&injected);
    let proxies: Vec<&Value> = docs
        .iter()
        .filter_map(|d| {
            d.pointer("/spec/template/spec/initContainers")
                .or_else(|| d.pointer("/spec/jobTemplate/spec/template/spec/initContainers"))
        })
        .flat_map(|list| list.as_array().unwrap())
        .filter(|c| c["name"] == "linkerd-proxy")
        .collect();
    assert!(proxies.len() >= 3, "{} proxies", proxies.len());
    for proxy in proxies {
        assert_eq!(proxy["image"], "cr.l5d.io/linkerd/proxy:edge-26.8.2");
        assert_eq!(proxy["livenessProbe"]["initialDelaySeconds"], 10);
        assert_eq!(proxy["startupProbe"]["failureThreshold"], 120);
    }
    let explained = cli()
        .args(["explain", "--values"])
        .arg(&values)
        .arg("--namespace-file")
        .arg(examples.join("namespace.yaml"))
        .arg(examples.join("manifests"))
        .arg(examples.join("not-injected"))
        .output()
        .unwrap();
    assert!(explained.status.success(), "{}", String::from_utf8_lossy(&explained.stderr));
    let uninjected = cli().args(["uninject", "-"]).write_stdin(injected).output().unwrap();
    assert!(uninjected.status.success());
    let annotated =
        cli().args(["inject", "--ignore-cluster"]).arg(examples.join("manifests/emojivoto.yaml")).output().unwrap();
    assert!(annotated.status.success());
}

/// `/spec/template/spec/containers/0` → `spec.template.spec.containers[0]`.
fn dotted(pointer: &[String]) -> String {
    let mut out = String::new();
    for segment in pointer {
        if segment.parse::<usize>().is_ok() {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

fn paths(value: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if !path.is_empty() {
        out.push(path.clone());
    }
    match value {
        Value::Object(map) => map.iter().for_each(|(k, v)| {
            path.push(k.clone());
            paths(v, path, out);
            path.pop();
        }),
        Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| {
            path.push(i.to_string());
            paths(v, path, out);
            path.pop();
        }),
        _ => {}
    }
}

fn at_mut<'a>(value: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(value, |node, segment| match node {
        Value::Array(items) => &mut items[segment.parse::<usize>().unwrap()],
        other => &mut other[segment.as_str()],
    })
}

/// The value at `path` of the output, where the user's list items may have moved because
/// injection put its own (named `linkerd-*`) items before them.
fn find_in_output<'a>(output: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut node = output;
    for segment in path {
        node = match node {
            Value::Array(items) => {
                let index: usize = segment.parse().ok()?;
                let own = |item: &&Value| {
                    !item.get("name").and_then(Value::as_str).is_some_and(|n| n.starts_with("linkerd-"))
                };
                items.iter().filter(own).nth(index)?
            }
            Value::Object(map) => map.get(segment)?,
            _ => return None,
        };
    }
    Some(node)
}

#[test]
fn every_field_of_real_manifests_mutated_to_every_wrong_type_is_refused_by_path_or_kept() {
    let manifests = [
        root().join("examples/manifests/emojivoto.yaml"),
        root().join("crates/proxy-injector/tests/manifests/podinfo.yaml"),
    ];
    let wrong = [json!("x"), json!(7), json!(true), json!([1]), json!({"k": "v"})];
    let values = root().join("examples/values.yaml");
    let (mut refused, mut kept) = (0, 0);
    for manifest in manifests {
        for original in documents(&std::fs::read_to_string(&manifest).unwrap()) {
            let mut all = Vec::new();
            paths(&original, &mut Vec::new(), &mut all);
            for path in all {
                for replacement in &wrong {
                    let mut mutant = original.clone();
                    let slot = at_mut(&mut mutant, &path);
                    if std::mem::discriminant(slot) == std::mem::discriminant(replacement) {
                        continue;
                    }
                    *slot = replacement.clone();
                    let text = serde_json::to_string(&mutant).unwrap();
                    for manual in [true, false] {
                        let mut command = cli();
                        if manual {
                            command.args(["inject", "--manual", "--values"]).arg(&values).arg("-");
                        } else {
                            command.args(["inject", "--ignore-cluster", "-"]);
                        }
                        let output = command.write_stdin(text.clone()).output().unwrap();
                        let stdout = String::from_utf8(output.stdout).unwrap();
                        let stderr = String::from_utf8(output.stderr).unwrap();
                        let context = format!("{} = {replacement} (manual {manual})", dotted(&path));
                        assert!(!stderr.contains("panicked"), "{context}: {stderr}");
                        if output.status.success() {
                            let out = documents(&stdout);
                            assert_eq!(out.len(), 1, "{context}");
                            let got = find_in_output(&out[0], &path);
                            // Scalars in annotations and labels are read as Kubernetes reads
                            // them, as strings (and reported).
                            let in_metadata_map =
                                path.len() >= 2 && ["annotations", "labels"].contains(&path[path.len() - 2].as_str());
                            let expected = match replacement {
                                Value::Bool(_) | Value::Number(_) if in_metadata_map => json!(replacement.to_string()),
                                other => other.clone(),
                            };
                            assert_eq!(got, Some(&expected), "{context}: the user's value was changed");
                            kept += 1;
                        } else {
                            assert_eq!(stdout, "", "{context}: partial output");
                            assert!(stderr.contains(&format!("{}: expected", dotted(&path))), "{context}: {stderr}");
                            refused += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(refused > 100 && kept > 100, "refused {refused}, kept {kept}");
}

/// Every input a fuzz target once failed on (`tests/fuzz-regressions`): inject and uninject
/// answer it without a panic, and what they print parses.
#[test]
fn inputs_the_fuzzers_found_are_handled() {
    let dir = root().join("crates/proxy-injector/tests/fuzz-regressions");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(!files.is_empty());
    for file in files {
        for args in [&["inject", "--manual", "--values"][..], &["uninject"][..]] {
            let mut command = cli();
            command.args(args);
            if args.len() > 1 {
                command.arg(root().join("examples/values.yaml"));
            }
            let output = command.arg(&file).output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!stderr.contains("panicked") && !stderr.contains("internal error"), "{}: {stderr}", file.display());
            if output.status.success() {
                documents(&String::from_utf8(output.stdout).unwrap());
            }
        }
    }
}
