//! `check`: is the installed injector working? The registration exists and points at a
//! webhook, its caBundle verifies the serving certificate, the certificate is not about to
//! expire; an admission policy is bound and compiled from the current linkerd-config; and a
//! server-side dry-run pod comes back injected.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::Args;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use rustls::client::danger::ServerCertVerifier as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::{Value, json};

use crate::cluster::ClusterArgs;
use crate::install::{NAME, RENEW_BEFORE, TLS_SECRET, url_host};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Namespace the injector was installed into (default: the Linkerd control-plane namespace, -L)
    #[arg(long)]
    namespace: Option<String>,
    /// Name of the MutatingWebhookConfiguration
    #[arg(long, default_value = webhook::registration::CONFIGURATION_NAME)]
    configuration: String,
    /// Name of the MutatingAdmissionPolicy (`install --injection policy` or `both`)
    #[arg(long, default_value = admission_policy::POLICY_NAME)]
    policy: String,
    /// Namespace for the dry-run pod (it must allow injection and have a default ServiceAccount)
    #[arg(long, default_value = "default")]
    test_namespace: String,
}

/// How long a PEM certificate stays valid (zero once expired).
pub fn remaining_validity(cert_pem: &str) -> anyhow::Result<Duration> {
    let der = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .next()
        .context("no PEM certificate")?
        .context("unreadable PEM certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| anyhow!("unreadable certificate: {e}"))?;
    let not_after = cert.validity().not_after.timestamp();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    Ok(Duration::from_secs(u64::try_from(not_after - now).unwrap_or(0)))
}

enum Line {
    Ok(String),
    Warn(String),
    Fail(String),
}

struct Report {
    lines: Vec<Line>,
}

impl Report {
    fn failed(&self) -> bool {
        self.lines.iter().any(|l| matches!(l, Line::Fail(_)))
    }

    fn print(&self) {
        let tty = std::io::stdout().is_terminal();
        let paint =
            |mark: &str, colour: &str| if tty { format!("\x1b[1;{colour}m{mark}\x1b[0m") } else { mark.to_string() };
        for line in &self.lines {
            match line {
                Line::Ok(text) => println!("{} {text}", paint("√", "32")),
                Line::Warn(text) => println!("{} {text}", paint("‼", "33")),
                Line::Fail(text) => println!("{} {text}", paint("×", "31")),
            }
        }
    }
}

/// Verifies `chain` (leaf first) for `host` against the CA bundle, as the apiserver will.
fn verify(ca_bundle: &str, chain: &[CertificateDer<'static>], host: &str) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_bundle.as_bytes()) {
        roots.add(cert.map_err(|e| format!("caBundle: {e}"))?).map_err(|e| format!("caBundle: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| format!("caBundle: {e}"))?;
    let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))?;
    let (leaf, intermediates) = chain.split_first().ok_or("no certificate")?;
    verifier.verify_server_cert(leaf, intermediates, &name, &[], UnixTime::now()).map(|_| ()).map_err(|e| e.to_string())
}

/// The certificate chain a URL serves (not verified here).
fn served_chain(url: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    #[derive(Debug)]
    struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let host = url_host(url).with_context(|| format!("{url}: not an https URL"))?;
    let authority = url.trim_start_matches("https://").split('/').next().unwrap_or_default();
    let address = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_string()
    } else {
        format!("{authority}:443")
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    let mut connection = rustls::ClientConnection::new(Arc::new(config), ServerName::try_from(host)?)?;
    let mut socket = std::net::TcpStream::connect(&address).with_context(|| format!("cannot connect to {address}"))?;
    socket.set_read_timeout(Some(Duration::from_secs(5)))?;
    while connection.is_handshaking() {
        connection.complete_io(&mut socket).with_context(|| format!("TLS handshake with {address}"))?;
    }
    Ok(connection
        .peer_certificates()
        .context("no certificate served")?
        .iter()
        .map(|c| c.clone().into_owned())
        .collect())
}

pub fn run(args: &CheckArgs, cluster: &ClusterArgs, control_plane_ns: &str) -> anyhow::Result<bool> {
    let namespace = args.namespace.clone().unwrap_or_else(|| control_plane_ns.to_string());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let report = runtime.block_on(checks(args, cluster, &namespace, control_plane_ns))?;
    report.print();
    Ok(!report.failed())
}

fn admission_api(client: &kube::Client, kind: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
    Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk))
}

