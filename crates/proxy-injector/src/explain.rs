//! `explain`: why a workload is (not) injected, with what configuration, and from where each
//! setting comes. With a namespace it answers as the webhook would for the pods the workload
//! creates.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use governance::{Policy, Subject, Violation};
use inject::config::AnnotationSet;
use inject::uninject::{Purpose, uninject};
use inject::workload::{Kind, SERVICE_ACCOUNT_MOUNT_PATH, Workload};
use inject::{Injector, Origin, Outcome, Owner, Request};
use serde_json::{Map, Value, json};

use crate::cluster::ClusterArgs;
use crate::input;
use crate::install::Injection;
use crate::transform::ConfigArgs;

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Files, directories, - for standard input, or https:// URLs
    pub inputs: Vec<String>,
    /// A Namespace manifest: answer as the webhook would for pods in that namespace
    #[arg(long, value_name = "NS.yaml", conflicts_with = "namespace")]
    pub namespace_file: Option<PathBuf>,
    /// Read this namespace from the cluster and answer as the webhook would
    #[arg(long)]
    pub namespace: Option<String>,
    /// Also print the exact JSON patch
    #[arg(long)]
    pub patch: bool,
    /// With a namespace: say who injects each pod under this installation mode (the admission
    /// policy, the webhook, or nobody) and why
    #[arg(long, value_enum, default_value = "webhook")]
    pub injection: Injection,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: ExplainFormat,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExplainFormat {
    Table,
    Json,
}

/// The namespace the webhook would see.
struct NamespaceView {
    name: String,
    annotations: Map<String, Value>,
    labels: BTreeMap<String, String>,
}

pub fn run(args: &ExplainArgs, cluster: &ClusterArgs, control_plane_ns: &str) -> anyhow::Result<()> {
    let inputs = input::read_all(&args.inputs)?;
    let injector = args.config.injector(cluster, control_plane_ns)?;
    let policy = Policy::from_values(&injector.values().values)?;
    let namespace = match (&args.namespace_file, &args.namespace) {
        (Some(path), _) => Some(namespace_from_file(path)?),
        (None, Some(name)) => {
            let (annotations, labels) = cluster.namespace(name)?;
            Some(NamespaceView { name: name.clone(), annotations, labels })
        }
        (None, None) => None,
    };
    if args.injection != Injection::Webhook && namespace.is_none() {
        anyhow::bail!(
            "--injection {} says who injects pods at admission: give the namespace with --namespace or --namespace-file",
            args.injection.as_str()
        );
    }
    // What the policy reaches, compiled once: a configuration it cannot express reaches nothing.
    let reach = admission_policy::fingerprint(&injector).and_then(|_| admission_policy::support(&injector));
    let mut reports = Vec::new();
    for input in &inputs {
        let documents = manifest::parse_stream(&input.text).with_context(|| input.name.clone())?;
        for document in documents {
            let objects = match document.value.get("items").and_then(Value::as_array) {
                Some(items) if document.value.get("kind") == Some(&"List".into()) => items.clone(),
                _ => vec![document.value.clone()],
            };
            for object in objects {
                let explained = explain(&injector, &policy, &object, namespace.as_ref());
                let route = match (&explained, namespace.as_ref()) {
                    (Ok((outcome, _)), Some(namespace))
                        if args.injection != Injection::Webhook && outcome.injectable =>
                    {
                        Some(route(args.injection, &reach, &object, namespace))
                    }
                    _ => None,
                };
                reports.push(json!({
                    "route": route,
                    "input": input.name,
                    "document": document.index,
                    "origin": if namespace.is_some() { "webhook" } else { "cli --manual" },
                    "kind": object.get("kind").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase(),
                    "name": object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or(""),
                    "result": match explained {
                        Ok((outcome, violations)) => outcome_json(&outcome, &violations, args.patch),
                        Err(error) => json!({"error": error}),
                    },
                }));
            }
        }
    }
    match args.output {
        ExplainFormat::Json => println!("{}", serde_json::to_string_pretty(&reports)?),
        ExplainFormat::Table => print!("{}", table(&reports)),
    }
    Ok(())
}

fn namespace_from_file(path: &PathBuf) -> anyhow::Result<NamespaceView> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let documents = manifest::parse_stream(&text).with_context(|| path.display().to_string())?;
    let namespace = documents
        .into_iter()
        .map(|d| d.value)
        .find(|v| v.get("kind").and_then(Value::as_str) == Some("Namespace"))
        .with_context(|| format!("{}: no Namespace document", path.display()))?;
    let labels = namespace.pointer("/metadata/labels").and_then(Value::as_object).into_iter().flatten();
    Ok(NamespaceView {
        name: namespace.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string(),
        annotations: namespace.pointer("/metadata/annotations").and_then(Value::as_object).cloned().unwrap_or_default(),
        labels: labels.filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect(),
    })
}

