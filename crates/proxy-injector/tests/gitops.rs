//! GitOps use of `inject` and `uninject`: edits in place, `--check` for CI, `-o patch` for
//! kustomize overlays. The real binary on real files.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

fn manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/manifests")
}

fn values() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/values.yaml")
}

fn run(args: &[&str], input: &str) -> (i32, String, String) {
    let mut command = Command::cargo_bin("proxy-injector").unwrap();
    command.env_remove("KUBECONFIG").args(args).arg("-").write_stdin(input);
    let output = command.output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (output.status.code().unwrap(), text(output.stdout), text(output.stderr))
}

fn inject(extra: &[&str], input: &str) -> String {
    let values = values();
    let mut args = vec!["inject", "--values", values.to_str().unwrap()];
    args.extend(extra);
    let (code, out, err) = run(&args, input);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("rewritten whole"), "edited in place: {err}");
    out
}

fn uninject(input: &str) -> String {
    let (code, out, err) = run(&["uninject"], input);
    assert_eq!(code, 0, "{err}");
    out
}

fn commented() -> String {
    std::fs::read_to_string(manifests().join("commented.yaml")).unwrap()
}

#[test]
fn injecting_a_commented_anchored_manifest_changes_only_the_lines_it_must() {
    let input = commented();
    let out = inject(&[], &input);
    let expected = input.replace(
        "      labels: *labels\n",
        "      labels: *labels\n      annotations:\n        linkerd.io/inject: enabled\n",
    );
    assert_eq!(out, expected, "two lines added, comments, anchors, quoting and markers kept");
    assert_eq!(uninject(&out), input, "uninject restores the bytes");
    assert_eq!(inject(&[], &out), out, "inject is idempotent");
}

#[test]
fn manual_injection_edits_only_the_pod_template() {
    let input = commented();
    let out = inject(&["--manual"], &input);
    let template_starts = input.find("  template:").unwrap();
    assert_eq!(out[..template_starts], input[..template_starts], "everything before the template kept");
    assert!(
        out.ends_with("...\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports: [{port: 80}]\n")
    );
    assert!(out.contains("            - containerPort: 80   # http\n"), "{out}");
    // The template's labels were an alias of the Deployment's: injection adds labels, so the
    // alias becomes an expanded copy and the anchor's other user (the selector) is untouched.
    assert!(out.contains("  labels: &labels\n    app: web\n") && out.contains("    matchLabels: *labels\n"), "{out}");
    assert!(out.contains("      labels:\n        app: web\n        linkerd.io/control-plane-ns: linkerd\n"), "{out}");
    assert_eq!(inject(&["--manual"], &out), out, "manual inject is idempotent");
}

#[test]
fn uninject_of_manual_injection_restores_the_bytes_without_aliases_in_the_template() {
    let input = "# keep\r\napiVersion: apps/v1\r\nkind: Deployment\r\nmetadata:\r\n    name: api    # four spaces\r\nspec:\r\n    template:\r\n        metadata:\r\n            labels:\r\n                app: api\r\n        spec:\r\n            containers:\r\n            -   name: api\r\n                image: 'api:v1'\r\n";
    for bom in ["", "\u{feff}"] {
        let input = format!("{bom}{input}");
        let out = inject(&["--manual"], &input);
        assert!(out.starts_with(&format!("{bom}# keep\r\n")), "{out}");
        assert!(!out.replace("\r\n", "").contains('\n'), "CRLF kept on every line: {out:?}");
        assert!(out.contains("\r\n            -   name: api\r\n"), "{out}");
        assert_eq!(uninject(&out), input);
    }
}

#[test]
fn check_exits_1_with_a_diff_and_0_when_nothing_would_change() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.yaml");
    std::fs::write(&file, commented()).unwrap();
    let values = values();
    let check = |file: &Path| {
        let mut command = Command::cargo_bin("proxy-injector").unwrap();
        command.env_remove("KUBECONFIG").args(["inject", "--check", "--values"]).arg(&values).arg(file);
        let output = command.output().unwrap();
        (output.status.code().unwrap(), String::from_utf8(output.stdout).unwrap())
    };
    let (code, diff) = check(&file);
    assert_eq!(code, 1);
    assert!(diff.starts_with(&format!("--- {}\n+++ {} (expected)\n", file.display(), file.display())), "{diff}");
    assert!(diff.contains("\n+      annotations:\n+        linkerd.io/inject: enabled\n"), "{diff}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), commented(), "--check changes nothing");

    std::fs::write(&file, inject(&[], &commented())).unwrap();
    assert_eq!(check(&file), (0, String::new()));
    let (code, _, _) = run(&["uninject", "--check"], &commented());
    assert_eq!(code, 0, "nothing to uninject");
}

#[test]
fn patch_output_applied_as_kustomize_does_gives_the_manual_injection() {
    let input = commented();
    let (code, patches, err) =
        run(&["inject", "--manual", "-o", "patch", "--values", values().to_str().unwrap()], &input);
    assert_eq!(code, 0, "{err}");
    let patches = manifest::parse_stream(&patches).unwrap().remove(0).value;
    let patches = patches["patches"].as_array().unwrap();
    assert_eq!(patches.len(), 1, "the Service is not patched");
    let target = &patches[0]["target"];
    assert_eq!(target, &serde_json::json!({"group": "apps", "version": "v1", "kind": "Deployment", "name": "web"}));
    let operations = manifest::parse_stream(patches[0]["patch"].as_str().unwrap()).unwrap().remove(0).value;
    let operations: json_patch::Patch = serde_json::from_value(operations).unwrap();

    let mut deployment = manifest::parse_stream(&input).unwrap().remove(0).value;
    json_patch::patch(&mut deployment, &operations).unwrap();
    let manual: Vec<Value> = manifest::parse_stream(&inject(&["--manual", "-o", "json"], &input))
        .unwrap()
        .into_iter()
        .map(|d| d.value)
        .collect();
    assert_eq!(deployment, manual[0]);
}

#[test]
fn json_keeps_its_layout_when_written_as_json() {
    let input = std::fs::read_to_string(manifests().join("pretty.json")).unwrap();
    let out = inject(&["-o", "json"], &input);
    let expected = input.replace(
        "                \"labels\": {\"app\": \"web\"}\n",
        "                \"labels\": {\"app\": \"web\"},\n                \"annotations\": {\n                    \"linkerd.io/inject\": \"enabled\"\n                }\n",
    );
    assert_eq!(out, expected);
    let manual = inject(&["--manual", "-o", "json"], &input);
    assert!(manual.starts_with(
        "{\n    \"apiVersion\": \"apps/v1\",\n    \"kind\": \"Deployment\",\n    \"metadata\": {\"name\": \"web\"},\n"
    ));
    let (code, restored, err) = run(&["uninject", "-o", "json"], &manual);
    assert_eq!(code, 0, "{err}");
    assert_eq!(restored, input, "uninject restores the bytes");
}
