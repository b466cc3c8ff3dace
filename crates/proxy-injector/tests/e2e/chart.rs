//! The Helm chart renders the same objects as `install` for the same options, with a real helm.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Map, Value, json};

use crate::harness::*;

fn helm() -> PathBuf {
    match std::env::var_os("PROXY_INJECTOR_HELM") {
        Some(path) => PathBuf::from(path),
        None => panic!("the chart test needs helm: run it with `cargo xtask e2e`, or set PROXY_INJECTOR_HELM"),
    }
}

fn parse(stdout: Vec<u8>) -> Vec<Value> {
    manifest::parse_stream(&String::from_utf8(stdout).unwrap()).unwrap().into_iter().map(|d| d.value).collect()
}

/// Objects by kind and name, with what legitimately differs between two renderings removed:
/// generated certificates, and the formatting of the embedded values document.
fn comparable(objects: Vec<Value>) -> Map<String, Value> {
    objects
        .into_iter()
        .map(|mut object| {
            let key = format!("{}/{}", object["kind"].as_str().unwrap(), object["metadata"]["name"].as_str().unwrap());
            if object["kind"] == "Secret" {
                for field in ["ca.crt", "tls.crt", "tls.key"] {
                    assert!(object["data"][field].as_str().is_some_and(|d| d.len() > 100), "{key} has {field}");
                    object["data"][field] = json!("<generated>");
                }
            }
            if object["kind"] == "MutatingWebhookConfiguration" {
                for webhook in object["webhooks"].as_array_mut().unwrap() {
                    if webhook["clientConfig"].get("caBundle").is_some() {
                        webhook["clientConfig"]["caBundle"] = json!("<generated>");
                    }
                }
            }
            if object["metadata"]["name"] == "linkerd-config" {
                let values = manifest::parse_stream(object["data"]["values"].as_str().unwrap()).unwrap();
                object["data"]["values"] = values.into_iter().next().map_or(json!({}), |d| d.value);
            }
            (key, object)
        })
        .collect()
}

#[test]
fn the_chart_renders_what_install_renders() {
    let values = examples().join("values.yaml").display().to_string();
    let policy = examples().join("policy.yaml").display().to_string();
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec![], vec![]),
        (
            vec!["--standalone", "--webhook-url", "https://127.0.0.1:9443/"],
            vec!["injector.standalone=true", "injector.webhookUrl=https://127.0.0.1:9443/"],
        ),
        (
            vec!["--ha", "--image", "registry.example/pi:1"],
            vec!["injector.ha=true", "injector.image=registry.example/pi:1"],
        ),
        // Extra values files go to both (`-f` for helm); the governance policy shapes the registration.
        (vec!["--values", &policy], vec![]),
        (
            vec!["--cert-manager", "--retire-linkerd-injector", "--reconcile"],
            vec!["injector.certManager=true", "injector.retireLinkerdInjector=true", "injector.reconcile=true"],
        ),
        (
            vec!["--injection", "both", "--sync-policy", "--reconcile"],
            vec!["injector.injection=both", "injector.reconcile=true"],
        ),
        (vec!["--injection", "policy", "--sync-policy"], vec!["injector.injection=policy"]),
        (
            vec!["-L", "linkerd-cp", "--set", "proxyInjector.timeoutSeconds=5", "--set", "webhookFailurePolicy=Fail"],
            vec![
                "injector.controlPlaneNamespace=linkerd-cp",
                "proxyInjector.timeoutSeconds=5",
                "webhookFailurePolicy=Fail",
            ],
        ),
    ];
    for (flags, sets) in cases {
        let install = Command::new(binary())
            .args(["install", "--ignore-cluster", "--namespace", "chart-ns", "--values", &values])
            .args(&flags)
            .output()
            .unwrap();
        assert!(install.status.success(), "{flags:?}: {}", String::from_utf8_lossy(&install.stderr));
        let mut helm_command = Command::new(helm());
        helm_command.arg("template").arg("proxy-injector").arg(examples().join("../charts/proxy-injector"));
        helm_command.args(["--namespace", "chart-ns", "-f", &values, "--set", "injector.createNamespace=true"]);
        for file in flags.windows(2).filter(|pair| pair[0] == "--values").map(|pair| pair[1]) {
            helm_command.args(["-f", file]);
        }
        for set in &sets {
            helm_command.args(["--set", set]);
        }
        let rendered = helm_command.output().unwrap();
        assert!(rendered.status.success(), "{sets:?}: {}", String::from_utf8_lossy(&rendered.stderr));
        let (from_install, from_chart) = (comparable(parse(install.stdout)), comparable(parse(rendered.stdout)));
        let keys = |m: &Map<String, Value>| m.keys().cloned().collect::<std::collections::BTreeSet<_>>();
        assert_eq!(keys(&from_chart), keys(&from_install), "{flags:?}");
        for (key, object) in &from_install {
            assert_eq!(&from_chart[key], object, "{flags:?}: {key} differs");
        }
    }
}

