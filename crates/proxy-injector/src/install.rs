//! `install`: everything the webhook, the admission policy or both need in a cluster, for
//! `kubectl apply -f -`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use clap::{Args, ValueEnum};
use inject::values::ValuesDocument;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use serde_json::{Value, json};
use webhook::ErrorPolicy;
use webhook::registration::{Endpoint, Registration};

use crate::cluster::ClusterArgs;
use crate::transform::OutputFormat;

pub const NAME: &str = "proxy-injector";
pub const TLS_SECRET: &str = "proxy-injector-tls";
/// Certificates this close to expiry are replaced on re-install, and `check` warns about them.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Who injects pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Injection {
    /// The webhook alone.
    Webhook,
    /// The apiserver alone, through a MutatingAdmissionPolicy: no webhook, no certificate. Pods
    /// outside the policy's support are created without a proxy, with a warning to whoever
    /// applies them.
    Policy,
    /// The policy for the pods it supports, the webhook for the rest and for any pod the policy
    /// fails on.
    Both,
}

impl Injection {
    pub fn as_str(self) -> &'static str {
        match self {
            Injection::Webhook => "webhook",
            Injection::Policy => "policy",
            Injection::Both => "both",
        }
    }
}

/// The flags that configure the webhook's Deployment or registration, refused without one.
const WEBHOOK_ONLY_FLAGS: [&str; 5] =
    ["--ha", "--cert-manager", "--reconcile", "--webhook-url", "--retire-linkerd-injector"];

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Values in the schema of Linkerd's Helm values (repeatable; later files win)
    #[arg(long = "values", value_name = "FILE")]
    values: Vec<PathBuf>,
    /// A single value, e.g. --set proxyInjector.timeoutSeconds=5 (repeatable; wins over files)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Namespace to install into (default: the Linkerd control-plane namespace, -L)
    #[arg(long)]
    namespace: Option<String>,
    /// The proxy-injector image
    #[arg(long, default_value = concat!("proxy-injector:", env!("CARGO_PKG_VERSION")))]
    image: String,
    /// Three replicas, a PodDisruptionBudget, anti-affinity and failurePolicy Fail
    #[arg(long)]
    ha: bool,
    /// Have cert-manager issue the serving certificate and inject the CA bundle
    #[arg(long)]
    cert_manager: bool,
    /// Run the reconciler beside the webhook (a second container), with the permissions it needs:
    /// watch pods, workloads and PodDisruptionBudgets, restart Deployments, StatefulSets and
    /// DaemonSets, and hold a Lease
    #[arg(long)]
    reconcile: bool,
    /// Validity of a generated serving certificate, e.g. 8760h
    #[arg(long, default_value = "8760h", value_parser = crate::serve::parse_duration)]
    cert_validity: Duration,
    /// Render the linkerd-config and trust-roots ConfigMaps from the values instead of using an
    /// existing Linkerd control plane's
    #[arg(long)]
    standalone: bool,
    /// Also neutralize Linkerd's own injector registration, so only this injector mutates pods
    #[arg(long)]
    retire_linkerd_injector: bool,
    /// Register the webhook at this URL instead of the in-cluster Service (a webhook running
    /// outside the cluster); the URL's host is added to the serving certificate
    #[arg(long, value_name = "URL")]
    webhook_url: Option<String>,
    /// Do not look for an existing certificate in the cluster; generate a new one
    #[arg(long)]
    ignore_cluster: bool,
    /// Who injects: the webhook, a MutatingAdmissionPolicy inside the apiserver, or both (the
    /// policy first, the webhook for what it leaves)
    #[arg(long, value_enum, default_value = "webhook")]
    injection: Injection,
    /// The webhook process applies the policy itself and keeps it compiled from linkerd-config as
    /// that changes (a `linkerd upgrade` never leaves it stale), instead of this output carrying
    /// it; with --injection policy the process runs only for that, and nothing is registered to
    /// call it
    #[arg(long)]
    sync_policy: bool,
    #[arg(short = 'o', long, value_enum, default_value = "yaml")]
    output: OutputFormat,
}