async fn checks(
    args: &CheckArgs,
    cluster: &ClusterArgs,
    namespace: &str,
    control_plane_ns: &str,
) -> anyhow::Result<Report> {
    let client = cluster.client().await?;
    let mut lines = Vec::new();
    let policy = admission_api(&client, "MutatingAdmissionPolicy").get_opt(&args.policy).await?;
    let configuration = admission_api(&client, "MutatingWebhookConfiguration").get_opt(&args.configuration).await?;
    match (&configuration, &policy) {
        (None, None) => {
            lines.push(Line::Fail(format!(
                "neither the webhook configuration {} nor the admission policy {} exists (run `proxy-injector install`)",
                args.configuration, args.policy
            )));
            return Ok(Report { lines });
        }
        (Some(configuration), _) => {
            lines.push(Line::Ok(format!("the webhook configuration {} exists", args.configuration)));
            if !webhook_checks(&client, configuration, namespace, &mut lines).await? {
                return Ok(Report { lines });
            }
        }
        (None, Some(_)) => lines.push(Line::Ok(format!(
            "no webhook configuration {}: the admission policy injects alone (--injection policy)",
            args.configuration
        ))),
    }
    if let Some(policy) = &policy {
        policy_checks(&client, args, policy, control_plane_ns, &mut lines).await?;
    }
    dry_run_check(client, args, &mut lines).await?;
    Ok(Report { lines })
}

/// The policy is bound, and compiled from the configuration the webhook loads now: after a
/// `linkerd upgrade` it would still inject the old proxy.
async fn policy_checks(
    client: &kube::Client,
    args: &CheckArgs,
    policy: &DynamicObject,
    control_plane_ns: &str,
    lines: &mut Vec<Line>,
) -> anyhow::Result<()> {
    let name = &args.policy;
    let bound = admission_api(client, "MutatingAdmissionPolicyBinding")
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .any(|b| b.data["spec"]["policyName"] == name.as_str());
    if bound {
        lines.push(Line::Ok(format!("the admission policy {name} exists and is bound")));
    } else {
        lines.push(Line::Fail(format!("the admission policy {name} has no binding, so it injects nothing")));
    }
    let compiled_from = policy.metadata.annotations.as_ref().and_then(|a| a.get(admission_policy::COMPILED_FROM));
    let current = match reconcile::controller::Source::Cluster.load(client, control_plane_ns).await {
        Ok(injector) => admission_policy::fingerprint(&injector).map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    };
    let installed = compiled_from.map(|digest| format!("{}{digest}", admission_policy::FINGERPRINT_PREFIX));
    match (installed, current) {
        (_, Err(error)) => lines.push(Line::Fail(format!(
            "the configuration in namespace {control_plane_ns} cannot be compiled into the admission policy: {error}"
        ))),
        (None, _) => lines.push(Line::Fail(format!(
            "the admission policy {name} has no {} annotation; re-run `proxy-injector install`",
            admission_policy::COMPILED_FROM
        ))),
        (Some(installed), Ok(current)) if installed == current => lines.push(Line::Ok(format!(
            "the admission policy {name} is compiled from the current linkerd-config ({current})"
        ))),
        (Some(installed), Ok(current)) => lines.push(Line::Fail(format!(
            "the admission policy {name} is stale: it was compiled from another configuration ({installed}) than \
             linkerd-config in namespace {control_plane_ns} now holds ({current}), so it injects outdated proxies; \
             re-run `proxy-injector install` with the same --injection"
        ))),
    }
    Ok(())
}

