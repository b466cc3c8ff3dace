//! `cargo xtask <task>`: the project's workflows in one place.
//!
//! - `test`: every test of the workspace, then the end-to-end suite.
//! - `e2e`: the end-to-end suite alone, against a real etcd and kube-apiserver started here.
//! - `bench`: the criterion benchmarks, the CLI on a generated 10,000-document manifest, and the
//!   webhook under load (inject vs `--no-op`, half-load latency, 3,000 requests at once).
//! - `fuzz`: the cargo-fuzz targets (`cargo xtask fuzz [target] [--time S]`, 60 s each by default).
//! - `tools`: build (once) and print the cached kube-apiserver and etcd the suite uses.

#![forbid(unsafe_code)]

mod controlplane;
mod fuzz;
mod load;
mod tools;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    match task.as_str() {
        "test" => test(),
        "e2e" => e2e(&std::env::args().skip(2).collect::<Vec<_>>()),
        "bench" => bench(std::env::args().nth(2).as_deref()),
        "fuzz" => fuzz::run(&std::env::args().skip(2).collect::<Vec<_>>()),
        "tools" => {
            println!("kube-apiserver: {}", tools::kube_apiserver()?.display());
            println!("kube-controller-manager: {}", tools::kube_controller_manager()?.display());
            println!("etcd: {}", tools::etcd()?.display());
            println!("helm: {}", tools::helm()?.display());
            Ok(())
        }
        other => bail!("unknown task {other:?}; tasks: test, e2e, bench, fuzz, tools"),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

fn cargo(args: &[&str]) -> anyhow::Result<()> {
    cargo_with_env(args, &[])
}

fn cargo_with_env(args: &[&str], env: &[(&str, &Path)]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(&cargo);
    command.args(args).current_dir(workspace_root());
    for (name, value) in env {
        command.env(name, value);
    }
    let status = command.status().with_context(|| format!("cannot run {cargo}"))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

fn test() -> anyhow::Result<()> {
    cargo(&["test", "--workspace", "--all-targets", "--locked"])?;
    e2e(&[])
}

/// Starts a control plane, runs the suite against it, and tears it down whatever happens.
/// `test_args` go to the test runner (`cargo xtask e2e -- burst --nocapture`).
fn e2e(test_args: &[String]) -> anyhow::Result<()> {
    e2e_with_env(test_args, &[])
}

/// [`e2e`], with more environment for the tests.
fn e2e_with_env(test_args: &[String], env: &[(&str, &Path)]) -> anyhow::Result<()> {
    // Build first, so compile time does not count against the control plane's lifetime.
    cargo(&["test", "--locked", "--package", "proxy-injector", "--features", "e2e", "--test", "e2e", "--no-run"])?;
    let helm = tools::helm()?;
    let plane = controlplane::ControlPlane::start()?;
    let mut args = vec!["test", "--locked", "--package", "proxy-injector", "--features", "e2e", "--test", "e2e"];
    args.extend(test_args.iter().map(String::as_str));
    let mut env = env.to_vec();
    env.extend([
        ("PROXY_INJECTOR_E2E_KUBECONFIG", plane.kubeconfig.as_path()),
        ("PROXY_INJECTOR_HELM", helm.as_path()),
    ]);
    cargo_with_env(&args, &env)
}

/// All benchmarks, or one part (see `PARTS`).
fn bench(part: Option<&str>) -> anyhow::Result<()> {
    let all = part.is_none();
    const PARTS: [&str; 9] = ["engine", "instructions", "cli", "load", "h2", "memory", "proxy-init", "fleet", "policy"];
    if let Some(other) = part.filter(|p| !PARTS.contains(p)) {
        bail!("unknown benchmark {other:?}; parts: {}", PARTS.join(", "));
    }
    if all || part == Some("engine") {
        cargo(&["bench", "--workspace", "--locked"])?;
    }
    if all || part == Some("instructions") {
        instruction_bench()?;
    }
    if part.is_some_and(|p| ["engine", "instructions"].contains(&p)) {
        return Ok(());
    }
    cargo(&["build", "--release", "--locked", "--package", "proxy-injector"])?;
    if all || part == Some("cli") {
        cli_bench()?;
    }
    if all || part == Some("load") {
        load::bench(&workspace_root())?;
    }
    if all || part == Some("h2") {
        load::h2_bench(&workspace_root())?;
    }
    if all || part == Some("memory") {
        load::memory_bench(&workspace_root())?;
    }
    if all || part == Some("proxy-init") {
        proxy_init_bench()?;
    }
    if all || part == Some("fleet") {
        // The reconciler's convergence of a fail-open fleet is an end-to-end scenario of several
        // minutes, so it is an ignored e2e test that only this runs.
        let name = "reconcile::fleet_of_a_thousand_pods_admitted_fail_open_converges";
        e2e(&["--".into(), "--ignored".into(), "--exact".into(), name.into(), "--nocapture".into()])?;
    }
    if all || part == Some("policy") {
        // The webhook as it ships (release), not as the suite builds it.
        let name = "admission_policy::a_burst_of_1000_pods_through_the_policy_and_through_the_webhook";
        let release = workspace_root().join("target/release/proxy-injector");
        let args = ["--".into(), "--ignored".into(), "--exact".into(), name.into(), "--nocapture".into()];
        e2e_with_env(&args, &[("PROXY_INJECTOR_E2E_BINARY", release.as_path())])?;
    }
    Ok(())
}

/// Instructions per admission (decode + engine + governance + encode) under callgrind: the
/// difference between 11 and 1 iterations, divided by 10, so setup is not counted.
fn instruction_bench() -> anyhow::Result<()> {
    if Command::new("valgrind").arg("--version").output().is_err() {
        bail!("the instruction benchmark needs valgrind (apt-get install valgrind)");
    }
    cargo(&["build", "--release", "--locked", "--package", "proxy-injector-webhook", "--example", "instructions"])?;
    let binary = workspace_root().join("target/release/examples/instructions");
    let count = |case: usize, iterations: usize| -> anyhow::Result<u64> {
        let output = Command::new("valgrind")
            .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
            .arg(&binary)
            .args([case.to_string(), iterations.to_string()])
            .output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        let collected = stderr.lines().find_map(|l| l.split_once("Collected : ").map(|(_, n)| n.trim().to_string()));
        collected.and_then(|n| n.parse().ok()).with_context(|| format!("no callgrind total in:\n{stderr}"))
    };
    for (case, name) in ["typical (2 containers, 10 env vars)", "1000 env vars", "64 KB pod spec"].iter().enumerate() {
        let per_admission = (count(case, 11)? - count(case, 1)?) / 10;
        println!("instructions per admission, {name}: {per_admission}");
    }
    Ok(())
}

/// Time from starting `proxy-init` to rules applied, in a fresh network namespace (needs root).
fn proxy_init_bench() -> anyhow::Result<()> {
    let binary = workspace_root().join("target/release/proxy-injector");
    let many: Vec<String> = (0..500).map(|i| (20_000 + 2 * i).to_string()).collect();
    let many = many.join(",");
    let cases = [("default injected arguments", "4190,4191,4567,4568"), ("500 ignored inbound ports", many.as_str())];
    for mode in ["nft", "legacy"] {
        for (name, inbound) in cases {
            let mut times = Vec::new();
            for run in 0..20 {
                let ns = format!("pi-bench-{}-{run}", std::process::id());
                let status = Command::new("ip").args(["netns", "add", &ns]).status()?;
                if !status.success() {
                    bail!("`ip netns add` failed: the proxy-init benchmark needs root and iproute2");
                }
                let started = Instant::now();
                let output = Command::new(&binary)
                    .args([
                        "proxy-init",
                        "--netns",
                        &format!("/var/run/netns/{ns}"),
                        "--iptables-mode",
                        mode,
                        "--ipv6=false",
                    ])
                    .args(["-p", "4143", "-o", "4140", "-u", "2102", "--inbound-ports-to-ignore", inbound])
                    .args(["--outbound-ports-to-ignore", "4567,4568"])
                    .output()?;
                times.push(started.elapsed());
                let _ = Command::new("ip").args(["netns", "del", &ns]).status();
                if !output.status.success() {
                    bail!("proxy-init failed: {}", String::from_utf8_lossy(&output.stderr));
                }
            }
            times.sort();
            println!(
                "proxy-init, {mode}, {name}: median {:.1} ms, max {:.1} ms (20 runs, fresh namespace each)",
                times[10].as_secs_f64() * 1e3,
                times[19].as_secs_f64() * 1e3
            );
        }
    }
    Ok(())
}

/// `inject --manual` on 10,000 documents: wall time, CPU time and peak resident memory, the
/// median of five runs (this machine's speed varies by tens of percent from run to run).
fn cli_bench() -> anyhow::Result<()> {
    const RUNS: usize = 5;
    let root = workspace_root();
    let dir = std::env::temp_dir().join(format!("proxy-injector-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let manifest = dir.join("10k.yaml");
    std::fs::write(&manifest, ten_thousand_documents())?;
    let mut runs = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let output = std::fs::File::create(dir.join("out.yaml"))?;
        let started = Instant::now();
        let mut child = Command::new(root.join("target/release/proxy-injector"))
            .args(["inject", "--manual", "--values"])
            .arg(root.join("examples/values.yaml"))
            .arg(&manifest)
            .stdout(output)
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let (mut peak_kib, mut cpu) = (0, Duration::ZERO);
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            // VmHWM is the process's own high-water mark, so polling cannot miss the peak.
            if let Ok(text) = std::fs::read_to_string(format!("/proc/{}/status", child.id())) {
                peak_kib = text
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                    .unwrap_or(peak_kib);
            }
            cpu = load::cpu_time(child.id()).max(cpu);
            std::thread::sleep(Duration::from_millis(2));
        };
        if !status.success() {
            bail!("inject failed on the benchmark manifest ({status})");
        }
        runs.push((started.elapsed(), cpu, peak_kib));
    }
    let size = std::fs::metadata(&manifest)?.len();
    std::fs::remove_dir_all(&dir)?;
    runs.sort();
    let walls: Vec<String> = runs.iter().map(|(wall, ..)| format!("{:.2}", wall.as_secs_f64())).collect();
    let (wall, cpu, peak_kib) = runs[RUNS / 2];
    println!(
        "cli inject --manual, 10,000 documents ({:.1} MB), median of {RUNS}: {:.2} s wall ({} s), {:.2} s CPU, peak RSS {} MB",
        size as f64 / 1e6,
        wall.as_secs_f64(),
        walls.join(", "),
        cpu.as_secs_f64(),
        peak_kib / 1024
    );
    Ok(())
}

/// Deployments, StatefulSets and DaemonSets (10 env vars each), Services and ConfigMaps.
fn ten_thousand_documents() -> String {
    let mut out = String::new();
    for i in 0..10_000 {
        let kind = ["Deployment", "StatefulSet", "DaemonSet", "Service", "ConfigMap"][i % 5];
        let ns = i % 20;
        out.push_str("---\n");
        match kind {
            "ConfigMap" => out.push_str(&format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: obj-{i}\n  namespace: ns-{ns}\ndata:\n  key: value\n"
            )),
            "Service" => out.push_str(&format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{i}\n  namespace: ns-{ns}\nspec:\n  ports:\n  - port: 80\n    targetPort: 8080\n"
            )),
            _ => {
                let env: String =
                    (0..10).map(|j| format!("        - name: VAR_{j}\n          value: \"v{j}\"\n")).collect();
                out.push_str(&format!(
                    "apiVersion: apps/v1\nkind: {kind}\nmetadata:\n  name: app-{i}\n  namespace: ns-{ns}\nspec:\n  selector:\n    matchLabels:\n      app: app-{i}\n  template:\n    metadata:\n      labels:\n        app: app-{i}\n    spec:\n      containers:\n      - name: app\n        image: registry.example/app:v{i}\n        env:\n{env}        ports:\n        - containerPort: 8080\n          name: http\n"
                ));
            }
        }
    }
    out
}