#[test]
fn the_chart_refuses_injection_settings_it_cannot_honour() {
    for (sets, expected) in [
        (vec!["injector.injection=sidecar"], "injector.injection \"sidecar\": expected webhook, both or policy"),
        (vec!["injector.injection=policy", "injector.ha=true"], "injector.injection=policy registers no webhook"),
    ] {
        let mut helm = Command::new(helm());
        helm.arg("template").arg("proxy-injector").arg(examples().join("../charts/proxy-injector"));
        for set in &sets {
            helm.args(["--set", set]);
        }
        let rendered = helm.output().unwrap();
        assert!(!rendered.status.success(), "{sets:?}");
        let stderr = String::from_utf8_lossy(&rendered.stderr);
        assert!(stderr.contains(expected), "{sets:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chart_output_is_accepted_by_the_apiserver() {
    let output = Command::new(helm())
        .arg("template")
        .arg("proxy-injector")
        .arg(examples().join("../charts/proxy-injector"))
        .args(["--namespace", "c01-system", "--set", "injector.createNamespace=true", "-f"])
        .arg(examples().join("values.yaml"))
        .args(["--set", "injector.standalone=true", "--set", "injector.webhookUrl=https://127.0.0.1:1/"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mut objects = parse(output.stdout);
    for object in objects.iter_mut().filter(|o| o["kind"] == "MutatingWebhookConfiguration") {
        object["metadata"]["name"] = json!("proxy-injector-webhook-config-c01");
        limit_to_test(object, "c01");
    }
    crate::install::apply(&client().await, &objects).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn helm_upgrades_keep_the_certificate() {
    let client = client().await;
    let system = "h01-system";
    namespace(
        &client,
        "h01",
        system,
        json!({"linkerd.io/inject": "disabled"}),
        json!({"config.linkerd.io/admission-webhooks": "disabled"}),
    )
    .await;
    let release = |revision: u32| {
        let output = Command::new(helm())
            .args(["upgrade", "--install", "proxy-injector"])
            .arg(examples().join("../charts/proxy-injector"))
            .args(["--namespace", system, "--kubeconfig"])
            .arg(kubeconfig())
            .arg("-f")
            .arg(examples().join("values.yaml"))
            .args(["--set", "injector.standalone=true", "--set", "injector.webhookUrl=https://127.0.0.1:1/"])
            .output()
            .unwrap();
        assert!(output.status.success(), "helm revision {revision}: {}", String::from_utf8_lossy(&output.stderr));
    };
    let certificate = || async {
        let secret = kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), system)
            .get("proxy-injector-tls")
            .await
            .unwrap();
        secret.data.unwrap()["tls.crt"].0.clone()
    };
    release(1);
    let first = certificate().await;
    release(2);
    assert_eq!(certificate().await, first, "an upgrade does not rotate the certificate");
    // The registration helm installed would match every namespace; take it out of the way.
    let configurations: kube::Api<kube::api::DynamicObject> = kube::Api::all_with(
        client.clone(),
        &kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
        )),
    );
    configurations.delete(webhook::registration::CONFIGURATION_NAME, &Default::default()).await.unwrap();
}
