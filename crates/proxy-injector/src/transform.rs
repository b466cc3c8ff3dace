//! `inject` and `uninject`: text transforms of manifest streams, sharing the engine with the
//! webhook.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use governance::{Mode, Policy, Subject, Violation};
use inject::config::AnnotationSet;
use inject::patch::ParsedValues;
use inject::uninject::{Purpose, uninject};
use inject::workload::Workload;
use inject::{Action, Injector, Origin, Request};
use manifest::{Document, Format, Syntax};
use serde_json::Value;

use crate::cluster::ClusterArgs;
use crate::flags::ProxyFlags;
use crate::input::{self, Input};
use crate::report::{self, Checks, Entry};

/// Where the configuration comes from.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// Values file in the schema of Linkerd's Helm values (repeatable; later files win)
    #[arg(long = "values", value_name = "FILE")]
    pub values: Vec<PathBuf>,
    /// Do not read the configuration from the cluster; use the chart defaults
    #[arg(long)]
    pub ignore_cluster: bool,
}

impl ConfigArgs {
    /// Values files if given, else the chart defaults with `--ignore-cluster`, else the cluster's.
    pub fn load(
        &self,
        cluster: &ClusterArgs,
        control_plane_ns: &str,
    ) -> anyhow::Result<inject::values::ValuesDocument> {
        let mut document = inject::values::ValuesDocument::default();
        if !self.values.is_empty() {
            for path in &self.values {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read values file {}", path.display()))?;
                document =
                    document.merge(parse_values(&text).with_context(|| format!("values file {}", path.display()))?)?;
            }
        } else if !self.ignore_cluster {
            let text = cluster.linkerd_values(control_plane_ns)?;
            document = document.merge(parse_values(&text).context("the values of ConfigMap linkerd-config")?)?;
        }
        Ok(document)
    }

    pub fn injector(&self, cluster: &ClusterArgs, control_plane_ns: &str) -> anyhow::Result<Injector> {
        Ok(Injector::new(self.load(cluster, control_plane_ns)?, control_plane_ns)?)
    }
}

fn parse_values(text: &str) -> anyhow::Result<Value> {
    let documents = manifest::parse_stream(text)?;
    Ok(documents.into_iter().next().map(|d| d.value).unwrap_or(Value::Null))
}

/// How rendered objects are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Yaml,
    Json,
}

impl From<OutputFormat> for Format {
    fn from(format: OutputFormat) -> Format {
        match format {
            OutputFormat::Yaml => Format::Yaml,
            OutputFormat::Json => Format::Json,
        }
    }
}

/// How `inject` and `uninject` write what they changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ManifestOutput {
    /// YAML input edited in place (JSON input written as YAML)
    Yaml,
    Json,
    /// A kustomization `patches:` list: per changed object, its target and the JSON 6902 patch
    /// that makes the change
    Patch,
}

/// How the output is written, and whether it is only compared with the input.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value = "yaml")]
    pub output: ManifestOutput,
    /// Write nothing: exit 0 if every input is already what this command would output, else
    /// print a unified diff per input and exit 1 (for pre-commit hooks and CI)
    #[arg(long, conflicts_with = "output")]
    pub check: bool,
}

#[derive(Debug, Args)]
pub struct InjectArgs {
    /// Files, directories, - for standard input, or https:// URLs
    pub inputs: Vec<String>,
    /// Add the proxy containers to the output instead of the inject annotation
    #[arg(long)]
    pub manual: bool,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub proxy: ProxyFlags,
}