impl InstallArgs {
    /// The webhook-only flags given.
    fn webhook_flags(&self) -> impl Iterator<Item = &'static str> {
        let given =
            [self.ha, self.cert_manager, self.reconcile, self.webhook_url.is_some(), self.retire_linkerd_injector];
        WEBHOOK_ONLY_FLAGS.into_iter().zip(given).filter_map(|(flag, set)| set.then_some(flag))
    }
}

/// The serving certificate, its key, and the CA that signed it.
struct Tls {
    ca: String,
    cert: String,
    key: String,
}

/// The names the serving certificate must carry.
fn service_names(namespace: &str, webhook_url: Option<&str>) -> Vec<String> {
    let mut names = vec![format!("{NAME}.{namespace}.svc"), format!("{NAME}.{namespace}.svc.cluster.local")];
    if let Some(host) = webhook_url.and_then(url_host) {
        names.push(host);
    }
    names
}

/// `https://HOST[:PORT]/...` → HOST (without IPv6 brackets).
pub fn url_host(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    (!host.is_empty()).then(|| host.to_string())
}

fn generate_tls(namespace: &str, webhook_url: Option<&str>, validity: Duration) -> anyhow::Result<Tls> {
    let now = time::OffsetDateTime::now_utc();
    let until = now + time::Duration::seconds(i64::try_from(validity.as_secs()).unwrap_or(i64::MAX / 2));
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name.push(DnType::CommonName, format!("{NAME}.{namespace} webhook CA"));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    (ca.not_before, ca.not_after) = (now - time::Duration::minutes(5), until);
    let ca_pem = ca.self_signed(&ca_key)?.pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate()?;
    let mut serving = CertificateParams::new(service_names(namespace, webhook_url))?;
    serving.distinguished_name.push(DnType::CommonName, format!("{NAME}.{namespace}.svc"));
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    (serving.not_before, serving.not_after) = (now - time::Duration::minutes(5), until);
    Ok(Tls { ca: ca_pem, cert: serving.signed_by(&key, &issuer)?.pem(), key: key.serialize_pem() })
}

/// The current Secret's pair, if it is there and not due for renewal: re-installing must not
/// rotate the certificate (GitOps diffs stay quiet).
fn existing_tls(cluster: &ClusterArgs, namespace: &str) -> anyhow::Result<Option<Tls>> {
    let secret = tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
        let client = cluster.client().await?;
        let api = kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client, namespace);
        anyhow::Ok(api.get_opt(TLS_SECRET).await?)
    })?;
    let Some(data) = secret.and_then(|s| s.data) else { return Ok(None) };
    let text = |key: &str| data.get(key).map(|b| String::from_utf8_lossy(&b.0).into_owned());
    let (Some(ca), Some(cert), Some(key)) = (text("ca.crt"), text("tls.crt"), text("tls.key")) else { return Ok(None) };
    let remaining = crate::check::remaining_validity(&cert)?;
    Ok((remaining > RENEW_BEFORE).then_some(Tls { ca, cert, key }))
}

/// Applies `--set key.path=value`; the value is read as YAML (numbers and booleans typed).
fn set_value(document: Value, assignment: &str) -> anyhow::Result<Value> {
    let (path, raw) =
        assignment.split_once('=').with_context(|| format!("--set {assignment:?}: expected KEY=VALUE"))?;
    let value = manifest::parse_stream(raw)
        .ok()
        .and_then(|d| d.into_iter().next())
        .map_or(Value::String(raw.into()), |d| d.value);
    let mut patch = value;
    for segment in path.split('.').rev() {
        if segment.is_empty() {
            bail!("--set {assignment:?}: empty key segment");
        }
        patch = json!({ segment: patch });
    }
    let mut merged = document;
    inject::values::merge_value(&mut merged, patch);
    Ok(merged)
}

