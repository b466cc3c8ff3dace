//! Running the rule program: read the table, apply the whole program with one
//! `iptables-restore --noflush` per family (a failure leaves the table as it was), read it back.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::config::{Config, Family, Mode};
use crate::rules::{self, Existing};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("none of the iptables binaries for {family:?} ({tried}) was found in PATH")]
    NoBinaries { family: Family, tried: String },
    #[error("cannot run {command}: {source}")]
    Spawn { command: String, source: std::io::Error },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed { command: String, status: String, stderr: String },
    #[error("cannot set the conntrack close-wait timeout: {0}")]
    Sysctl(String),
}

/// What was done (or, simulating, would be done) for one family.
#[derive(Debug, Clone)]
pub struct Applied {
    pub family: Family,
    pub mode: Mode,
    pub restore_input: String,
    /// `iptables-save -t nat` afterwards (empty when simulating).
    pub after: String,
}

fn find(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join(binary)).find(|candidate| candidate.is_file())
}

/// The requested mode's binaries, else the first available of nft, plain and legacy.
fn binaries(family: Family, requested: Mode) -> Result<(Mode, PathBuf, PathBuf), ApplyError> {
    let mut tried = Vec::new();
    for mode in [requested, Mode::Nft, Mode::Plain, Mode::Legacy] {
        let (restore, save) = family.binaries(mode);
        if let (Some(restore_path), Some(save_path)) = (find(&restore), find(&save)) {
            return Ok((mode, restore_path, save_path));
        }
        tried.push(restore);
    }
    Err(ApplyError::NoBinaries { family, tried: tried.join(", ") })
}

/// Runs a command, inside `netns` when given, feeding `input` on stdin.
fn run(netns: Option<&Path>, program: &Path, args: &[&str], input: Option<&str>) -> Result<String, ApplyError> {
    let mut command = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", ns.display())).arg("--").arg(program);
            c
        }
        None => Command::new(program),
    };
    command.args(args).stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
    let described = format!("{} {}", program.display(), args.join(" "));
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ApplyError::Spawn { command: described.clone(), source })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).map_err(|source| ApplyError::Spawn { command: described.clone(), source })?;
    }
    let output = child.wait_with_output().map_err(|source| ApplyError::Spawn { command: described.clone(), source })?;
    if !output.status.success() {
        return Err(ApplyError::Failed {
            command: described,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn families(config: &Config) -> Vec<Family> {
    if config.ipv6 { vec![Family::V4, Family::V6] } else { vec![Family::V4] }
}

fn restore_args(config: &Config) -> Vec<&'static str> {
    if config.use_wait_flag { vec!["--noflush", "-w"] } else { vec!["--noflush"] }
}

/// Programs every family; the first failure stops, leaving that family's table untouched.
pub fn apply(config: &Config) -> Result<Vec<Applied>, ApplyError> {
    let netns = config.netns.as_deref();
    let mut applied = Vec::new();
    for family in families(config) {
        let (mode, restore, save) = binaries(family, config.mode)?;
        let existing = if config.simulate {
            Existing::default()
        } else {
            Existing::read(&run(netns, &save, &["-t", "nat"], None)?)
        };
        let input = rules::program(config, family, existing);
        let after = if config.simulate {
            String::new()
        } else {
            run(netns, &restore, &restore_args(config), Some(&input))?;
            run(netns, &save, &["-t", "nat"], None)?
        };
        applied.push(Applied { family, mode, restore_input: input, after });
    }
    if config.timeout_close_wait_secs > 0 && !config.simulate {
        set_close_wait_timeout(netns, config.timeout_close_wait_secs)?;
    }
    Ok(applied)
}

/// Removes the chains and jumps that [`apply`] installs.
pub fn cleanup(config: &Config) -> Result<Vec<Applied>, ApplyError> {
    let netns = config.netns.as_deref();
    let mut applied = Vec::new();
    for family in families(config) {
        let (mode, restore, save) = binaries(family, config.mode)?;
        let existing = Existing::read(&run(netns, &save, &["-t", "nat"], None)?);
        let Some(input) = rules::cleanup(existing) else { continue };
        if !config.simulate {
            run(netns, &restore, &restore_args(config), Some(&input))?;
        }
        let after = if config.simulate { String::new() } else { run(netns, &save, &["-t", "nat"], None)? };
        applied.push(Applied { family, mode, restore_input: input, after });
    }
    Ok(applied)
}

/// `net.netfilter.nf_conntrack_tcp_timeout_close_wait` is per network namespace; inside another
/// one it is written by a shell entered into it (images need not ship `sysctl`).
fn set_close_wait_timeout(netns: Option<&Path>, seconds: u64) -> Result<(), ApplyError> {
    const PATH: &str = "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_close_wait";
    match netns {
        Some(_) => run(netns, Path::new("sh"), &["-c", &format!("echo {seconds} > {PATH}")], None).map(|_| ()),
        None => std::fs::write(PATH, seconds.to_string()).map_err(|e| ApplyError::Sysctl(format!("{PATH}: {e}"))),
    }
}