/// The outcome, and the governance rules the object breaks (the namespace's labels decide the
/// namespace-selected rules; without a namespace they are not known).
fn explain(
    injector: &Injector,
    policy: &Policy,
    object: &Value,
    namespace: Option<&NamespaceView>,
) -> Result<(Outcome, Vec<Violation>), String> {
    let outcome = evaluate(injector, object, namespace)?;
    let workload = Workload::new(object, None);
    let subject = Subject {
        outcome: &outcome,
        values: &injector.values().values,
        annotations: workload.template.and_then(|t| t.annotations()),
        namespace: namespace.map(|n| governance::Namespace { name: &n.name, labels: &n.labels }),
    };
    let violations = policy.review(&subject);
    Ok((outcome, violations))
}

fn evaluate(injector: &Injector, object: &Value, namespace: Option<&NamespaceView>) -> Result<Outcome, String> {
    // As `inject` reads it: YAML scalars in metadata are strings, and the shape is checked before
    // uninjection touches anything.
    let mut object = object.clone();
    inject::shape::stringify_metadata_scalars(&mut object, None);
    inject::shape::check(&object, None).map_err(|e| e.to_string())?;
    let object = &object;
    let Some(namespace) = namespace else {
        let mut clean = object.clone();
        uninject(&mut clean, Purpose::BeforeInject);
        let overrides = AnnotationSet::default();
        let origin = Origin::Cli { manual: true, overrides: &overrides };
        return injector.evaluate(&Request { object: &clean, kind: None, origin }).map_err(|e| e.to_string());
    };
    let workload = Workload::new(object, None);
    let owner_kind = workload.kind.filter(|k| !matches!(k, Kind::Pod)).map(Kind::as_str);
    let owner = owner_kind.map(|kind| Owner { kind, name: workload.name() });
    let origin =
        Origin::Webhook { namespace: &namespace.name, namespace_annotations: Some(&namespace.annotations), owner };
    let pod = admitted_pod(&workload, object);
    injector.evaluate(&Request { object: &pod, kind: None, origin }).map_err(|e| e.to_string())
}

/// The pod `object` creates, as admission sees it: the webhook and the policy see pods, with the
/// owner reference its controller sets and the token mount the ServiceAccount admission plugin
/// adds before either runs.
fn admitted_pod(workload: &Workload<'_>, object: &Value) -> Value {
    let mut pod = match (workload.kind, workload.template) {
        (Some(Kind::Pod), _) => object.clone(),
        (_, None) => return object.clone(),
        (_, Some(template)) => json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": template.metadata().cloned().unwrap_or_default(),
            "spec": template.spec().cloned().unwrap_or_default(),
        }),
    };
    let immediate_owner = match workload.kind {
        Some(Kind::Deployment | Kind::ReplicaSet) => Some(("apps/v1", "ReplicaSet")),
        Some(Kind::CronJob | Kind::Job) => Some(("batch/v1", "Job")),
        Some(Kind::StatefulSet) => Some(("apps/v1", "StatefulSet")),
        Some(Kind::DaemonSet) => Some(("apps/v1", "DaemonSet")),
        Some(Kind::ReplicationController) => Some(("v1", "ReplicationController")),
        _ => None,
    };
    if let Some((api_version, kind)) = immediate_owner
        && pod["metadata"].is_object()
    {
        pod["metadata"]["ownerReferences"] =
            json!([{"apiVersion": api_version, "kind": kind, "name": workload.name(), "controller": true}]);
    }
    if pod.pointer("/spec/automountServiceAccountToken") != Some(&Value::Bool(false)) {
        let token = json!({"name": "kube-api-access", "mountPath": SERVICE_ACCOUNT_MOUNT_PATH, "readOnly": true});
        for container in pod.pointer_mut("/spec/containers").and_then(Value::as_array_mut).into_iter().flatten() {
            let mounts = container.get("volumeMounts").and_then(Value::as_array);
            let mounted =
                mounts.into_iter().flatten().any(|m| m.get("mountPath") == Some(&json!(SERVICE_ACCOUNT_MOUNT_PATH)));
            if mounted || !container.is_object() {
                continue;
            }
            match container["volumeMounts"].as_array_mut() {
                Some(list) => list.push(token.clone()),
                None => container["volumeMounts"] = json!([token]),
            }
        }
    }
    pod
}

/// Who injects the pod `object` creates under `injection`.
fn route(
    injection: Injection,
    reach: &Result<admission_policy::Support, admission_policy::CompileError>,
    object: &Value,
    namespace: &NamespaceView,
) -> Value {
    let pod = admitted_pod(&Workload::new(object, None), object);
    let unmet = match reach {
        Err(error) => vec![json!({"condition": "configuration", "why": error.to_string()})],
        Ok(support) => match admission_policy::route(support, &pod, Some(&namespace.annotations)) {
            admission_policy::Route::Policy => Vec::new(),
            admission_policy::Route::Webhook { unmet } => {
                unmet.into_iter().map(|(condition, why)| json!({"condition": condition, "why": why})).collect()
            }
        },
    };
    let by = match (unmet.is_empty(), injection) {
        (true, _) => "policy",
        (false, Injection::Policy) => "nobody",
        (false, _) => "webhook",
    };
    json!({"injection": injection.as_str(), "by": by, "unmet": unmet})
}