fn values_document(args: &InstallArgs) -> anyhow::Result<Value> {
    let mut document = json!({});
    for path in &args.values {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read values file {}", path.display()))?;
        let parsed = manifest::parse_stream(&text).with_context(|| path.display().to_string())?;
        inject::values::merge_value(&mut document, parsed.into_iter().next().map_or(json!({}), |d| d.value));
    }
    for assignment in &args.set {
        document = set_value(document, assignment)?;
    }
    Ok(document)
}

pub fn run(args: &InstallArgs, cluster: &ClusterArgs, control_plane_ns: &str) -> anyhow::Result<()> {
    let objects = render(args, cluster, control_plane_ns)?;
    let format: manifest::Format = args.output.into();
    let mut out = String::new();
    match format {
        manifest::Format::Yaml => {
            for object in &objects {
                format.write_document(object, &mut out)?;
            }
        }
        manifest::Format::Json => {
            format.write_document(&json!({"apiVersion": "v1", "kind": "List", "items": objects}), &mut out)?
        }
    }
    print!("{out}");
    Ok(())
}

fn render(args: &InstallArgs, cluster: &ClusterArgs, control_plane_ns: &str) -> anyhow::Result<Vec<Value>> {
    let namespace = args.namespace.clone().unwrap_or_else(|| control_plane_ns.to_string());
    let given = values_document(args)?;
    let values = ValuesDocument::from_value(given.clone())?;
    // The same checks the webhook makes when it loads these values.
    let injector = inject::Injector::new(values.clone(), control_plane_ns)?;
    let v = &values.values;
    if args.standalone && v.identity_trust_anchors_pem.trim().is_empty() {
        bail!("--standalone needs the identity trust anchors: set identityTrustAnchorsPEM in --values");
    }
    let error_policy = match (args.ha, v.webhook_failure_policy.as_str()) {
        (true, _) | (false, "Fail") => ErrorPolicy::Deny,
        _ => ErrorPolicy::Admit,
    };
    if args.sync_policy && args.injection == Injection::Webhook {
        bail!("--sync-policy keeps an admission policy in sync: use it with --injection both or policy");
    }
    if args.injection == Injection::Policy
        && let Some(flag) = args.webhook_flags().next()
    {
        bail!("{flag} configures the webhook, which --injection policy does not register; use --injection both");
    }
    let injector = match args.injection {
        Injection::Webhook => injector,
        // The webhook process compiles it from the configuration it loads.
        _ if args.sync_policy => injector,
        _ => policy_injector(args, cluster, control_plane_ns, injector)?,
    };
    let policy = match args.injection {
        Injection::Webhook => Vec::new(),
        _ if args.sync_policy => Vec::new(),
        // The webhook catches what the policy fails on.
        Injection::Both => policy_objects(&injector, "Ignore", control_plane_ns, false)?,
        Injection::Policy => {
            let failure_policy = if error_policy == ErrorPolicy::Deny { "Fail" } else { "Ignore" };
            let mut objects = standalone_config(args, &given, control_plane_ns, v)?;
            if !objects.is_empty() {
                // The ConfigMaps' namespace; without the webhook nothing else lives there.
                objects.insert(0, namespace_object(args.namespace.as_deref().unwrap_or(control_plane_ns)));
            }
            objects.extend(policy_objects(&injector, failure_policy, control_plane_ns, true)?);
            return Ok(objects);
        }
    };
    // With `--injection policy --sync-policy` the process only keeps the policy: nothing is
    // registered to call it.
    let registered = args.injection != Injection::Policy;
    let tls = if args.cert_manager {
        None
    } else {
        let reused = if args.ignore_cluster {
            None
        } else {
            existing_tls(cluster, &namespace)
                .context("cannot look for the existing certificate; use --ignore-cluster to generate a new one")?
        };
        Some(match reused {
            Some(tls) => tls,
            None => generate_tls(&namespace, args.webhook_url.as_deref(), args.cert_validity)?,
        })
    };
    let labels = labels(control_plane_ns);
    let meta = |name: &str| json!({"name": name, "namespace": namespace, "labels": labels});
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);

    let mut objects = vec![
        namespace_object(&namespace),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(NAME)}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": format!("{NAME}-{namespace}"), "labels": labels},
        "rules": rules(args.reconcile, args.sync_policy.then_some(args.injection))}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": format!("{NAME}-{namespace}"), "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("{NAME}-{namespace}")},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}]}),
    ];
    objects.extend(standalone_config(args, &given, control_plane_ns, v)?);
    match &tls {
        Some(tls) => objects.push(
            json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls", "metadata": meta(TLS_SECRET),
            "data": {"ca.crt": b64(&tls.ca), "tls.crt": b64(&tls.cert), "tls.key": b64(&tls.key)}}),
        ),
        None => {
            objects.push(json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": meta(NAME), "spec": {"selfSigned": {}}}));
            objects.push(json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": meta(NAME), "spec": {
                "secretName": TLS_SECRET, "dnsNames": service_names(&namespace, args.webhook_url.as_deref()), "duration": format!("{}h", args.cert_validity.as_secs() / 3600),
                "issuerRef": {"name": NAME, "kind": "Issuer"}, "privateKey": {"rotationPolicy": "Always"}}}));
        }
    }
    objects.push(deployment(args, &namespace, control_plane_ns, &labels, error_policy));
    if !registered {
        return Ok(objects);
    }
    objects.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": meta(NAME), "spec": {"type": "ClusterIP",
        "selector": {"app.kubernetes.io/name": NAME},
        "ports": [{"name": "https", "port": 443, "targetPort": "https"}]}}));
    if args.ha {
        objects.push(json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta(NAME),
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}}}}));
    }
    if let Some(url) = &args.webhook_url
        && url_host(url).is_none()
    {
        bail!("--webhook-url {url:?}: expected https://HOST[:PORT]/PATH");
    }
    let registration = Registration {
        control_plane_ns: control_plane_ns.into(),
        endpoint: match &args.webhook_url {
            Some(url) => Endpoint::Url(url.clone()),
            None => Endpoint::Service { namespace: namespace.clone(), name: NAME.into() },
        },
        ca_bundle: tls.as_ref().map(|t| t.ca.clone()),
        error_policy,
        timeout_seconds: u32::try_from(v.proxy_injector.timeout_seconds.clamp(1, 30)).unwrap_or(10),
        sees_opted_out_pods: governance::Policy::from_values(v)?.needs_opted_out_pods(),
    };
    let mut configuration = registration.render();
    if args.cert_manager {
        configuration["metadata"]["annotations"] =
            json!({"cert-manager.io/inject-ca-from": format!("{namespace}/{NAME}")});
    }
    if args.retire_linkerd_injector {
        // Linkerd's registration, kept valid but matching no namespace, so its injector stops
        // receiving pods; apply with --force-conflicts where Helm owns it.
        let mut retired = configuration.clone();
        retired["metadata"]["name"] = json!(webhook::registration::LINKERD_CONFIGURATION_NAME);
        // Only the pod entry: advice comes from this injector's own registration.
        if let Some(webhooks) = retired["webhooks"].as_array_mut() {
            webhooks.truncate(1);
        }
        retired["webhooks"][0]["namespaceSelector"] = json!({"matchExpressions": [{"key": "proxy-injector.linkerd.io/retired", "operator": "In", "values": ["never"]}]});
        objects.push(retired);
    }
    objects.push(configuration);
    objects.extend(policy);
    Ok(objects)
}

