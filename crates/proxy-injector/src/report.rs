//! The report `inject` and `uninject` write to standard error after each input (§7.2).

use std::fmt::Write;
use std::io::IsTerminal;

use inject::Outcome;
use inject::annotation::Warning;
use inject::decision::SkipReason;

/// What happened to one object, as the report summarizes it.
pub struct Entry {
    pub kind: String,
    pub name: String,
    /// `injected`, `annotated`, `skipped` or `uninjected`.
    pub verdict: &'static str,
    pub checks: Option<Checks>,
}

/// The parts of an [`Outcome`] the inject report reads; kept instead of the outcome itself, whose
/// patch is large, so a long stream is reported in little memory.
pub struct Checks {
    host_network: bool,
    sidecar: bool,
    disabled: bool,
    udp: bool,
    automount_disabled: bool,
    supported: bool,
    warnings: Vec<Warning>,
    /// What else the report warns of: YAML scalars in metadata read differently from how they
    /// were written, and audited governance rules the object breaks.
    notes: Vec<String>,
}

impl Checks {
    pub fn of(outcome: Outcome, notes: Vec<String>) -> Checks {
        Checks {
            host_network: outcome.host_network,
            sidecar: outcome.sidecar,
            disabled: outcome.reasons.contains(&SkipReason::InjectionDisableAnnotationPresent),
            udp: outcome.udp,
            automount_disabled: outcome.automount_disabled,
            supported: outcome.injectable || outcome.annotatable,
            warnings: outcome.warnings,
            notes,
        }
    }
}

impl Entry {
    fn label(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

struct Marks {
    ok: String,
    warn: String,
}

fn marks() -> Marks {
    if std::io::stderr().is_terminal() {
        Marks { ok: "\x1b[1;32m√\x1b[0m".into(), warn: "\x1b[1;33m‼\x1b[0m".into() }
    } else {
        Marks { ok: "√".into(), warn: "‼".into() }
    }
}

/// The inject report: checks, annotation warnings, then one line per object.
pub fn inject_report(entries: &[Entry], verbose: bool) -> String {
    let Marks { ok, warn } = marks();
    let outcomes: Vec<(&Entry, &Checks)> = entries.iter().filter_map(|e| e.checks.as_ref().map(|c| (e, c))).collect();
    let offenders = |pick: fn(&Checks) -> bool| -> Vec<String> {
        outcomes.iter().filter(|(_, o)| pick(o)).map(|(e, _)| e.label()).collect()
    };
    let mut out = String::from("\n");
    let mut warned = false;
    let mut check = |offending: Vec<String>, warning: String, fine: &str| {
        if offending.is_empty() {
            if verbose {
                let _ = writeln!(out, "{ok} {fine}");
            }
        } else {
            warned = true;
            let _ = writeln!(out, "{warn} {warning}");
        }
    };
    let host = offenders(|o| o.host_network);
    check(
        host.clone(),
        format!("\"hostNetwork: true\" detected in {}", host.join(", ")),
        "pods do not use host networking",
    );
    let sidecars = offenders(|o| o.sidecar);
    check(
        sidecars.clone(),
        format!("known 3rd party sidecar detected in {}", sidecars.join(", ")),
        "pods do not have a 3rd party proxy or initContainer already injected",
    );
    let disabled = offenders(|o| o.disabled);
    check(
        disabled.clone(),
        format!("\"linkerd.io/inject: disabled\" annotation set on {}", disabled.join(", ")),
        "pods are not annotated to disable injection",
    );
    let supported = outcomes.iter().any(|(_, o)| o.supported);
    let none = if supported { Vec::new() } else { vec![String::new()] };
    check(none, "no supported objects found".into(), "at least one resource can be injected or annotated");
    let udp = offenders(|o| o.udp);
    let verb = if udp.len() > 1 { "use" } else { "uses" };
    check(udp.clone(), format!("{} {verb} \"protocol: UDP\"", udp.join(", ")), "pod specs do not include UDP ports");
    if verbose && !outcomes.iter().any(|(_, o)| o.automount_disabled) {
        let _ = writeln!(
            out,
            "{ok} pods do not have automountServiceAccountToken set to \"false\" or service account token projection is enabled"
        );
    }
    for (entry, outcome) in &outcomes {
        for warning in outcome.warnings.iter().map(ToString::to_string).chain(outcome.notes.iter().cloned()) {
            warned = true;
            let _ = writeln!(out, "{warn} {}: {warning}", entry.label());
        }
    }
    if warned || verbose {
        out.push('\n');
    }
    summary(&mut out, entries);
    out
}

/// The uninject report: one line per object.
pub fn uninject_report(entries: &[Entry]) -> String {
    let mut out = String::from("\n");
    summary(&mut out, entries);
    out
}

fn summary(out: &mut String, entries: &[Entry]) {
    for entry in entries {
        if entry.kind.is_empty() {
            out.push_str("document missing \"kind\" field, skipped\n");
        } else {
            let _ = writeln!(out, "{} \"{}\" {}", entry.kind, entry.name, entry.verdict);
        }
    }
    out.push('\n');
}
