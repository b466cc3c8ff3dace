//! `cargo xtask fuzz [target] [--time S]`: the cargo-fuzz targets in `fuzz/`, seeded from the
//! project's own manifests, with cargo-fuzz installed once from crates.io into the tool cache.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::tools::cache_dir;
use crate::workspace_root;

pub const CARGO_FUZZ_VERSION: &str = "0.13.2";
pub const TARGETS: &[&str] = &["admission_review", "manifest_inject", "uninject"];

/// cargo-fuzz, installed if missing.
fn cargo_fuzz() -> anyhow::Result<PathBuf> {
    let root = cache_dir()?.join(format!("cargo-fuzz-{CARGO_FUZZ_VERSION}"));
    let binary = root.join("bin/cargo-fuzz");
    if binary.is_file() {
        return Ok(binary);
    }
    eprintln!("xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION} from crates.io (first run only)");
    let status = Command::new("cargo")
        .args(["install", "cargo-fuzz", "--locked", "--version", CARGO_FUZZ_VERSION, "--root"])
        .arg(&root)
        .status()
        .context("cannot run cargo install")?;
    if !status.success() || !binary.is_file() {
        bail!("cargo install cargo-fuzz {CARGO_FUZZ_VERSION} failed ({status})");
    }
    Ok(binary)
}

/// The project's manifests: the shipped examples and the test manifests.
fn manifests() -> anyhow::Result<Vec<PathBuf>> {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in ["examples/manifests", "examples/not-injected", "crates/proxy-injector/tests/manifests"] {
        for entry in std::fs::read_dir(root.join(dir)).with_context(|| format!("cannot list {dir}"))? {
            files.push(entry?.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Seeds for one target, written afresh under `fuzz/seeds/<target>`.
fn seeds(target: &str) -> anyhow::Result<PathBuf> {
    let dir = workspace_root().join("fuzz/seeds").join(target);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    for (i, file) in manifests()?.iter().enumerate() {
        let text = std::fs::read_to_string(file)?;
        if target != "admission_review" {
            std::fs::write(dir.join(format!("manifest-{i}.yaml")), &text)?;
            continue;
        }
        // The webhook sees pods: each workload's template, wrapped as the apiserver sends it.
        for (j, document) in text.split("\n---").enumerate() {
            let Ok(object) = serde_json::to_value(yaml_to_json(document)) else { continue };
            let Some(pod) = as_pod(&object) else { continue };
            let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
                "uid": format!("seed-{i}-{j}"), "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "namespace": "seed", "operation": "CREATE", "object": pod}});
            std::fs::write(dir.join(format!("review-{i}-{j}.json")), review.to_string())?;
        }
    }
    Ok(dir)
}

fn yaml_to_json(document: &str) -> Value {
    serde_saphyr::from_str::<Value>(document).unwrap_or(Value::Null)
}

fn as_pod(object: &Value) -> Option<Value> {
    let template = match object.get("kind")?.as_str()? {
        "Pod" => return Some(object.clone()),
        "CronJob" => object.pointer("/spec/jobTemplate/spec/template")?,
        _ => object.pointer("/spec/template")?,
    };
    Some(json!({"apiVersion": "v1", "kind": "Pod", "metadata": template.get("metadata").cloned().unwrap_or(json!({})),
        "spec": template.get("spec").cloned().unwrap_or(json!({}))}))
}

/// Runs each target (or the one named) for `seconds`, and prints libFuzzer's closing figures.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let mut seconds = 60u64;
    let mut chosen = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--time" => {
                seconds = args.next().context("--time needs seconds")?.parse().context("--time takes whole seconds")?
            }
            name if TARGETS.contains(&name) => chosen.push(name.to_string()),
            other => bail!("unknown fuzz argument {other:?}; targets: {}", TARGETS.join(", ")),
        }
    }
    if chosen.is_empty() {
        chosen = TARGETS.iter().map(|t| t.to_string()).collect();
    }
    let cargo_fuzz = cargo_fuzz()?;
    for target in chosen {
        let corpus = workspace_root().join("fuzz/corpus").join(&target);
        std::fs::create_dir_all(&corpus)?;
        let seeds = seeds(&target)?;
        let log = workspace_root().join(format!("fuzz/{target}.log"));
        eprintln!("xtask: fuzzing {target} for {seconds} s (log: {})", log.display());
        let status = Command::new(&cargo_fuzz)
            .args(["fuzz", "run", &target])
            .arg(&corpus)
            .arg(&seeds)
            .args(["--", &format!("-max_total_time={seconds}"), "-print_final_stats=1", "-rss_limit_mb=4096"])
            .env("RUSTUP_TOOLCHAIN", "nightly")
            .current_dir(workspace_root())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .status()
            .context("cannot run cargo-fuzz")?;
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        summarize(&target, &text);
        if !status.success() {
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            bail!(
                "fuzz target {target} failed ({status}); the last lines of {}:\n{}",
                log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
    Ok(())
}

/// `fuzz <target>: N executions, coverage C, F features, corpus K`.
fn summarize(target: &str, log: &str) {
    let stat = |name: &str| {
        log.lines().rev().find_map(|l| l.strip_prefix(&format!("stat::{name}:")).map(|v| v.trim().to_string()))
    };
    let last_status = log.lines().rev().find(|l| l.contains(" cov: ")).unwrap_or("");
    let field =
        |name: &str| last_status.split_whitespace().skip_while(|w| *w != name).nth(1).unwrap_or("?").to_string();
    println!(
        "fuzz {target}: {} executions, coverage {} edges, {} features, corpus {}",
        stat("number_of_executed_units").unwrap_or_else(|| "?".into()),
        field("cov:"),
        field("ft:"),
        field("corp:"),
    );
}