/// The injector's namespace, labelled so that neither the webhook nor the policy touches it.
fn namespace_object(namespace: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace,
        "labels": {"config.linkerd.io/admission-webhooks": "disabled"},
        "annotations": {"linkerd.io/inject": "disabled"}}})
}

/// The configuration the policy is compiled from: the one the webhook would load. With
/// `--standalone` or `--ignore-cluster` that is the values given; otherwise the cluster's
/// linkerd-config and trust roots, which the values given only shape the registration of.
fn policy_injector(
    args: &InstallArgs,
    cluster: &ClusterArgs,
    control_plane_ns: &str,
    from_values: inject::Injector,
) -> anyhow::Result<inject::Injector> {
    if args.standalone || args.ignore_cluster {
        return Ok(from_values);
    }
    let loaded = tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
        let client = cluster.client().await?;
        anyhow::Ok(reconcile::controller::Source::Cluster.load(&client, control_plane_ns).await?)
    });
    loaded.with_context(|| {
        format!(
            "the admission policy is compiled from the configuration in namespace {control_plane_ns} (linkerd-config \
             and linkerd-identity-trust-roots), which cannot be read; use --standalone, or --ignore-cluster with \
             --values, to compile it from values"
        )
    })
}

/// The labels of everything `install` renders for the injector itself.
fn labels(control_plane_ns: &str) -> Value {
    json!({"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "linkerd",
        "linkerd.io/control-plane-component": NAME, "linkerd.io/control-plane-ns": control_plane_ns})
}