#[derive(Debug, Args)]
pub struct UninjectArgs {
    /// Files, directories, - for standard input, or https:// URLs
    pub inputs: Vec<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// One document's result: the value to write (`None`: write the original text) and the report.
struct Transformed {
    value: Option<Value>,
    entries: Vec<Entry>,
}

/// Runs `transform` on every input and writes each input's output only if all its documents
/// succeeded (with `--check`, compares it with the input instead). Returns whether every input
/// succeeded (and, with `--check`, was unchanged).
fn run_inputs(
    inputs: &[Input],
    output: &OutputArgs,
    mut transform: impl FnMut(&Value) -> Result<Transformed, String>,
    report: impl Fn(&[Entry]) -> String,
) -> anyhow::Result<bool> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let mut unchanged = true;
    for (position, input) in inputs.iter().enumerate() {
        let Transformation { written, entries, rewritten } =
            match transform_input(input, output.output, &mut transform)? {
                Ok(done) => done,
                Err(errors) => {
                    eprintln!("Error transforming resources:\n{}", errors.join("\n"));
                    return Ok(false);
                }
            };
        for note in rewritten {
            eprintln!("{}: {note}", input.name);
        }
        if output.check {
            if written != input.text {
                unchanged = false;
                let diff = similar::TextDiff::from_lines(&input.text, &written);
                let name = &input.name;
                write!(stdout, "{}", diff.unified_diff().header(name, &format!("{name} (expected)")))?;
            }
            continue;
        }
        // One stream from several inputs: each YAML input starts a new document.
        if position > 0 && output.output != ManifestOutput::Json && !written.starts_with("---") {
            stdout.write_all(b"---\n")?;
        }
        stdout.write_all(written.as_bytes())?;
        if !written.is_empty() && !written.ends_with('\n') {
            stdout.write_all(b"\n")?;
        }
        stdout.flush()?;
        eprint!("{}", report(&entries));
    }
    Ok(unchanged)
}

/// One input's output, what to report of it, and the documents that had to be rewritten whole.
struct Transformation {
    written: String,
    entries: Vec<Entry>,
    rewritten: Vec<String>,
}

/// Transforms every document of `input`: its output, or every document's error.
///
/// Writing a changed document in place costs about what reading and transforming it does, so
/// the writer runs on its own thread, a bounded queue of documents behind the reader.
fn transform_input(
    input: &Input,
    output: ManifestOutput,
    transform: &mut impl FnMut(&Value) -> Result<Transformed, String>,
) -> anyhow::Result<Result<Transformation, Vec<String>>> {
    std::thread::scope(|scope| {
        let (queue, queued) = std::sync::mpsc::sync_channel::<(Document<'_>, Option<Value>)>(64);
        // Written documents go back to be dropped here: freeing memory on the thread that did
        // not allocate it made the allocator page memory in and out.
        let (written, to_drop) = std::sync::mpsc::channel();
        let writing = std::thread::Builder::new().name("writer".into()).spawn_scoped(
            scope,
            move || -> anyhow::Result<Option<Writer<'_>>> {
                let mut writer = None;
                for (document, value) in queued {
                    let writer = writer.get_or_insert_with(|| Writer::new(output, document.syntax, &input.text));
                    writer.add(&document, value.as_ref()).with_context(|| describe(input, &document))?;
                    // The reader may be gone already; then there is nothing left to drop.
                    let _ = written.send((document, value));
                }
                Ok(writer)
            },
        )?;
        let mut errors = Vec::new();
        let mut entries = Vec::new();
        let mut unreadable = None;
        for document in manifest::documents(&input.text) {
            to_drop.try_iter().for_each(drop);
            let document = match document {
                Ok(document) => document,
                Err(error) => {
                    unreadable = Some(error);
                    break;
                }
            };
            match transform(&document.value) {
                Ok(done) => {
                    entries.extend(done.entries);
                    // A closed queue means the writer failed; its error is reported below.
                    if queue.send((document, done.value)).is_err() {
                        break;
                    }
                }
                Err(message) => errors.push(format!("{}: {message}", describe(input, &document))),
            }
        }
        drop(queue);
        // The writer's error comes first: it is about an earlier document than the reader's.
        let writer = writing.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        if let Some(error) = unreadable {
            return Err(anyhow::Error::new(error).context(input.name.clone()));
        }
        if !errors.is_empty() {
            return Ok(Err(errors));
        }
        // Without documents (nothing but comments and markers) YAML is kept as it is.
        let writer = writer.unwrap_or_else(|| Writer::new(output, Syntax::Yaml, &input.text));
        let (written, rewritten) = writer.finish()?;
        Ok(Ok(Transformation { written, entries, rewritten }))
    })
}

