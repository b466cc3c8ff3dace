//! The test infrastructure's binaries: kube-apiserver, kube-controller-manager, etcd and helm,
//! built from the Go module proxy with the machine's `go` and cached under
//! `~/.cache/proxy-injector/<tool>-<version>/`, built only when missing. `KUBE_APISERVER_BIN` /
//! `KUBE_CONTROLLER_MANAGER_BIN` / `ETCD_BIN`, or `KUBEBUILDER_ASSETS`, use existing binaries
//! instead.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

pub const KUBERNETES_VERSION: &str = "1.36.3";
pub const ETCD_VERSION: &str = "3.6.6";
pub const HELM_VERSION: &str = "3.22.0";

/// Every staging module of k8s.io/kubernetes at this version; its go.mod requires them at
/// v0.0.0, so a wrapper module pins each one.
const STAGING_MODULES: &[&str] = &[
    "api",
    "apiextensions-apiserver",
    "apimachinery",
    "apiserver",
    "cli-runtime",
    "client-go",
    "cloud-provider",
    "cluster-bootstrap",
    "code-generator",
    "component-base",
    "component-helpers",
    "controller-manager",
    "cri-api",
    "cri-client",
    "cri-streaming",
    "csi-translation-lib",
    "dynamic-resource-allocation",
    "endpointslice",
    "externaljwt",
    "kms",
    "kube-aggregator",
    "kube-controller-manager",
    "kube-proxy",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "metrics",
    "mount-utils",
    "pod-security-admission",
    "sample-apiserver",
    "sample-cli-plugin",
    "sample-controller",
    "streaming",
];

pub fn cache_dir() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set; cannot locate ~/.cache/proxy-injector")?;
    Ok(Path::new(&home).join(".cache/proxy-injector"))
}

/// The kube-apiserver binary, built if needed.
pub fn kube_apiserver() -> anyhow::Result<PathBuf> {
    kubernetes_command("KUBE_APISERVER_BIN", "kube-apiserver")
}

/// The kube-controller-manager binary of the same release, built if needed: it makes Deployments,
/// ReplicaSets, StatefulSets, DaemonSets, Jobs and CronJobs create their pods for real.
pub fn kube_controller_manager() -> anyhow::Result<PathBuf> {
    kubernetes_command("KUBE_CONTROLLER_MANAGER_BIN", "kube-controller-manager")
}

/// A command of k8s.io/kubernetes (`cmd/<name>`) at [`KUBERNETES_VERSION`].
fn kubernetes_command(variable: &str, name: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = given(variable, name)? {
        return Ok(path);
    }
    let minor = KUBERNETES_VERSION.split('.').nth(1).unwrap_or("0");
    // Staging modules are versioned v0.<minor>.<patch> alongside Kubernetes 1.<minor>.<patch>.
    let staging = format!("v0.{}", KUBERNETES_VERSION.split_once('.').map_or("", |(_, rest)| rest));
    let mut go_mod = format!(
        "module example.local/{name}\n\ngo 1.26\n\nrequire k8s.io/kubernetes v{KUBERNETES_VERSION}\n\nreplace (\n"
    );
    for module in STAGING_MODULES {
        go_mod.push_str(&format!("\tk8s.io/{module} => k8s.io/{module} {staging}\n"));
    }
    go_mod.push_str(")\n");
    let ldflags = format!(
        "-s -w -X k8s.io/component-base/version.gitVersion=v{KUBERNETES_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor={minor}"
    );
    cached_go_build(
        &format!("{name}-v{KUBERNETES_VERSION}"),
        name,
        &go_mod,
        &format!("k8s.io/kubernetes/cmd/{name}@v{KUBERNETES_VERSION}"),
        &format!("k8s.io/kubernetes/cmd/{name}"),
        &ldflags,
    )
}

/// The etcd binary, built if needed.
pub fn etcd() -> anyhow::Result<PathBuf> {
    if let Some(path) = given("ETCD_BIN", "etcd")? {
        return Ok(path);
    }
    cached_go_build(
        &format!("etcd-v{ETCD_VERSION}"),
        "etcd",
        "module example.local/etcd\n\ngo 1.26\n",
        &format!("go.etcd.io/etcd/server/v3@v{ETCD_VERSION}"),
        "go.etcd.io/etcd/server/v3",
        "-s -w",
    )
}

/// The helm binary the chart test renders with, built if needed (`HELM_BIN` uses another).
pub fn helm() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("HELM_BIN").map(PathBuf::from) {
        if !path.is_file() {
            bail!("HELM_BIN points at {}, which is not a file", path.display());
        }
        return Ok(path);
    }
    cached_go_build(
        &format!("helm-v{HELM_VERSION}"),
        "helm",
        "module example.local/helm\n\ngo 1.26\n",
        &format!("helm.sh/helm/v3/cmd/helm@v{HELM_VERSION}"),
        "helm.sh/helm/v3/cmd/helm",
        "-s -w",
    )
}

fn given(variable: &str, name: &str) -> anyhow::Result<Option<PathBuf>> {
    let path = match (std::env::var_os(variable), std::env::var_os("KUBEBUILDER_ASSETS")) {
        (Some(path), _) => PathBuf::from(path),
        (None, Some(assets)) => Path::new(&assets).join(name),
        (None, None) => return Ok(None),
    };
    if !path.is_file() {
        bail!("{} points at {}, which is not a file", variable, path.display());
    }
    Ok(Some(path))
}

fn cached_go_build(
    key: &str,
    binary: &str,
    go_mod: &str,
    tool: &str,
    package: &str,
    ldflags: &str,
) -> anyhow::Result<PathBuf> {
    let dir = cache_dir()?.join(key);
    let target = dir.join(binary);
    if target.is_file() {
        return Ok(target);
    }
    let go = which("go").context(
        "building the test control plane needs Go (https://go.dev) and the Go module proxy; \
         or set KUBE_APISERVER_BIN and ETCD_BIN (or KUBEBUILDER_ASSETS) to existing binaries",
    )?;
    let work = dir.join("module");
    std::fs::create_dir_all(&work)?;
    std::fs::write(work.join("go.mod"), go_mod)?;
    eprintln!("xtask: building {key} from the Go module proxy (first run only; several minutes)");
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let status = Command::new(&go).args(args).current_dir(&work).env("CGO_ENABLED", "0").status()?;
        if !status.success() {
            bail!("`go {}` failed for {key} ({status})", args.join(" "));
        }
        Ok(())
    };
    run(&["get", "-tool", tool])?;
    let partial = dir.join(format!("{binary}.partial"));
    run(&["build", "-trimpath", "-ldflags", ldflags, "-o", &partial.display().to_string(), package])?;
    std::fs::rename(&partial, &target)?;
    Ok(target)
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| candidate.is_file())
}