/// With `--standalone`, the linkerd-config and trust-roots ConfigMaps the values describe, in
/// the control-plane namespace where the webhook, `check` and the reconciler read them.
fn standalone_config(
    args: &InstallArgs,
    given: &Value,
    control_plane_ns: &str,
    v: &inject::values::Values,
) -> anyhow::Result<Vec<Value>> {
    if !args.standalone {
        return Ok(Vec::new());
    }
    let namespace = args.namespace.as_deref().unwrap_or(control_plane_ns);
    let labels = labels(control_plane_ns);
    let meta = |name: &str| json!({"name": name, "namespace": namespace, "labels": labels});
    let mut linkerd_values = given.clone();
    if let Some(map) = linkerd_values.as_object_mut() {
        map.remove("identityTrustAnchorsPEM");
    }
    Ok(vec![
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("linkerd-config"),
            "data": {"values": manifest::to_yaml(&linkerd_values)?}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("linkerd-identity-trust-roots"),
            "data": {"ca-bundle.crt": v.identity_trust_anchors_pem}}),
    ])
}

/// The MutatingAdmissionPolicy and its binding, for the namespaces and objects the webhook would
/// see; without the webhook, also the policy that warns about the pods it leaves.
fn policy_objects(
    injector: &inject::Injector,
    failure_policy: &'static str,
    control_plane_ns: &str,
    alone: bool,
) -> anyhow::Result<Vec<Value>> {
    let options = admission_policy::Options {
        name: admission_policy::POLICY_NAME.into(),
        failure_policy,
        namespace_selector: webhook::registration::namespace_selector(),
        object_selector: webhook::registration::object_selector(),
        control_plane_ns: control_plane_ns.into(),
    };
    let compiled = admission_policy::compile(injector, &options)?;
    let mut objects = vec![compiled.policy, compiled.binding];
    if alone {
        objects.extend(admission_policy::unserved::warning(&admission_policy::support(injector)?, &options));
    }
    Ok(objects)
}

/// The webhook reads namespaces and owners and records Events; the reconciler also watches pods,
/// workloads and budgets, restarts workloads and holds its Lease; a webhook that syncs the
/// admission policy writes it and its binding, and alone also the warning policy.
fn rules(reconcile: bool, synced_policy: Option<Injection>) -> Value {
    let mut rules = vec![
        json!({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}),
        json!({"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get", "list", "watch"]}),
        json!({"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch"]}),
        json!({"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}),
    ];
    if reconcile {
        rules.extend([
            json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}),
            json!({"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"],
                "verbs": ["get", "list", "watch", "patch"]}),
            json!({"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": ["get", "list", "watch"]}),
            json!({"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}),
        ]);
    }
    if let Some(mode) = synced_policy {
        let mut resources = vec!["mutatingadmissionpolicies", "mutatingadmissionpolicybindings"];
        if mode == Injection::Policy {
            resources.extend(["validatingadmissionpolicies", "validatingadmissionpolicybindings"]);
        }
        rules.push(json!({"apiGroups": ["admissionregistration.k8s.io"], "resources": resources,
            "verbs": ["get", "create", "patch", "delete"]}));
    }
    Value::Array(rules)
}