/// Where the registration sends admissions answers with a certificate its caBundle verifies;
/// false when nothing further can be checked.
async fn webhook_checks(
    client: &kube::Client,
    configuration: &DynamicObject,
    namespace: &str,
    lines: &mut Vec<Line>,
) -> anyhow::Result<bool> {
    let webhook = &configuration.data["webhooks"][0];
    let client_config = &webhook["clientConfig"];
    let ca_bundle = client_config["caBundle"].as_str().map(|b| {
        use base64::Engine as _;
        String::from_utf8_lossy(&base64::engine::general_purpose::STANDARD.decode(b).unwrap_or_default()).into_owned()
    });

    // Where the apiserver sends admissions, and the certificate it will be shown there.
    let (host, chain) = if let Some(url) = client_config["url"].as_str() {
        match served_chain(url) {
            Ok(chain) => {
                lines.push(Line::Ok(format!("the webhook answers at {url}")));
                (url_host(url).unwrap_or_default(), chain)
            }
            Err(error) => {
                lines.push(Line::Fail(format!("the webhook does not answer at {url}: {error:#}")));
                return Ok(false);
            }
        }
    } else {
        let service = &client_config["service"];
        let (svc_ns, svc_name) =
            (service["namespace"].as_str().unwrap_or(namespace), service["name"].as_str().unwrap_or(NAME));
        if Api::<Service>::namespaced(client.clone(), svc_ns).get_opt(svc_name).await?.is_none() {
            lines.push(Line::Fail(format!(
                "the webhook configuration points at service {svc_ns}/{svc_name}, which does not exist"
            )));
            return Ok(false);
        }
        lines.push(Line::Ok(format!("the webhook configuration points at service {svc_ns}/{svc_name}")));
        let slices = Api::<EndpointSlice>::namespaced(client.clone(), svc_ns)
            .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={svc_name}")))
            .await?;
        let ready = slices
            .items
            .iter()
            .flat_map(|slice| slice.endpoints.iter().flatten())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
            .count();
        if ready == 0 {
            lines.push(Line::Fail(format!(
                "service {svc_ns}/{svc_name} has no ready endpoints: is the {NAME} Deployment running and ready?"
            )));
        } else {
            lines.push(Line::Ok(format!("service {svc_ns}/{svc_name} has {ready} ready endpoint(s)")));
        }
        let secret = Api::<Secret>::namespaced(client.clone(), namespace).get_opt(TLS_SECRET).await?;
        let cert = secret
            .and_then(|s| s.data)
            .and_then(|d| d.get("tls.crt").map(|b| String::from_utf8_lossy(&b.0).into_owned()));
        let Some(cert) = cert else {
            lines.push(Line::Fail(format!("the serving certificate secret {namespace}/{TLS_SECRET} is missing")));
            return Ok(false);
        };
        let chain = CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap_or_default();
        (format!("{svc_name}.{svc_ns}.svc"), chain)
    };

    match (&ca_bundle, chain.first()) {
        (None, _) => lines.push(Line::Fail(
            "the webhook configuration has no caBundle (is cert-manager's CA injector running?)".into(),
        )),
        (_, None) => lines.push(Line::Fail("no serving certificate found".into())),
        (Some(ca), Some(leaf)) => {
            let pem = format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.encode(leaf.as_ref())
            });
            let remaining = remaining_validity(&pem).unwrap_or_default();
            let days = remaining.as_secs() / 86_400;
            match verify(ca, &chain, &host) {
                Ok(()) => lines.push(Line::Ok(format!("the caBundle verifies the serving certificate for {host}"))),
                Err(error) if remaining.is_zero() => {
                    lines.push(Line::Fail(format!("the serving certificate has expired ({error})")))
                }
                Err(error) => lines.push(Line::Fail(format!(
                    "the caBundle does not verify the serving certificate for {host}: {error}"
                ))),
            }
            if remaining.is_zero() {
                // Already reported.
            } else if remaining < RENEW_BEFORE {
                lines.push(Line::Warn(format!(
                    "the serving certificate expires in {days} days; re-run `proxy-injector install` to renew it"
                )));
            } else {
                lines.push(Line::Ok(format!("the serving certificate is valid for {days} more days")));
            }
        }
    }

    Ok(true)
}

/// A server-side dry-run pod comes back with the proxy, by whichever path.
async fn dry_run_check(client: kube::Client, args: &CheckArgs, lines: &mut Vec<Line>) -> anyhow::Result<()> {
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "proxy-injector-check",
        "annotations": {"linkerd.io/inject": "enabled"}},
        "spec": {"containers": [{"name": "check", "image": "proxy-injector-check", "ports": [{"containerPort": 80}]}]}}))?;
    let dry_run = PostParams { dry_run: true, field_manager: Some("proxy-injector-check".into()) };
    match Api::<Pod>::namespaced(client, &args.test_namespace).create(&dry_run, &pod).await {
        Ok(created) => {
            let value: Value = serde_json::to_value(&created)?;
            let injected = ["initContainers", "containers"]
                .iter()
                .filter_map(|list| value["spec"][list].as_array())
                .flatten()
                .any(|c| c["name"] == "linkerd-proxy");
            if injected {
                lines.push(Line::Ok(format!("a dry-run pod in namespace {} comes back injected", args.test_namespace)));
            } else {
                lines.push(Line::Fail(format!(
                    "a dry-run pod in namespace {} came back without the proxy (is the webhook reachable and ready?)",
                    args.test_namespace
                )));
            }
        }
        Err(error) => {
            lines.push(Line::Fail(format!("a dry-run pod in namespace {} was refused: {error}", args.test_namespace)))
        }
    }
    Ok(())
}
