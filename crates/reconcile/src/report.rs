//! The plan as a table for a terminal (`status`, `reconcile --dry-run`).

use std::fmt::Write;

use crate::plan::{Expectation, Plan, Step};

fn expected(expectation: &Expectation) -> String {
    match expectation {
        Expectation::Injected { version, .. } => format!("yes ({version})"),
        Expectation::InTemplate => "in template".into(),
        Expectation::NotInjected { .. } => "no".into(),
        Expectation::Unknown { .. } => "unknown".into(),
    }
}

fn step(step: &Step, expectation: &Expectation) -> String {
    match step {
        Step::Nothing => match expectation {
            Expectation::NotInjected { reason } | Expectation::Unknown { reason } => format!("none ({reason})"),
            _ => "none".into(),
        },
        Step::Restart(why) => format!("restart: {why}"),
        Step::Held(why) => format!("held: {why}"),
        Step::Report(why) => format!("report: {why}"),
    }
}

pub fn table(plan: &Plan) -> String {
    let header =
        ["NAMESPACE", "KIND", "NAME", "MESHED", "PODS (meshed/unmeshed/stale/unwanted/plain)", "PROXY", "ACTION"];
    let rows: Vec<[String; 7]> = plan
        .workloads
        .iter()
        .map(|w| {
            let p = &w.pods;
            [
                w.namespace.clone(),
                w.kind.to_string(),
                w.name.clone(),
                expected(&w.expected),
                format!("{}/{}/{}/{}/{}", p.meshed, p.unmeshed, p.stale, p.unwanted, p.plain),
                w.proxy_versions.iter().cloned().collect::<Vec<_>>().join(","),
                step(&w.step, &w.expected),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                let _ = writeln!(out, "{cell}");
            } else {
                let _ = write!(out, "{cell:<width$}  ", width = widths[i]);
            }
        }
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    out
}