/// The reconciler's container: the webhook's configuration files, its own admin port.
fn reconciler_container(args: &InstallArgs, control_plane_ns: &str, webhook: &Value) -> Value {
    // The Lease holder's identity and the Lease's namespace.
    let from_field = |name: &str, path: &str| json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}});
    let env = [from_field("POD_NAME", "metadata.name"), from_field("POD_NAMESPACE", "metadata.namespace")];
    let probe = json!({"httpGet": {"path": "/ping", "port": "reconcile-admin"}, "periodSeconds": 10});
    json!({
        "name": "reconciler",
        "image": args.image,
        "args": ["reconcile", format!("--linkerd-namespace={control_plane_ns}"),
            "--values=/var/run/linkerd/config/values",
            "--trust-roots=/var/run/linkerd/identity/trust-roots/ca-bundle.crt", "--log-format=json"],
        "env": env,
        "ports": [{"name": "reconcile-admin", "containerPort": 9996}],
        "livenessProbe": probe,
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": webhook["securityContext"],
        "volumeMounts": webhook["volumeMounts"].as_array().map(|m| m[..2].to_vec()).unwrap_or_default(),
    })
}

fn deployment(
    args: &InstallArgs,
    namespace: &str,
    control_plane_ns: &str,
    labels: &Value,
    error_policy: ErrorPolicy,
) -> Value {
    let on_error = match error_policy {
        ErrorPolicy::Deny => "deny",
        ErrorPolicy::Admit => "admit",
    };
    let replicas = if args.ha { 3 } else { 1 };
    let probe = |path: &str| json!({"httpGet": {"path": path, "port": "admin"}, "periodSeconds": 5});
    let mut webhook_args = vec![
        "webhook".to_string(),
        format!("--linkerd-namespace={control_plane_ns}"),
        format!("--on-error={on_error}"),
        "--log-format=json".into(),
    ];
    if args.sync_policy {
        webhook_args.push("--sync-admission-policy".into());
        if args.injection == Injection::Policy {
            webhook_args.push("--admission-policy-alone".into());
        }
    }
    let mut spec = json!({
        "serviceAccountName": NAME,
        "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": NAME,
            "image": args.image,
            "args": webhook_args,
            "ports": [{"name": "https", "containerPort": 8443}, {"name": "admin", "containerPort": 9995}],
            "livenessProbe": probe("/ping"),
            "readinessProbe": probe("/ready"),
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
            "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true,
                "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": [
                {"name": "config", "mountPath": "/var/run/linkerd/config", "readOnly": true},
                {"name": "trust-roots", "mountPath": "/var/run/linkerd/identity/trust-roots", "readOnly": true},
                {"name": "tls", "mountPath": "/var/run/linkerd/tls", "readOnly": true},
            ],
        }],
        "volumes": [
            {"name": "config", "configMap": {"name": "linkerd-config"}},
            {"name": "trust-roots", "configMap": {"name": "linkerd-identity-trust-roots"}},
            {"name": "tls", "secret": {"secretName": TLS_SECRET}},
        ],
    });
    if args.reconcile {
        let reconciler = reconciler_container(args, control_plane_ns, &spec["containers"][0]);
        if let Some(containers) = spec["containers"].as_array_mut() {
            containers.push(reconciler);
        }
    }
    if args.ha {
        spec["affinity"] = json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100,
            "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app.kubernetes.io/name": NAME}}}}]}});
    }
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": NAME, "namespace": namespace, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
            "strategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": labels}, "spec": spec}}})
}
