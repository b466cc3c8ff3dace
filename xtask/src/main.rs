//! `cargo xtask <task>`: the project's workflows in one place.
//!
//! - `test`: every test of the workspace.
//! - `bench`: the criterion benchmarks.

#![forbid(unsafe_code)]

use std::process::Command;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    match task.as_str() {
        "test" => test(),
        "bench" => bench(),
        other => bail!("unknown task {other:?}; tasks: test, bench"),
    }
}

fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo).args(args).status().with_context(|| format!("cannot run {cargo}"))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

fn test() -> anyhow::Result<()> {
    cargo(&["test", "--workspace", "--all-targets", "--locked"])
}

fn bench() -> anyhow::Result<()> {
    cargo(&["bench", "--workspace", "--locked"])
}