/// Builds one input's output as its documents are transformed, so no more than one document is
/// held parsed at a time.
enum Writer<'s> {
    /// YAML input written as YAML, JSON as JSON: changed documents edited in place.
    InPlace { stream: manifest::InPlace<'s>, rewritten: Vec<String> },
    /// JSON input written as YAML, or YAML as JSON: every document written out.
    Documents { format: Format, out: String },
    /// `-o patch`: a kustomize patch per changed object.
    Patches(Vec<Value>),
}

impl<'s> Writer<'s> {
    fn new(output: ManifestOutput, syntax: Syntax, stream: &'s str) -> Writer<'s> {
        match output {
            ManifestOutput::Patch => Writer::Patches(Vec::new()),
            ManifestOutput::Yaml if syntax == Syntax::Yaml => {
                Writer::InPlace { stream: manifest::InPlace::new(stream, Format::Yaml), rewritten: Vec::new() }
            }
            ManifestOutput::Json if syntax == Syntax::Json => {
                Writer::InPlace { stream: manifest::InPlace::new(stream, Format::Json), rewritten: Vec::new() }
            }
            ManifestOutput::Yaml => Writer::Documents { format: Format::Yaml, out: String::new() },
            ManifestOutput::Json => Writer::Documents { format: Format::Json, out: String::new() },
        }
    }

    fn add(&mut self, document: &Document<'_>, value: Option<&Value>) -> anyhow::Result<()> {
        match (self, value) {
            (Writer::InPlace { .. } | Writer::Patches(_), None) => {}
            (Writer::InPlace { stream, rewritten }, Some(value)) => {
                if let Some(why) = stream.change(document, value)? {
                    rewritten.push(format!("document {}: rewritten whole ({why})", document.index));
                }
            }
            (Writer::Documents { format, out }, Some(value)) => format.write_document(value, out)?,
            (Writer::Documents { format, out }, None) => format.write_unchanged(document, out)?,
            (Writer::Patches(entries), Some(value)) => {
                let pairs: Vec<(&Value, &Value)> = match (document.value.get("items"), value.get("items")) {
                    (Some(Value::Array(old)), Some(Value::Array(new))) if is_list(value) => {
                        old.iter().zip(new).collect()
                    }
                    _ => vec![(&document.value, value)],
                };
                for (old, new) in pairs.into_iter().filter(|(old, new)| old != new) {
                    let operations = serde_json::to_value(json_patch::diff(old, new))?;
                    entries.push(serde_json::json!({"target": target(old), "patch": manifest::to_yaml(&operations)?}));
                }
            }
        }
        Ok(())
    }

    /// The output, and which documents had to be rewritten whole.
    fn finish(self) -> anyhow::Result<(String, Vec<String>)> {
        Ok(match self {
            Writer::InPlace { stream, rewritten } => (stream.finish(), rewritten),
            Writer::Documents { out, .. } => (out, Vec::new()),
            Writer::Patches(entries) => (manifest::to_yaml(&serde_json::json!({"patches": entries}))?, Vec::new()),
        })
    }
}

fn is_list(value: &Value) -> bool {
    value.get("kind") == Some(&"List".into())
}

/// A kustomize patch target naming exactly this object.
fn target(object: &Value) -> Value {
    let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or("v1");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let mut target = serde_json::json!({"group": group, "version": version, "kind": object["kind"],
        "name": object.pointer("/metadata/name").cloned().unwrap_or(Value::Null)});
    if let Some(namespace) = object.pointer("/metadata/namespace") {
        target["namespace"] = namespace.clone();
    }
    target
}

/// `<input>: document N (kind/name)`.
fn describe(input: &Input, document: &Document<'_>) -> String {
    let kind = document.value.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = document.value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    match (kind, name) {
        ("", _) => format!("{}: document {} (line {})", input.name, document.index, document.line),
        (kind, name) => format!("{}: document {} ({}/{name})", input.name, document.index, kind.to_ascii_lowercase()),
    }
}

/// Applies `f` to a document, or to each item of a `kind: List`.
fn each_object(value: &Value, mut f: impl FnMut(&Value) -> Result<Transformed, String>) -> Result<Transformed, String> {
    let Some(items) = value.get("items").and_then(Value::as_array).filter(|_| is_list(value)) else {
        return f(value);
    };
    let mut changed = false;
    let mut new_items = Vec::with_capacity(items.len());
    let mut entries = Vec::new();
    for item in items {
        let done = f(item)?;
        changed |= done.value.is_some();
        new_items.push(done.value.unwrap_or_else(|| item.clone()));
        entries.extend(done.entries);
    }
    let value = changed.then(|| {
        let mut list = value.clone();
        list["items"] = Value::Array(new_items);
        list
    });
    Ok(Transformed { value, entries })
}

fn identity(value: &Value) -> (String, String) {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
    let name = value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    (kind, name)
}

pub fn inject(args: &InjectArgs, cluster: &ClusterArgs, control_plane_ns: &str, verbose: bool) -> anyhow::Result<bool> {
    let inputs = input::read_all(&args.inputs)?;
    let injector = args.config.injector(cluster, control_plane_ns)?;
    let overrides = crate::flags::overrides(&args.proxy, injector.values())?;
    let policy = Policy::from_values(&injector.values().values)?;
    let context = InjectContext { injector: &injector, policy: &policy, overrides: &overrides, manual: args.manual };
    let mut parsed = ParsedValues::default();
    run_inputs(
        &inputs,
        &args.output,
        |value| each_object(value, |object| inject_object(&context, object, &mut parsed)),
        |entries| report::inject_report(entries, verbose),
    )
}

/// Reads booleans and numbers in annotations and labels as Kubernetes does (strings), and checks
/// the object's shape before anything touches it. Returns what was converted, to report it.
fn stringify_scalars(object: &mut Value) -> Result<Vec<String>, String> {
    let converted = inject::shape::stringify_metadata_scalars(object, None);
    inject::shape::check(object, None).map_err(|e| e.to_string())?;
    Ok(converted
        .into_iter()
        .map(|c| {
            format!(
                "{}: the unquoted YAML value {} is read as the string {:?}, as Kubernetes reads it",
                c.path, c.value, c.value
            )
        })
        .collect())
}

struct InjectContext<'a> {
    injector: &'a Injector,
    policy: &'a Policy,
    overrides: &'a AnnotationSet,
    manual: bool,
}