fn outcome_json(outcome: &Outcome, violations: &[Violation], with_patch: bool) -> Value {
    let reasons: Vec<Value> = outcome.reasons.iter().map(|r| json!({"code": r.code(), "text": r.text()})).collect();
    let configuration: Vec<Value> = outcome
        .config
        .as_ref()
        .map(|c| c.entries())
        .unwrap_or_default()
        .into_iter()
        .map(|(setting, value, source)| json!({"setting": setting, "value": value, "source": source.as_str()}))
        .collect();
    let mut result = json!({
        "inject": outcome.injectable,
        "action": outcome.action,
        "reasons": reasons,
        "annotationAt": outcome.inject_annotation.at.as_str(),
        "warnings": outcome.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "udp": outcome.udp,
        "annotations": outcome.written_annotations.iter()
            .map(|(k, v, s)| json!({"key": k, "value": v, "source": s.as_str()})).collect::<Vec<_>>(),
        "configuration": configuration,
        "policy": violations.iter().map(|v| json!({"rule": v.rule.as_str(), "mode": v.mode.as_str(),
            "problem": v.problem, "remedy": v.remedy})).collect::<Vec<_>>(),
    });
    if with_patch {
        result["patch"] = serde_json::to_value(&outcome.patch).unwrap_or(Value::Null);
    }
    result
}

fn table(reports: &[Value]) -> String {
    let mut out = String::new();
    for report in reports {
        let text = |v: &Value| v.as_str().unwrap_or("").to_string();
        let _ = writeln!(
            out,
            "{}/{} ({} document {}, as {})",
            text(&report["kind"]),
            text(&report["name"]),
            text(&report["input"]),
            report["document"],
            text(&report["origin"])
        );
        let result = &report["result"];
        if let Some(error) = result.get("error") {
            let _ = writeln!(out, "  error: {}\n", text(error));
            continue;
        }
        if result["inject"] == true {
            let at = text(&result["annotationAt"]);
            let _ = writeln!(
                out,
                "  decision: inject{}",
                if at.is_empty() { String::new() } else { format!(" (annotation at {at})") }
            );
        } else {
            let _ = writeln!(out, "  decision: skip");
            for reason in result["reasons"].as_array().into_iter().flatten() {
                let _ = writeln!(out, "    - {}: {}", text(&reason["code"]), text(&reason["text"]));
            }
        }
        if let Some(route) = report.get("route").filter(|r| !r.is_null()) {
            let by = match text(&route["by"]).as_str() {
                "policy" => format!("the admission policy {} (inside the apiserver)", admission_policy::POLICY_NAME),
                "webhook" => "the webhook, because:".to_string(),
                _ => {
                    "nobody: --injection policy installs no webhook; created without a proxy, with a warning, because:"
                        .to_string()
                }
            };
            let _ = writeln!(out, "  injected by: {by}");
            for unmet in route["unmet"].as_array().into_iter().flatten() {
                let _ = writeln!(out, "    - {}: {}", text(&unmet["condition"]), text(&unmet["why"]));
            }
        }
        for warning in result["warnings"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "  warning: {}", text(warning));
        }
        for broken in result["policy"].as_array().into_iter().flatten() {
            let (rule, mode) = (text(&broken["rule"]), text(&broken["mode"]));
            let verdict = if mode == "enforce" { "denied" } else { "audited" };
            let _ = writeln!(
                out,
                "  policy: {verdict} by rule {rule}: {}; to comply, {}",
                text(&broken["problem"]),
                text(&broken["remedy"])
            );
        }
        if result["udp"] == true {
            let _ = writeln!(out, "  warning: the pod declares UDP ports; UDP traffic is not proxied");
        }
        let annotations = result["annotations"].as_array().cloned().unwrap_or_default();
        if !annotations.is_empty() {
            let _ = writeln!(out, "  annotations written:");
            for a in &annotations {
                let _ = writeln!(out, "    {} = {:?} ({})", text(&a["key"]), text(&a["value"]), text(&a["source"]));
            }
        }
        let settings = result["configuration"].as_array().cloned().unwrap_or_default();
        let (defaults, set): (Vec<Value>, Vec<Value>) = settings.into_iter().partition(|s| s["source"] == "default");
        if !set.is_empty() {
            let width = set.iter().map(|s| text(&s["setting"]).len()).max().unwrap_or(0);
            let _ = writeln!(out, "  configuration (settings not at their chart default):");
            for s in &set {
                let value = text(&s["value"]);
                let shown =
                    if value.len() > 60 { format!("{}…", &value[..value.floor_char_boundary(60)]) } else { value };
                let _ = writeln!(out, "    {:width$}  {shown}  [{}]", text(&s["setting"]), text(&s["source"]));
            }
        }
        if !defaults.is_empty() {
            let _ = writeln!(
                out,
                "  {} other settings at their chart defaults (-o json lists every setting)",
                defaults.len()
            );
        }
        if let Some(patch) = result.get("patch") {
            let _ = writeln!(out, "  patch:\n{}", serde_json::to_string_pretty(patch).unwrap_or_default());
        }
        out.push('\n');
    }
    out
}