/// Uninjects silently, then injects: re-running `inject` on its own output changes nothing.
/// An object breaking an enforced governance rule is refused, as the webhook would deny its pods.
fn inject_object(
    context: &InjectContext<'_>,
    object: &Value,
    parsed: &mut ParsedValues,
) -> Result<Transformed, String> {
    let injector = context.injector;
    let mut clean = object.clone();
    let mut notes = stringify_scalars(&mut clean)?;
    let uninjected = uninject(&mut clean, Purpose::BeforeInject) || !notes.is_empty();
    let origin = Origin::Cli { manual: context.manual, overrides: context.overrides };
    let outcome = injector.evaluate(&Request { object: &clean, kind: None, origin }).map_err(|e| e.to_string())?;
    let subject = Subject {
        outcome: &outcome,
        values: &injector.values().values,
        annotations: Workload::new(&clean, None).template.and_then(|t| t.annotations()),
        namespace: None,
    };
    let (enforced, audited): (Vec<Violation>, Vec<Violation>) =
        context.policy.review(&subject).into_iter().partition(|v| v.mode == Mode::Enforce);
    if !enforced.is_empty() {
        let broken: Vec<String> = enforced.iter().map(ToString::to_string).collect();
        return Err(format!("the webhook would deny its pods: {}", broken.join("; ")));
    }
    notes.extend(audited.iter().map(ToString::to_string));
    let (kind, name) = identity(object);
    let verdict = match (outcome.injectable, outcome.action) {
        (true, _) => "injected",
        (false, Action::Annotated) => "annotated",
        _ => "skipped",
    };
    let value = if outcome.patch.is_empty() {
        uninjected.then_some(clean)
    } else {
        outcome
            .patch
            .apply_reusing(&mut clean, parsed)
            .map_err(|e| format!("internal error applying the patch: {e}"))?;
        Some(clean)
    };
    let entry = Entry { kind, name, verdict, checks: Some(Checks::of(outcome, notes)) };
    Ok(Transformed { value, entries: vec![entry] })
}

pub fn uninject_command(args: &UninjectArgs) -> anyhow::Result<bool> {
    let inputs = input::read_all(&args.inputs)?;
    run_inputs(
        &inputs,
        &args.output,
        |value| {
            each_object(value, |object| {
                let mut clean = object.clone();
                let converted = !stringify_scalars(&mut clean)?.is_empty();
                let changed = uninject(&mut clean, Purpose::Uninject) || converted;
                let (kind, name) = identity(object);
                let verdict = if changed { "uninjected" } else { "skipped" };
                Ok(Transformed {
                    value: changed.then_some(clean),
                    entries: vec![Entry { kind, name, verdict, checks: None }],
                })
            })
        },
        report::uninject_report,
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// How a generated manifest is written: what a team's own conventions might be.
    #[derive(Debug, Clone)]
    struct Layout {
        step: usize,
        indented_lists: bool,
        crlf: bool,
        quote: usize,
        flow_ports: bool,
        containers: usize,
        env: usize,
        template_annotations: bool,
        comments: bool,
        service: bool,
        end_marker: bool,
    }

    fn layout() -> impl Strategy<Value = Layout> {
        (
            prop_oneof![Just(2usize), Just(4)],
            any::<bool>(),
            any::<bool>(),
            0..3usize,
            any::<bool>(),
            1..4usize,
            0..3usize,
            (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        )
            .prop_map(|(step, indented_lists, crlf, quote, flow_ports, containers, env, flags)| Layout {
                step,
                indented_lists,
                crlf,
                quote,
                flow_ports,
                containers,
                env,
                template_annotations: flags.0,
                comments: flags.1,
                service: flags.2,
                end_marker: flags.3,
            })
    }

    /// A Deployment (and maybe a Service) written in `layout`.
    fn manifest(layout: &Layout) -> String {
        let mut lines: Vec<String> = Vec::new();
        let pad = |level: usize| " ".repeat(level * layout.step);
        let dash = |level: usize| if layout.indented_lists { pad(level + 1) } else { pad(level) };
        let comment = |text: &str| if layout.comments { format!("   # {text}") } else { String::new() };
        if layout.comments {
            lines.push("# generated by a team's templates".into());
        }
        lines.push("apiVersion: apps/v1".into());
        lines.push("kind: Deployment".into());
        lines.push("metadata:".into());
        lines.push(format!("{}name: web{}", pad(1), comment("the name")));
        lines.push(format!("{}labels: &labels", pad(1)));
        lines.push(format!("{}app: web", pad(2)));
        if layout.comments {
            lines.push(String::new());
        }
        lines.push("spec:".into());
        lines.push(format!("{}replicas: 3{}", pad(1), comment("scaled by HPA")));
        lines.push(format!("{}selector:", pad(1)));
        lines.push(format!("{}matchLabels: *labels", pad(2)));
        lines.push(format!("{}template:", pad(1)));
        lines.push(format!("{}metadata:", pad(2)));
        lines.push(format!("{}labels:", pad(3)));
        lines.push(format!("{}app: web", pad(4)));
        if layout.template_annotations {
            lines.push(format!("{}annotations:", pad(3)));
            lines.push(format!("{}example.com/owner: \"team-a\"{}", pad(4), comment("who to call")));
        }
        lines.push(format!("{}spec:", pad(2)));
        lines.push(format!("{}containers:", pad(3)));
        for index in 0..layout.containers {
            let image = ["app:v1".to_string(), "'app:v1'".into(), "\"app:v1\"".into()][layout.quote].clone();
            let item = dash(3);
            let inner = format!("{item}  ");
            lines.push(format!("{item}- name: app-{index}{}", comment("a container")));
            lines.push(format!("{inner}image: {image}"));
            if layout.flow_ports {
                lines.push(format!("{inner}ports: [{{containerPort: {}}}]", 8080 + index));
            } else {
                lines.push(format!("{inner}ports:"));
                let port_dash = if layout.indented_lists { format!("{inner}  ") } else { inner.clone() };
                lines.push(format!("{port_dash}- containerPort: {}", 8080 + index));
            }
            if layout.env > 0 {
                lines.push(format!("{inner}env:"));
                let env_dash = if layout.indented_lists { format!("{inner}  ") } else { inner.clone() };
                for variable in 0..layout.env {
                    lines.push(format!("{env_dash}- name: SETTING_{variable}"));
                    lines.push(format!("{env_dash}  value: 'on'"));
                }
            }
        }
        if layout.end_marker {
            lines.push("...".into());
        }
        if layout.service {
            lines.push("---".into());
            lines.push("apiVersion: v1".into());
            lines.push("kind: Service".into());
            lines.push("metadata: {name: web}".into());
            lines.push("spec:".into());
            lines.push(format!("{}ports: [{{port: 80}}]", pad(1)));
        }
        let newline = if layout.crlf { "\r\n" } else { "\n" };
        lines.iter().map(|l| format!("{l}{newline}")).collect()
    }

    fn injector() -> Injector {
        let values = include_str!("../../../examples/values.yaml");
        let document = inject::values::ValuesDocument::default().merge(parse_values(values).unwrap()).unwrap();
        Injector::new(document, "linkerd").unwrap()
    }

    fn run(
        text: &str,
        output: ManifestOutput,
        mut transform: impl FnMut(&Value) -> Result<Transformed, String>,
    ) -> Transformation {
        let input = Input { name: "generated.yaml".into(), text: text.into() };
        transform_input(&input, output, &mut transform).unwrap().unwrap()
    }

    fn uninjected(value: &Value) -> Result<Transformed, String> {
        each_object(value, |object| {
            let mut clean = object.clone();
            let changed = uninject(&mut clean, Purpose::Uninject);
            Ok(Transformed { value: changed.then_some(clean), entries: Vec::new() })
        })
    }

    fn values(text: &str) -> Vec<Value> {
        manifest::parse_stream(text).unwrap().into_iter().map(|d| d.value).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// In place, the output reads exactly as the re-serialized output does, and uninject gives
        /// back the input byte for byte.
        #[test]
        fn in_place_edits_mean_what_rewriting_means_and_uninject_restores_the_bytes(
            layout in layout(),
            manual in any::<bool>(),
        ) {
            let injector = injector();
            let policy = Policy::from_values(&injector.values().values).unwrap();
            let overrides = AnnotationSet::default();
            let context = InjectContext { injector: &injector, policy: &policy, overrides: &overrides, manual };
            let text = manifest(&layout);
            let inject = |value: &Value| each_object(value, |object| inject_object(&context, object, &mut ParsedValues::default()));
            let edited = run(&text, ManifestOutput::Yaml, inject);
            prop_assert!(edited.rewritten.is_empty(), "{:?}", edited.rewritten);
            prop_assert_ne!(&edited.written, &text, "injection changed something");
            let rewritten = run(&text, ManifestOutput::Json, inject);
            prop_assert_eq!(values(&edited.written), values(&rewritten.written));
            let restored = run(&edited.written, ManifestOutput::Yaml, uninjected);
            prop_assert!(restored.rewritten.is_empty(), "{:?}", restored.rewritten);
            prop_assert_eq!(&restored.written, &text);
        }
    }
}
