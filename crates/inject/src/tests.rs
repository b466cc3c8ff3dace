//! Engine behaviour, section by section of the compatibility contract.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

const ANCHORS: &str = "-----BEGIN CERTIFICATE-----\nEXAMPLE\n-----END CERTIFICATE-----\n";

fn injector(values: Value) -> Injector {
    let mut values = values;
    if values.get("identityTrustAnchorsPEM").is_none() {
        values["identityTrustAnchorsPEM"] = json!(ANCHORS);
    }
    Injector::new(ValuesDocument::from_value(values).unwrap(), "linkerd").unwrap().with_version("dev-undefined")
}

fn pod(annotations: Value, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "emojivoto", "annotations": annotations,
        "labels": {"app": "web"}}, "spec": spec})
}

fn app_spec() -> Value {
    json!({"containers": [{"name": "web", "image": "web:v1", "ports": [{"containerPort": 80, "name": "http"}]}]})
}

fn webhook(injector: &Injector, object: &Value, ns_annotations: Value) -> Outcome {
    let ns = ns_annotations.as_object().cloned();
    let owner = Owner { kind: "deployment", name: "web" };
    let origin = Origin::Webhook { namespace: "emojivoto", namespace_annotations: ns.as_ref(), owner: Some(owner) };
    injector.evaluate(&Request { object, kind: None, origin }).unwrap()
}

fn applied(object: &Value, outcome: &Outcome) -> Value {
    let mut patched = object.clone();
    outcome.patch.apply(&mut patched).unwrap();
    // The same patch, read by an independent RFC 6902 implementation, gives the same document.
    let independent: json_patch::Patch = serde_json::from_slice(&outcome.patch.to_json()).unwrap();
    let mut check = object.clone();
    json_patch::patch(&mut check, &independent).unwrap();
    assert_eq!(check, patched);
    patched
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect()
}

fn proxy_of(pod: &Value) -> &Value {
    pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .chain(pod["spec"]["containers"].as_array())
        .flatten()
        .find(|c| c["name"] == "linkerd-proxy")
        .expect("a proxy container")
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"].as_array()?.iter().find(|e| e["name"] == name)?["value"].as_str()
}

#[test]
fn the_fingerprint_follows_what_injection_adds_and_not_the_injectors_version() {
    let object = json!({"kind": "Pod", "metadata": {"name": "p", "annotations": {"linkerd.io/inject": "enabled"}},
        "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 8080}]}]}});
    let fingerprint = |injector: &Injector, object: &Value| webhook(injector, object, json!({})).fingerprint.unwrap();
    let base = fingerprint(&injector(json!({})), &object);
    assert_eq!(base.len(), 32);
    assert_eq!(fingerprint(&injector(json!({})), &object), base, "deterministic");
    assert_eq!(fingerprint(&injector(json!({})).with_version("v9.9.9"), &object), base, "an injector upgrade alone");
    assert_ne!(fingerprint(&injector(json!({"proxy": {"image": {"version": "v2"}}})), &object), base);
    assert_ne!(fingerprint(&injector(json!({"proxy": {"logLevel": "debug"}})), &object), base);
    let mut annotated = object.clone();
    annotated["metadata"]["annotations"]["config.linkerd.io/proxy-cpu-limit"] = json!("1");
    assert_ne!(fingerprint(&injector(json!({})), &annotated), base);
    let cli = injector(json!({}))
        .evaluate(&Request {
            object: &object,
            kind: None,
            origin: Origin::Cli { manual: true, overrides: &Default::default() },
        })
        .unwrap();
    assert_eq!(cli.fingerprint, None, "only the webhook records it: manifests keep the reference's output");
}

#[test]
fn webhook_patch_operations_follow_the_reference_order() {
    let injector = injector(json!({}));
    let object = json!({"kind": "Pod", "metadata": {"name": "p", "annotations": {"linkerd.io/inject": "enabled"},
        "labels": {"app": "p"}}, "spec": {"containers": [{"name": "app"}]}});
    let outcome = webhook(&injector, &object, json!({}));
    let paths: Vec<&str> = outcome.patch.operations().iter().map(|op| op.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/metadata/annotations/linkerd.io~1created-by",
            "/metadata/annotations/linkerd.io~1proxy-version",
            "/metadata/annotations/linkerd.io~1trust-root-sha256",
            "/metadata/labels/linkerd.io~1control-plane-ns",
            "/metadata/labels/linkerd.io~1proxy-deployment",
            "/metadata/labels/linkerd.io~1workload-ns",
            "/spec/volumes",
            "/spec/initContainers",
            "/spec/volumes/-",
            "/spec/initContainers/0",
            "/spec/volumes/-",
            "/spec/volumes/-",
            "/spec/initContainers/1",
            "/metadata/annotations/linkerd.io~1injection-fingerprint",
        ]
    );
    let pod = applied(&object, &outcome);
    assert_eq!(pod["metadata"]["annotations"][crate::FINGERPRINT], json!(outcome.fingerprint.unwrap()));
    assert_eq!(pod["metadata"]["annotations"]["linkerd.io/created-by"], "linkerd/proxy-injector dev-undefined");
    assert_eq!(pod["metadata"]["labels"]["linkerd.io/workload-ns"], "emojivoto");
    let expected_sha = hex(&Sha256::digest(ANCHORS.as_bytes()));
    assert_eq!(pod["metadata"]["annotations"]["linkerd.io/trust-root-sha256"], json!(expected_sha));
    assert_eq!(pod["metadata"]["annotations"]["linkerd.io/proxy-version"], "edge-26.8.2");
}

#[test]
fn default_proxy_env_is_in_the_reference_order() {
    let injector = injector(json!({}));
    let object = pod(json!({"linkerd.io/inject": "enabled"}), app_spec());
    let pod = applied(&object, &webhook(&injector, &object, json!({})));
    let proxy = proxy_of(&pod);
    let env_names: Vec<&str> = proxy["env"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(
        env_names,
        [
            "_pod_name",
            "_pod_ns",
            "_pod_uid",
            "_pod_ip",
            "_pod_nodeName",
            "_pod_containerName",
            "LINKERD2_PROXY_CORES",
            "LINKERD2_PROXY_CORES_MIN",
            "LINKERD2_PROXY_SHUTDOWN_ENDPOINT_ENABLED",
            "LINKERD2_PROXY_LOG",
            "LINKERD2_PROXY_LOG_FORMAT",
            "LINKERD2_PROXY_DESTINATION_SVC_ADDR",
            "LINKERD2_PROXY_DESTINATION_PROFILE_NETWORKS",
            "LINKERD2_PROXY_POLICY_SVC_ADDR",
            "LINKERD2_PROXY_POLICY_WORKLOAD",
            "LINKERD2_PROXY_INBOUND_DEFAULT_POLICY",
            "LINKERD2_PROXY_POLICY_CLUSTER_NETWORKS",
            "LINKERD2_PROXY_CONTROL_STREAM_INITIAL_TIMEOUT",
            "LINKERD2_PROXY_CONTROL_STREAM_IDLE_TIMEOUT",
            "LINKERD2_PROXY_CONTROL_STREAM_LIFETIME",
            "LINKERD2_PROXY_INBOUND_CONNECT_TIMEOUT",
            "LINKERD2_PROXY_OUTBOUND_CONNECT_TIMEOUT",
            "LINKERD2_PROXY_OUTBOUND_DISCOVERY_IDLE_TIMEOUT",
            "LINKERD2_PROXY_INBOUND_DISCOVERY_IDLE_TIMEOUT",
            "LINKERD2_PROXY_CONTROL_LISTEN_ADDR",
            "LINKERD2_PROXY_ADMIN_LISTEN_ADDR",
            "LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR",
            "LINKERD2_PROXY_OUTBOUND_LISTEN_ADDRS",
            "LINKERD2_PROXY_INBOUND_LISTEN_ADDR",
            "LINKERD2_PROXY_INBOUND_IPS",
            "LINKERD2_PROXY_INBOUND_PORTS",
            "LINKERD2_PROXY_DESTINATION_PROFILE_SUFFIXES",
            "LINKERD2_PROXY_INBOUND_ACCEPT_KEEPALIVE",
            "LINKERD2_PROXY_OUTBOUND_CONNECT_KEEPALIVE",
            "LINKERD2_PROXY_INBOUND_ACCEPT_USER_TIMEOUT",
            "LINKERD2_PROXY_OUTBOUND_CONNECT_USER_TIMEOUT",
            "LINKERD2_PROXY_OUTBOUND_METRICS_HOSTNAME_LABELS",
            "LINKERD2_PROXY_INBOUND_SERVER_HTTP2_KEEP_ALIVE_INTERVAL",
            "LINKERD2_PROXY_INBOUND_SERVER_HTTP2_KEEP_ALIVE_TIMEOUT",
            "LINKERD2_PROXY_OUTBOUND_SERVER_HTTP2_KEEP_ALIVE_INTERVAL",
            "LINKERD2_PROXY_OUTBOUND_SERVER_HTTP2_KEEP_ALIVE_TIMEOUT",
            "LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION",
            "LINKERD2_PROXY_DESTINATION_CONTEXT",
            "_pod_sa",
            "_l5d_ns",
            "_l5d_trustdomain",
            "LINKERD2_PROXY_IDENTITY_DIR",
            "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS",
            "LINKERD2_PROXY_IDENTITY_TOKEN_FILE",
            "LINKERD2_PROXY_IDENTITY_SVC_ADDR",
            "LINKERD2_PROXY_IDENTITY_LOCAL_NAME",
            "LINKERD2_PROXY_IDENTITY_SVC_NAME",
            "LINKERD2_PROXY_DESTINATION_SVC_NAME",
            "LINKERD2_PROXY_POLICY_SVC_NAME",
        ]
    );
    assert_eq!(
        env_value(proxy, "LINKERD2_PROXY_LOG"),
        Some("warn,linkerd=info,hickory=error,[{headers}]=off,[{request}]=off")
    );
    assert_eq!(env_value(proxy, "LINKERD2_PROXY_INBOUND_PORTS"), Some("80"));
    assert_eq!(
        env_value(proxy, "LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION"),
        Some("25,587,3306,4444,5432,6379,9300,11211")
    );
    assert_eq!(
        env_value(proxy, "LINKERD2_PROXY_IDENTITY_LOCAL_NAME"),
        Some("$(_pod_sa).$(_pod_ns).serviceaccount.identity.linkerd.cluster.local")
    );
    assert_eq!(
        env_value(proxy, "LINKERD2_PROXY_DESTINATION_SVC_ADDR"),
        Some("linkerd-dst-headless.linkerd.svc.cluster.local.:8086")
    );
    assert_eq!(proxy["restartPolicy"], "Always");
    assert_eq!(proxy["startupProbe"]["failureThreshold"], 120);
    assert_eq!(proxy["securityContext"]["runAsUser"], 2102);
    assert!(proxy["securityContext"].get("runAsGroup").is_none());
    assert!(proxy.get("resources").is_none());
    assert!(proxy.get("lifecycle").is_none());
}

#[test]
fn init_container_args_and_security() {
    let injector = injector(json!({}));
    let object = pod(json!({"linkerd.io/inject": "enabled"}), app_spec());
    let pod = applied(&object, &webhook(&injector, &object, json!({})));
    let init = &pod["spec"]["initContainers"][0];
    assert_eq!(init["name"], "linkerd-init");
    assert_eq!(
        init["args"],
        json!([
            "--firewall-bin-path",
            "iptables-nft",
            "--firewall-save-bin-path",
            "iptables-nft-save",
            "--ipv6=false",
            "--incoming-proxy-port",
            "4143",
            "--outgoing-proxy-port",
            "4140",
            "--proxy-uid",
            "2102",
            "--inbound-ports-to-ignore",
            "4190,4191,4567,4568",
            "--outbound-ports-to-ignore",
            "4567,4568"
        ])
    );
    assert_eq!(init["command"], json!(["/usr/lib/linkerd/linkerd2-proxy-init"]));
    assert_eq!(init["securityContext"]["capabilities"]["add"], json!(["NET_ADMIN", "NET_RAW"]));
    assert_eq!(init["securityContext"]["runAsUser"], 65534);
    assert_eq!(init["securityContext"]["privileged"], false);
    assert_eq!(init["volumeMounts"], json!([{"mountPath": "/run", "name": "linkerd-proxy-init-xtables-lock"}]));
    assert_eq!(
        names(&pod["spec"]["volumes"]),
        ["linkerd-proxy-init-xtables-lock", "linkerd-identity-end-entity", "linkerd-identity-token"]
    );
}

#[test]
fn container_ordering_variants() {
    let spec = json!({"initContainers": [{"name": "setup"}], "containers": [{"name": "app"}]});
    let order = |values: Value, annotations: Value| {
        let injector = injector(values);
        let object = pod(annotations, spec.clone());
        let pod = applied(&object, &webhook(&injector, &object, json!({})));
        (names(&pod["spec"]["initContainers"]).join(","), names(&pod["spec"]["containers"]).join(","))
    };
    let enabled = json!({"linkerd.io/inject": "enabled"});
    assert_eq!(order(json!({}), enabled.clone()), ("linkerd-init,linkerd-proxy,setup".into(), "app".into()));
    let non_native = json!({"proxy": {"nativeSidecar": false}});
    assert_eq!(order(non_native.clone(), enabled.clone()), ("setup,linkerd-init".into(), "linkerd-proxy,app".into()));
    let no_await = json!({"linkerd.io/inject": "enabled", "config.linkerd.io/proxy-await": "disabled"});
    assert_eq!(order(non_native.clone(), no_await), ("setup,linkerd-init".into(), "app,linkerd-proxy".into()));
    let debug = json!({"linkerd.io/inject": "enabled", "config.linkerd.io/enable-debug-sidecar": "true"});
    assert_eq!(
        order(non_native, debug.clone()),
        ("setup,linkerd-init".into(), "linkerd-proxy,app,linkerd-debug".into())
    );
    assert_eq!(
        order(json!({"cniEnabled": true}), debug),
        ("linkerd-network-validator,linkerd-proxy,setup".into(), "app,linkerd-debug".into())
    );
    let annotation_native =
        json!({"linkerd.io/inject": "enabled", "config.alpha.linkerd.io/proxy-enable-native-sidecar": "true"});
    assert_eq!(
        order(json!({"proxy": {"nativeSidecar": false}}), annotation_native).0,
        "linkerd-init,linkerd-proxy,setup"
    );
}

#[test]
fn non_native_lifecycle_hooks() {
    let injector = injector(json!({"proxy": {"nativeSidecar": false}}));
    let object = pod(
        json!({"linkerd.io/inject": "enabled", "config.alpha.linkerd.io/proxy-wait-before-exit-seconds": "30"}),
        app_spec(),
    );
    let pod = applied(&object, &webhook(&injector, &object, json!({})));
    let proxy = proxy_of(&pod);
    assert_eq!(
        proxy["lifecycle"]["postStart"]["exec"]["command"],
        json!(["/usr/lib/linkerd/linkerd-await", "--timeout=2m", "--port=4191"])
    );
    assert_eq!(proxy["lifecycle"]["preStop"]["exec"]["command"], json!(["/bin/sleep", "30"]));
    assert!(proxy.get("restartPolicy").is_none());
    assert!(proxy.get("startupProbe").is_none());
}

#[test]
fn cni_mode_uses_the_network_validator() {
    let injector = injector(json!({"cniEnabled": true}));
    let object = pod(json!({"linkerd.io/inject": "enabled"}), app_spec());
    let pod = applied(&object, &webhook(&injector, &object, json!({})));
    let validator = &pod["spec"]["initContainers"][0];
    assert_eq!(validator["name"], "linkerd-network-validator");
    assert_eq!(
        validator["args"],
        json!([
            "--log-format",
            "plain",
            "--log-level",
            "debug",
            "--connect-addr",
            "1.1.1.1:20001",
            "--listen-addr",
            "0.0.0.0:4140",
            "--timeout",
            "10s"
        ])
    );
    assert_eq!(validator["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert!(!names(&pod["spec"]["volumes"]).contains(&"linkerd-proxy-init-xtables-lock"));
}

#[test]
fn ingress_mode_from_the_namespace() {
    let injector = injector(json!({}));
    let object = pod(json!({}), app_spec());
    let outcome = webhook(&injector, &object, json!({"linkerd.io/inject": "ingress"}));
    assert_eq!(outcome.inject_annotation.at, decision::AnnotationAt::Namespace);
    let pod = applied(&object, &outcome);
    assert_eq!(pod["metadata"]["annotations"]["linkerd.io/inject"], "ingress");
    assert_eq!(env_value(proxy_of(&pod), "LINKERD2_PROXY_INGRESS_MODE"), Some("true"));
}

#[test]
fn namespace_annotations_are_inherited_and_pod_annotations_win() {
    let injector = injector(json!({}));
    let object = pod(json!({"linkerd.io/inject": "enabled", "config.linkerd.io/proxy-log-level": "debug"}), app_spec());
    let ns = json!({"config.linkerd.io/proxy-log-level": "trace", "config.linkerd.io/admin-port": "5191",
        "config.linkerd.io/debug-image": "not-inherited", "config.linkerd.io/enable-gateway": "true"});
    let outcome = webhook(&injector, &object, ns);
    let pod = applied(&object, &outcome);
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["config.linkerd.io/admin-port"], "5191");
    assert_eq!(annotations["config.linkerd.io/proxy-log-level"], "debug");
    assert!(annotations.get("config.linkerd.io/debug-image").is_none());
    let proxy = proxy_of(&pod);
    assert_eq!(env_value(proxy, "LINKERD2_PROXY_ADMIN_LISTEN_ADDR"), Some("0.0.0.0:5191"));
    assert!(env_value(proxy, "LINKERD2_PROXY_LOG").unwrap().starts_with("debug,"));
    assert!(env_value(proxy, "LINKERD2_PROXY_INBOUND_GATEWAY_SUFFIXES").is_none());
    let config = outcome.config.unwrap();
    assert_eq!(config.admin_port.source, Source::NamespaceAnnotation);
    assert_eq!(config.log_level.source, Source::WorkloadAnnotation);
    assert_eq!(config.inbound_port.source, Source::Default);
}

#[test]
fn valid_annotations_change_the_proxy() {
    let injector = injector(json!({}));
    let annotations = json!({
        "linkerd.io/inject": "enabled",
        "config.linkerd.io/proxy-image": "my.registry/proxy",
        "config.linkerd.io/proxy-version": "v9",
        "config.linkerd.io/image-pull-policy": "Always",
        "config.linkerd.io/inbound-port": "5143",
        "config.linkerd.io/outbound-port": "5140",
        "config.linkerd.io/skip-inbound-ports": "25,8000-8100",
        "config.linkerd.io/skip-outbound-ports": "3306",
        "config.linkerd.io/skip-subnets": "10.1.0.0/16",
        "config.linkerd.io/proxy-cpu-request": "1500m",
        "config.linkerd.io/proxy-cpu-limit": "2.5",
        "config.linkerd.io/proxy-cpu-ratio-limit": "0.5",
        "config.linkerd.io/proxy-memory-limit": "64Mi",
        "config.linkerd.io/proxy-ephemeral-storage-request": "1Gi",
        "config.linkerd.io/proxy-uid": "1234",
        "config.linkerd.io/proxy-gid": "4321",
        "config.linkerd.io/proxy-log-http-headers": "insecure",
        "config.linkerd.io/proxy-log-format": "json",
        "config.linkerd.io/proxy-admin-shutdown": "enabled",
        "config.linkerd.io/enable-external-profiles": "true",
        "config.linkerd.io/proxy-require-identity-inbound-ports": "8080",
        "config.linkerd.io/proxy-metrics-hostname-labels": "true",
        "config.linkerd.io/proxy-outbound-connect-timeout": "6s5ms",
        "config.linkerd.io/proxy-inbound-discovery-cache-unused-timeout": "6s5000ms",
        "config.linkerd.io/proxy-disable-outbound-protocol-detect-timeout": "true",
        "config.linkerd.io/shutdown-grace-period": "30s",
        "config.linkerd.io/default-inbound-policy": "deny",
        "config.linkerd.io/access-log": "json",
        "config.linkerd.io/enable-gateway": "true",
    });
    let object = pod(annotations, app_spec());
    let outcome = webhook(&injector, &object, json!({}));
    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
    let pod = applied(&object, &outcome);
    let proxy = proxy_of(&pod);
    assert_eq!(proxy["image"], "my.registry/proxy:v9");
    assert_eq!(proxy["imagePullPolicy"], "Always");
    assert_eq!(proxy["ports"][0]["containerPort"], 5143);
    assert_eq!(
        proxy["resources"],
        json!({"limits": {"cpu": "2.5", "memory": "64Mi"}, "requests": {"cpu": "1500m", "ephemeral-storage": "1Gi"}})
    );
    assert_eq!(proxy["securityContext"]["runAsGroup"], 4321);
    let env = |name| env_value(proxy, name);
    assert_eq!(env("LINKERD2_PROXY_CORES"), Some("2"));
    assert_eq!(env("LINKERD2_PROXY_CORES_MAX"), Some("3"));
    assert_eq!(env("LINKERD2_PROXY_CORES_MAX_RATIO"), Some("0.5"));
    assert_eq!(env("LINKERD2_PROXY_LOG"), Some("warn,linkerd=info,hickory=error"));
    assert_eq!(env("LINKERD2_PROXY_LOG_FORMAT"), Some("json"));
    assert_eq!(env("LINKERD2_PROXY_SHUTDOWN_ENDPOINT_ENABLED"), Some("true"));
    assert_eq!(env("LINKERD2_PROXY_DESTINATION_PROFILE_SUFFIXES"), Some("."));
    assert_eq!(env("LINKERD2_PROXY_INBOUND_PORTS_REQUIRE_IDENTITY"), Some("8080"));
    assert_eq!(env("LINKERD2_PROXY_OUTBOUND_METRICS_HOSTNAME_LABELS"), Some("true"));
    assert_eq!(env("LINKERD2_PROXY_OUTBOUND_CONNECT_TIMEOUT"), Some("6005ms"));
    assert_eq!(env("LINKERD2_PROXY_INBOUND_DISCOVERY_IDLE_TIMEOUT"), Some("11s"));
    assert_eq!(env("LINKERD2_PROXY_OUTBOUND_DETECT_TIMEOUT"), Some("365d"));
    assert_eq!(env("LINKERD2_PROXY_INBOUND_DETECT_TIMEOUT"), None);
    assert_eq!(env("LINKERD2_PROXY_SHUTDOWN_GRACE_PERIOD"), Some("30000ms"));
    assert_eq!(env("LINKERD2_PROXY_INBOUND_DEFAULT_POLICY"), Some("deny"));
    assert_eq!(env("LINKERD2_PROXY_ACCESS_LOG"), Some("json"));
    assert_eq!(env("LINKERD2_PROXY_INBOUND_GATEWAY_SUFFIXES"), Some("svc.cluster.local."));
    assert_eq!(env("LINKERD2_PROXY_INBOUND_LISTEN_ADDR"), Some("0.0.0.0:5143"));
    let init = &pod["spec"]["initContainers"][0];
    let args: Vec<&str> = init["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let after = |flag: &str| args[args.iter().position(|a| *a == flag).unwrap() + 1];
    assert_eq!(after("--incoming-proxy-port"), "5143");
    assert_eq!(after("--outgoing-proxy-port"), "5140");
    assert_eq!(after("--proxy-gid"), "4321");
    assert_eq!(after("--inbound-ports-to-ignore"), "4190,4191,25,8000-8100");
    assert_eq!(after("--outbound-ports-to-ignore"), "3306");
    assert_eq!(after("--subnets-to-ignore"), "10.1.0.0/16");
    assert_eq!(init["resources"], proxy["resources"]);
}

#[test]
fn invalid_annotations_keep_the_default_and_warn() {
    let cases = [
        ("config.linkerd.io/admin-port", "http", "LINKERD2_PROXY_ADMIN_LISTEN_ADDR", "0.0.0.0:4191"),
        ("config.linkerd.io/admin-port", "70000", "LINKERD2_PROXY_ADMIN_LISTEN_ADDR", "0.0.0.0:4191"),
        (
            "config.linkerd.io/proxy-outbound-connect-timeout",
            "6000",
            "LINKERD2_PROXY_OUTBOUND_CONNECT_TIMEOUT",
            "1000ms",
        ),
        ("config.linkerd.io/proxy-admin-shutdown", "yes", "LINKERD2_PROXY_SHUTDOWN_ENDPOINT_ENABLED", "false"),
        (
            "config.linkerd.io/default-inbound-policy",
            "allow-all",
            "LINKERD2_PROXY_INBOUND_DEFAULT_POLICY",
            "all-unauthenticated",
        ),
        (
            "config.linkerd.io/enable-external-profiles",
            "yes",
            "LINKERD2_PROXY_DESTINATION_PROFILE_SUFFIXES",
            "svc.cluster.local.",
        ),
        ("config.linkerd.io/proxy-cpu-request", "lots", "LINKERD2_PROXY_CORES", "1"),
        ("config.linkerd.io/proxy-cpu-ratio-limit", "1.5", "LINKERD2_PROXY_CORES", "1"),
        ("config.linkerd.io/proxy-log-format", "xml", "LINKERD2_PROXY_LOG_FORMAT", "plain"),
        (
            "config.linkerd.io/proxy-metrics-hostname-labels",
            "maybe",
            "LINKERD2_PROXY_OUTBOUND_METRICS_HOSTNAME_LABELS",
            "false",
        ),
        ("config.linkerd.io/shutdown-grace-period", "soon", "LINKERD2_PROXY_LOG_FORMAT", "plain"),
    ];
    let injector = injector(json!({}));
    for (key, bad, env_name, kept) in cases {
        let object = pod(json!({"linkerd.io/inject": "enabled", key: bad}), app_spec());
        let outcome = webhook(&injector, &object, json!({}));
        assert_eq!(outcome.warnings.len(), 1, "{key}={bad}: {:?}", outcome.warnings);
        let warning = &outcome.warnings[0];
        assert_eq!((warning.key.as_str(), warning.value.as_str()), (key, bad));
        assert!(warning.to_string().contains("expected"), "{warning}");
        let pod = applied(&object, &outcome);
        assert_eq!(env_value(proxy_of(&pod), env_name), Some(kept), "{key}={bad}");
    }
    let object =
        pod(json!({"linkerd.io/inject": "enabled", "config.linkerd.io/skip-inbound-ports": "80,http"}), app_spec());
    let outcome = webhook(&injector, &object, json!({}));
    assert_eq!(outcome.warnings[0].key, "config.linkerd.io/skip-inbound-ports");
    let pod = applied(&object, &outcome);
    assert_eq!(pod["spec"]["initContainers"][0]["args"][12], "4190,4191,4567,4568");
}

#[test]
fn ignored_settings_warn() {
    let injector = injector(json!({}));
    let object = pod(
        json!({"linkerd.io/inject": "enabled", "config.linkerd.io/pod-inbound-ports": "1,2", "config.linkerd.io/close-wait-timeout": "1m"}),
        app_spec(),
    );
    let outcome = webhook(&injector, &object, json!({}));
    let keys: Vec<&str> = outcome.warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(keys, ["config.linkerd.io/pod-inbound-ports", "config.linkerd.io/close-wait-timeout"]);
    let pod = applied(&object, &outcome);
    assert!(!pod["spec"]["initContainers"][0]["args"].to_string().contains("close-wait"));

    let root = injector_root();
    let outcome = webhook(&root, &object, json!({}));
    let pod = applied(&object, &outcome);
    let init = &pod["spec"]["initContainers"][0];
    assert!(init["args"].to_string().contains("\"--timeout-close-wait-secs\",\"60\""));
    assert_eq!(init["securityContext"]["privileged"], true);
    assert_eq!(init["securityContext"]["runAsUser"], 0);
}

fn injector_root() -> Injector {
    injector(json!({"proxyInit": {"runAsRoot": true}}))
}

#[test]
fn opaque_ports_default_is_filtered_and_names_resolve() {
    let injector = injector(json!({}));
    let spec = json!({"initContainers": [{"name": "cache", "ports": [{"containerPort": 11211}]}],
        "containers": [{"name": "db", "ports": [{"containerPort": 3306, "name": "mysql"}, {"containerPort": 80}]}]});
    let object = pod(json!({"linkerd.io/inject": "enabled"}), spec.clone());
    let pod_out = applied(&object, &webhook(&injector, &object, json!({})));
    assert_eq!(pod_out["metadata"]["annotations"]["config.linkerd.io/opaque-ports"], "11211,3306");
    assert_eq!(
        env_value(proxy_of(&pod_out), "LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION"),
        Some("11211,3306")
    );
    assert_eq!(env_value(proxy_of(&pod_out), "LINKERD2_PROXY_INBOUND_PORTS"), Some("11211,3306,80"));

    let named = pod(
        json!({"linkerd.io/inject": "enabled", "config.linkerd.io/opaque-ports": "mysql, 9000-9010,nope,"}),
        spec.clone(),
    );
    let outcome = webhook(&injector, &named, json!({}));
    assert_eq!(outcome.warnings.len(), 1);
    assert!(outcome.warnings[0].message.contains("nope"));
    let pod_out = applied(&named, &outcome);
    assert_eq!(
        env_value(proxy_of(&pod_out), "LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION"),
        Some("3306,9000-9010")
    );

    let skipped = pod(json!({}), spec);
    let outcome = webhook(&injector, &skipped, json!({}));
    assert!(!outcome.injectable);
    assert_eq!(outcome.action, Action::Annotated);
    assert_eq!(applied(&skipped, &outcome)["metadata"]["annotations"]["config.linkerd.io/opaque-ports"], "11211,3306");
}

#[test]
fn services_get_the_opaque_ports_annotation() {
    let injector = injector(json!({}));
    let service = json!({"kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [
        {"port": 9090, "targetPort": 3306}, {"port": 5432, "targetPort": 9091}, {"port": 3306}, {"port": 9093, "targetPort": "named"}]}});
    let outcome = webhook(&injector, &service, json!({}));
    assert_eq!(outcome.reasons, [SkipReason::UnsupportedResource]);
    let patched = applied(&service, &outcome);
    assert_eq!(patched["metadata"]["annotations"]["config.linkerd.io/opaque-ports"], "9090,3306");
    assert_eq!(outcome.patch.operations()[0].path, "/metadata/annotations");

    let from_ns = webhook(&injector, &service, json!({"config.linkerd.io/opaque-ports": "1234"}));
    assert_eq!(applied(&service, &from_ns)["metadata"]["annotations"]["config.linkerd.io/opaque-ports"], "1234");
    let own = json!({"kind": "Service", "metadata": {"name": "s", "annotations": {"config.linkerd.io/opaque-ports": "1"}},
        "spec": {"ports": [{"port": 3306}]}});
    assert!(webhook(&injector, &own, json!({})).patch.is_empty());
}

#[test]
fn skip_reasons_in_reference_order() {
    let injector = injector(json!({"identity": {"serviceAccountTokenProjection": false}}));
    let object = pod(
        json!({"linkerd.io/inject": "disabled"}),
        json!({"hostNetwork": true, "automountServiceAccountToken": false, "containers": [{"name": "istio-proxy"}]}),
    );
    let outcome = webhook(&injector, &object, json!({"linkerd.io/inject": "enabled"}));
    let codes: Vec<&str> = outcome.reasons.iter().map(|r| r.code()).collect();
    assert_eq!(
        codes,
        [
            "host_network_enabled",
            "sidecar_already_exists",
            "injection_disable_annotation_present",
            "disabled_automount_service_account_token_account"
        ]
    );
}

#[test]
fn invalid_inject_annotation_is_reported() {
    let injector = injector(json!({}));
    let object = pod(json!({"linkerd.io/inject": "true"}), app_spec());
    let outcome = webhook(&injector, &object, json!({"linkerd.io/inject": "enabled"}));
    assert_eq!(outcome.reasons, [SkipReason::InvalidInjectAnnotationAtWorkload]);
    assert_eq!(outcome.warnings[0].key, "linkerd.io/inject");

    let outcome = webhook(&injector, &pod(json!({}), app_spec()), json!({"linkerd.io/inject": "yes"}));
    assert_eq!(outcome.reasons, [SkipReason::InvalidInjectAnnotationAtNs]);
    assert_eq!(outcome.warnings.len(), 1);
    assert!(
        outcome.warnings[0].message.contains("the namespace's value \"yes\" is invalid"),
        "{}",
        outcome.warnings[0]
    );
}

#[test]
fn capabilities_and_service_account_mount_are_copied() {
    let injector = injector(json!({}));
    let spec = json!({"containers": [{"name": "app", "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL", "NET_RAW"]}},
        "volumeMounts": [{"name": "kube-api", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true, "subPath": "x"}]}]});
    let object = pod(json!({"linkerd.io/inject": "enabled"}), spec);
    let pod = applied(&object, &webhook(&injector, &object, json!({})));
    let proxy = proxy_of(&pod);
    assert_eq!(
        proxy["securityContext"]["capabilities"],
        json!({"add": ["NET_BIND_SERVICE"], "drop": ["ALL", "NET_RAW"]})
    );
    let sa_mount =
        json!({"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": "kube-api", "readOnly": true});
    assert_eq!(proxy["volumeMounts"][2], sa_mount);
    let init = &pod["spec"]["initContainers"][0];
    assert_eq!(
        init["securityContext"]["capabilities"],
        json!({"add": ["NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE"], "drop": ["ALL"]})
    );
    assert_eq!(init["volumeMounts"][1], sa_mount);
}

#[test]
fn additional_env_merges_values_namespace_and_workload() {
    let injector = injector(
        json!({"proxy": {"additionalEnv": [{"name": "A", "value": "values"}, {"name": "B", "value": "values"}]}}),
    );
    let object = pod(
        json!({"linkerd.io/inject": "enabled", "config.linkerd.io/proxy-additional-env": "[{\"name\":\"B\",\"value\":\"pod\"}]"}),
        app_spec(),
    );
    let ns = json!({"config.linkerd.io/proxy-additional-env": "[{\"name\":\"A\",\"value\":\"ns\"},{\"name\":\"C\",\"value\":\"ns\"}]"});
    let outcome = webhook(&injector, &object, ns);
    let pod = applied(&object, &outcome);
    let env = proxy_of(&pod)["env"].as_array().unwrap();
    let tail: Vec<&Value> = env[env.len() - 3..].iter().collect();
    assert_eq!(
        tail,
        [
            &json!({"name": "A", "value": "ns"}),
            &json!({"name": "B", "value": "pod"}),
            &json!({"name": "C", "value": "ns"})
        ]
    );

    let bad = pod_with_env("not json");
    let outcome = webhook(&injector, &bad, json!({}));
    assert_eq!(outcome.warnings[0].key, "config.linkerd.io/proxy-additional-env");
}

fn pod_with_env(env: &str) -> Value {
    pod(json!({"linkerd.io/inject": "enabled", "config.linkerd.io/proxy-additional-env": env}), app_spec())
}

#[test]
fn tracing_adds_podinfo_and_attributes() {
    let injector =
        injector(json!({"proxy": {"tracing": {"enabled": true, "collector": {"endpoint": "collector.tracing:4317",
        "meshIdentity": {"serviceAccountName": "collector", "namespace": "tracing"}}}}}));
    let mut object = pod(json!({"linkerd.io/inject": "enabled", "resource.opentelemetry.io/team": "blue"}), app_spec());
    object["metadata"]["labels"]["app.kubernetes.io/name"] = json!("web-app");
    let pod = applied(&object, &webhook(&injector, &object, json!({})));
    let proxy = proxy_of(&pod);
    assert_eq!(
        env_value(proxy, "LINKERD2_PROXY_TRACE_COLLECTOR_SVC_NAME"),
        Some("collector.tracing.serviceaccount.identity.linkerd.cluster.local")
    );
    assert_eq!(
        env_value(proxy, "LINKERD2_PROXY_TRACE_EXTRA_ATTRIBUTES"),
        Some(
            "k8s.container.name=$(_pod_containerName)\nk8s.pod.ip=$(_pod_ip)\nk8s.pod.uid=$(_pod_uid)\nservice.name=web-app\nteam=blue\n"
        )
    );
    assert!(names(&pod["spec"]["volumes"]).contains(&"linkerd-podinfo"));
    assert_eq!(pod["spec"]["volumes"][2]["downwardAPI"]["items"][1]["path"], "annotations");
    assert!(
        Injector::new(ValuesDocument::from_value(json!({"proxy": {"tracing": {"enabled": true}}})).unwrap(), "linkerd")
            .is_err()
    );
}

#[test]
fn owner_labels_follow_the_resolved_owner() {
    let injector = injector(json!({}));
    let object = pod(json!({"linkerd.io/inject": "enabled"}), app_spec());
    for (kind, label) in [
        ("cronjob", Some("linkerd.io/proxy-cronjob")),
        ("pod", None),
        ("statefulset", Some("linkerd.io/proxy-statefulset")),
    ] {
        let origin =
            Origin::Webhook { namespace: "ns", namespace_annotations: None, owner: Some(Owner { kind, name: "o" }) };
        let outcome = injector.evaluate(&Request { object: &object, kind: None, origin }).unwrap();
        let pod = applied(&object, &outcome);
        let labels = pod["metadata"]["labels"].as_object().unwrap();
        let owner_labels: Vec<&String> = labels.keys().filter(|k| k.starts_with("linkerd.io/proxy-")).collect();
        assert_eq!(owner_labels.first().map(|s| s.as_str()), label, "{kind}");
        assert_eq!(labels["linkerd.io/workload-ns"], "ns");
    }
}

#[test]
fn patch_values_are_escaped_whatever_they_contain() {
    let injector = injector(json!({}));
    let nasty = "a\"b\\c\n</script>~/";
    let mut object = pod(json!({}), app_spec());
    object["metadata"]["annotations"] = json!({"linkerd.io/inject": "enabled"});
    let ns = json!({"config.linkerd.io/proxy-log-level": nasty, "config.linkerd.io/access-log": nasty});
    let outcome = webhook(&injector, &object, ns);
    let bytes = outcome.patch.to_json();
    let reparsed: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(reparsed.to_string().contains("</script>"));
    let pod = applied(&object, &outcome);
    assert_eq!(pod["metadata"]["annotations"]["config.linkerd.io/proxy-log-level"], nasty);
}

#[test]
fn cli_without_manual_adds_only_annotations() {
    let injector = injector(json!({}));
    let deployment = json!({"kind": "Deployment", "metadata": {"name": "web", "namespace": "ns"},
        "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": app_spec()}}});
    let mut overrides = AnnotationSet::default();
    overrides.insert("config.linkerd.io/admin-port", "1234", Source::Flag);
    let origin = Origin::Cli { manual: false, overrides: &overrides };
    let outcome = injector.evaluate(&Request { object: &deployment, kind: None, origin }).unwrap();
    let out = applied(&deployment, &outcome);
    assert_eq!(
        out["spec"]["template"]["metadata"]["annotations"],
        json!({"config.linkerd.io/admin-port": "1234", "linkerd.io/inject": "enabled"})
    );
    assert_eq!(out["spec"]["template"]["spec"], app_spec());

    let origin = Origin::Cli { manual: true, overrides: &overrides };
    let outcome = injector.evaluate(&Request { object: &deployment, kind: None, origin }).unwrap();
    let out = applied(&deployment, &outcome);
    let template = &out["spec"]["template"];
    assert_eq!(template["metadata"]["annotations"]["linkerd.io/created-by"], "linkerd/cli dev-undefined");
    assert!(template["metadata"]["annotations"].get("linkerd.io/inject").is_none());
    assert_eq!(template["metadata"]["labels"]["linkerd.io/proxy-deployment"], "web");
    assert_eq!(template["metadata"]["labels"]["linkerd.io/workload-ns"], "ns");
    assert_eq!(env_value(proxy_of(template), "LINKERD2_PROXY_ADMIN_LISTEN_ADDR"), Some("0.0.0.0:1234"));
}

#[test]
fn cli_refuses_host_network_only_when_it_would_inject() {
    let injector = injector(json!({}));
    let overrides = AnnotationSet::default();
    let origin = Origin::Cli { manual: true, overrides: &overrides };
    let host = pod(json!({}), json!({"hostNetwork": true, "containers": [{"name": "a"}]}));
    let err = injector.evaluate(&Request { object: &host, kind: None, origin }).unwrap_err();
    assert_eq!(err.to_string(), "failed to inject pod/web: hostNetwork is enabled");
    let disabled = pod(
        json!({"linkerd.io/inject": "disabled"}),
        json!({"hostNetwork": true, "containers": [{"name": "a", "ports": [{"containerPort": 53, "protocol": "UDP"}]}]}),
    );
    let outcome = injector.evaluate(&Request { object: &disabled, kind: None, origin }).unwrap();
    assert!(outcome.patch.is_empty() && outcome.udp);
}

#[test]
fn cli_manual_without_trust_anchors_fails_clearly() {
    let injector = Injector::new(ValuesDocument::default(), "linkerd").unwrap();
    let overrides = AnnotationSet::default();
    let origin = Origin::Cli { manual: true, overrides: &overrides };
    let object = pod(json!({}), app_spec());
    assert_eq!(
        injector.evaluate(&Request { object: &object, kind: None, origin }).unwrap_err(),
        InjectError::MissingTrustAnchors
    );
}

#[test]
fn bad_values_are_rejected_up_front() {
    let make = |v: Value| {
        Injector::new(ValuesDocument::from_value(v).unwrap(), "linkerd").map(|_| ()).map_err(|e| e.to_string())
    };
    assert!(make(json!({"clusterNetworks": "10.0.0.0/8,banana"})).unwrap_err().contains("banana"));
    assert!(make(json!({"proxyInit": {"iptablesMode": "ebpf"}})).unwrap_err().contains("ebpf"));
    assert!(make(json!({"proxyInit": {"iptablesMode": ""}})).is_ok());
    assert!(Injector::new(ValuesDocument::default(), "bad ns").is_err());
}

#[test]
fn injected_pods_are_valid_kubernetes_pods_and_reinjection_is_a_no_op() {
    let injector = injector(json!({}));
    let object = pod(json!({"linkerd.io/inject": "enabled"}), app_spec());
    let pod = applied(&object, &webhook(&injector, &object, json!({})));
    let typed: k8s_openapi::api::core::v1::Pod = serde_json::from_value(pod.clone()).unwrap();
    assert_eq!(typed.spec.unwrap().init_containers.unwrap().len(), 2);
    let again = webhook(&injector, &pod, json!({}));
    assert_eq!(again.reasons, [SkipReason::SidecarAlreadyExists]);
}

fn arbitrary_pod() -> impl Strategy<Value = Value> {
    let port = prop_oneof![Just(80u16), Just(3306), Just(11211), 1u16..65535];
    let container = (
        "[a-z]{1,8}",
        prop::collection::vec((port, prop::bool::ANY), 0..4),
        prop::option::of(prop::collection::vec(prop_oneof![Just("NET_ADMIN"), Just("ALL"), Just("SYS_TIME")], 0..3)),
    )
        .prop_map(|(name, ports, caps)| {
            let ports: Vec<Value> = ports
                .into_iter()
                .map(|(p, udp)| json!({"containerPort": p, "protocol": if udp { "UDP" } else { "TCP" }}))
                .collect();
            let mut c = json!({"name": format!("app-{name}"), "image": "img", "ports": ports});
            if let Some(caps) = caps {
                c["securityContext"] = json!({"capabilities": {"drop": caps}});
            }
            c
        });
    let annotation_value = prop_oneof![Just("enabled"), Just("disabled"), Just("ingress"), Just("bogus"), Just("")];
    let config = prop::collection::btree_map(
        prop_oneof![
            Just("config.linkerd.io/admin-port"),
            Just("config.linkerd.io/proxy-cpu-request"),
            Just("config.linkerd.io/opaque-ports"),
            Just("config.linkerd.io/proxy-await"),
            Just("config.linkerd.io/proxy-enable-native-sidecar"),
            Just("config.linkerd.io/enable-debug-sidecar"),
            Just("config.linkerd.io/proxy-log-level"),
        ],
        "[ -~]{0,12}",
        0..4,
    );
    (
        prop::collection::vec(container.clone(), 1..4),
        prop::collection::vec(container, 0..2),
        annotation_value,
        config,
        prop::option::of(prop::bool::ANY),
    )
        .prop_map(|(containers, inits, inject, config, volumes)| {
            let mut annotations = json!({});
            if !inject.is_empty() {
                annotations["linkerd.io/inject"] = json!(inject);
            }
            for (k, v) in config {
                annotations[k] = json!(v);
            }
            let mut spec = json!({"containers": containers});
            if !inits.is_empty() {
                spec["initContainers"] = json!(inits);
            }
            if volumes == Some(true) {
                spec["volumes"] = json!([{"name": "data", "emptyDir": {}}]);
            }
            // An empty `annotations: {}` is not generated: after uninject it cannot be told apart
            // from the map injection created, and is dropped.
            let mut metadata = json!({"name": "p"});
            if annotations.as_object().is_some_and(|a| !a.is_empty()) {
                metadata["annotations"] = annotations;
            }
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn webhook_patches_always_apply_and_produce_valid_pods(object in arbitrary_pod(), ns_enabled in prop::bool::ANY) {
        let injector = injector(json!({}));
        let ns = if ns_enabled { json!({"linkerd.io/inject": "enabled"}) } else { json!({}) };
        let outcome = webhook(&injector, &object, ns.clone());
        let patched = applied(&object, &outcome);
        let typed: Result<k8s_openapi::api::core::v1::Pod, _> = serde_json::from_value(patched.clone());
        prop_assert!(typed.is_ok(), "{:?}", typed.err());
        // Reinvocation on the result changes nothing more than annotations of skipped pods.
        let again = webhook(&injector, &patched, ns);
        prop_assert!(again.action != Action::Injected);
    }

    #[test]
    fn uninject_reverses_cli_injection(object in arbitrary_pod()) {
        let injector = injector(json!({}));
        let mut clean = object.clone();
        uninject::uninject(&mut clean, uninject::Purpose::Uninject);
        let overrides = AnnotationSet::default();
        let origin = Origin::Cli { manual: true, overrides: &overrides };
        if let Ok(outcome) = injector.evaluate(&Request { object: &clean, kind: None, origin }) {
            let mut injected = applied(&clean, &outcome);
            let mut twice = injected.clone();
            uninject::uninject(&mut twice, uninject::Purpose::BeforeInject);
            let again = injector.evaluate(&Request { object: &twice, kind: None, origin }).unwrap();
            prop_assert_eq!(&applied(&twice, &again), &injected);
            uninject::uninject(&mut injected, uninject::Purpose::Uninject);
            prop_assert_eq!(injected, clean);
        }
    }
}

/// Injected objects are written with sorted keys, like the reference, so diffs stay stable.
#[test]
fn injected_objects_have_sorted_keys() {
    fn assert_sorted(value: &Value, path: &str) {
        match value {
            Value::Object(map) => {
                let keys: Vec<&String> = map.keys().collect();
                let mut sorted = keys.clone();
                sorted.sort();
                assert_eq!(keys, sorted, "keys at {path}");
                for (k, v) in map {
                    assert_sorted(v, &format!("{path}/{k}"));
                }
            }
            Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| assert_sorted(v, &format!("{path}/{i}"))),
            _ => {}
        }
    }
    let spec = json!({"containers": [{"name": "app", "securityContext": {"capabilities": {"add": ["A"], "drop": ["B"]}},
        "volumeMounts": [{"name": "sa", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]}]});
    for values in [
        json!({}),
        json!({"proxy": {"nativeSidecar": false}}),
        json!({"cniEnabled": true}),
        injector_values_with_everything(),
    ] {
        let injector = injector(values);
        let annotations = json!({"linkerd.io/inject": "enabled", "config.linkerd.io/enable-debug-sidecar": "true",
            "config.linkerd.io/proxy-cpu-limit": "1", "config.linkerd.io/proxy-memory-request": "1Mi",
            "config.alpha.linkerd.io/proxy-wait-before-exit-seconds": "3", "config.linkerd.io/proxy-gid": "7"});
        let object = pod(annotations, spec.clone());
        for op in webhook(&injector, &object, json!({})).patch.operations() {
            assert_sorted(&op.value.to_value(), &op.path);
            // Text the engine writes is exactly what serde_json would write for it: the
            // fingerprint digests these bytes.
            assert_eq!(op.value.text(), op.value.to_value().to_string(), "{}", op.path);
        }
    }
}

fn injector_values_with_everything() -> Value {
    json!({"proxy": {"nativeSidecar": false, "await": false, "tracing": {"enabled": true, "collector": {"endpoint": "c:1",
        "meshIdentity": {"serviceAccountName": "s", "namespace": "n"}}}}, "proxyInit": {"runAsRoot": true}})
}

#[test]
fn proxy_init_can_run_this_implementation() {
    let injector =
        injector(json!({"proxyInit": {"image": {"name": "registry.example/proxy-injector", "version": "v1"}}}));
    let object = pod(json!({"linkerd.io/inject": "enabled"}), app_spec());
    let pod = applied(&object, &webhook(&injector, &object, json!({})));
    let init = &pod["spec"]["initContainers"][0];
    assert_eq!(init["image"], "registry.example/proxy-injector:v1");
    assert_eq!(init["command"], json!(["/usr/local/bin/proxy-injector", "proxy-init"]));
    assert_eq!(init["args"][0], "--firewall-bin-path", "the same arguments as the reference's init container");
    let default = injector_default_init();
    assert_eq!(default["command"], json!(["/usr/lib/linkerd/linkerd2-proxy-init"]));
}

fn injector_default_init() -> Value {
    let injector = injector(json!({}));
    let object = pod(json!({"linkerd.io/inject": "enabled"}), app_spec());
    applied(&object, &webhook(&injector, &object, json!({})))["spec"]["initContainers"][0].clone()
}

/// Every configuration annotation of §4: a valid value changes the proxy, an invalid one keeps
/// the default and produces exactly one warning naming the annotation.
#[test]
fn every_configuration_annotation_is_parsed_and_validated() {
    let init_arg = |pod: &Value, flag: &str| {
        let args = pod["spec"]["initContainers"][0]["args"].as_array().unwrap().clone();
        let at = args.iter().position(|a| a == flag)?;
        args.get(at + 1).and_then(|v| v.as_str().map(str::to_string))
    };
    let env = |name: &'static str| move |pod: &Value| env_value(proxy_of(pod), name).unwrap_or("<absent>").to_string();
    type Check = Box<dyn Fn(&Value) -> String>;
    let cases: Vec<(&str, &str, Option<&str>, Check, &str)> = vec![
        (
            "config.linkerd.io/proxy-image",
            "my/proxy",
            None,
            Box::new(|p: &Value| proxy_of(p)["image"].as_str().unwrap().to_string()),
            "my/proxy:edge-26.8.2",
        ),
        (
            "config.linkerd.io/proxy-version",
            "v9",
            None,
            Box::new(|p: &Value| proxy_of(p)["image"].as_str().unwrap().to_string()),
            "cr.l5d.io/linkerd/proxy:v9",
        ),
        (
            "config.linkerd.io/image-pull-policy",
            "Never",
            Some("Sometimes"),
            Box::new(|p: &Value| proxy_of(p)["imagePullPolicy"].as_str().unwrap().to_string()),
            "Never",
        ),
        (
            "config.linkerd.io/control-port",
            "5190",
            Some("x"),
            Box::new(env("LINKERD2_PROXY_CONTROL_LISTEN_ADDR")),
            "0.0.0.0:5190",
        ),
        (
            "config.linkerd.io/admin-port",
            "5191",
            Some("0"),
            Box::new(env("LINKERD2_PROXY_ADMIN_LISTEN_ADDR")),
            "0.0.0.0:5191",
        ),
        (
            "config.linkerd.io/inbound-port",
            "5143",
            Some("-1"),
            Box::new(env("LINKERD2_PROXY_INBOUND_LISTEN_ADDR")),
            "0.0.0.0:5143",
        ),
        (
            "config.linkerd.io/outbound-port",
            "5140",
            Some("65536"),
            Box::new(env("LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR")),
            "127.0.0.1:5140",
        ),
        (
            "config.linkerd.io/skip-inbound-ports",
            "22",
            Some("ssh"),
            Box::new(move |p: &Value| init_arg(p, "--inbound-ports-to-ignore").unwrap()),
            "4190,4191,22",
        ),
        (
            "config.linkerd.io/skip-outbound-ports",
            "22,100-200",
            Some("100-"),
            Box::new(move |p: &Value| init_arg(p, "--outbound-ports-to-ignore").unwrap()),
            "22,100-200",
        ),
        (
            "config.linkerd.io/skip-subnets",
            "10.9.0.0/16",
            Some("10.9.0.0"),
            Box::new(move |p: &Value| init_arg(p, "--subnets-to-ignore").unwrap_or_default()),
            "10.9.0.0/16",
        ),
        (
            "config.linkerd.io/opaque-ports",
            "80",
            None,
            Box::new(env("LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION")),
            "80",
        ),
        ("config.linkerd.io/proxy-cpu-request", "2", Some("two"), Box::new(env("LINKERD2_PROXY_CORES")), "2"),
        ("config.linkerd.io/proxy-cpu-limit", "3", Some("3 cores"), Box::new(env("LINKERD2_PROXY_CORES_MAX")), "3"),
        (
            "config.linkerd.io/proxy-cpu-ratio-limit",
            "0.25",
            Some("0"),
            Box::new(env("LINKERD2_PROXY_CORES_MAX_RATIO")),
            "0.25",
        ),
        (
            "config.linkerd.io/proxy-memory-request",
            "64Mi",
            Some("64MB"),
            Box::new(|p: &Value| proxy_of(p)["resources"]["requests"]["memory"].to_string()),
            "\"64Mi\"",
        ),
        (
            "config.linkerd.io/proxy-memory-limit",
            "1Gi",
            Some("lots"),
            Box::new(|p: &Value| proxy_of(p)["resources"]["limits"]["memory"].to_string()),
            "\"1Gi\"",
        ),
        (
            "config.linkerd.io/proxy-ephemeral-storage-request",
            "1Gi",
            Some("-1Gi"),
            Box::new(|p: &Value| proxy_of(p)["resources"]["requests"]["ephemeral-storage"].to_string()),
            "\"1Gi\"",
        ),
        (
            "config.linkerd.io/proxy-ephemeral-storage-limit",
            "2Gi",
            Some("2 Gi"),
            Box::new(|p: &Value| proxy_of(p)["resources"]["limits"]["ephemeral-storage"].to_string()),
            "\"2Gi\"",
        ),
        (
            "config.linkerd.io/proxy-uid",
            "1000",
            Some("root"),
            Box::new(|p: &Value| proxy_of(p)["securityContext"]["runAsUser"].to_string()),
            "1000",
        ),
        (
            "config.linkerd.io/proxy-gid",
            "1000",
            Some("wheel"),
            Box::new(|p: &Value| proxy_of(p)["securityContext"]["runAsGroup"].to_string()),
            "1000",
        ),
        (
            "config.linkerd.io/proxy-log-level",
            "debug",
            Some(" "),
            Box::new(env("LINKERD2_PROXY_LOG")),
            "debug,[{headers}]=off,[{request}]=off",
        ),
        (
            "config.linkerd.io/proxy-log-format",
            "json",
            Some("yaml"),
            Box::new(env("LINKERD2_PROXY_LOG_FORMAT")),
            "json",
        ),
        (
            "config.linkerd.io/proxy-log-http-headers",
            "insecure",
            Some("on"),
            Box::new(env("LINKERD2_PROXY_LOG")),
            "warn,linkerd=info,hickory=error",
        ),
        (
            "config.linkerd.io/proxy-admin-shutdown",
            "enabled",
            Some("true"),
            Box::new(env("LINKERD2_PROXY_SHUTDOWN_ENDPOINT_ENABLED")),
            "true",
        ),
        (
            "config.linkerd.io/enable-external-profiles",
            "T",
            Some("yes"),
            Box::new(env("LINKERD2_PROXY_DESTINATION_PROFILE_SUFFIXES")),
            ".",
        ),
        (
            "config.linkerd.io/proxy-require-identity-inbound-ports",
            "8080",
            Some("http"),
            Box::new(env("LINKERD2_PROXY_INBOUND_PORTS_REQUIRE_IDENTITY")),
            "8080",
        ),
        (
            "config.linkerd.io/proxy-metrics-hostname-labels",
            "1",
            Some("2"),
            Box::new(env("LINKERD2_PROXY_OUTBOUND_METRICS_HOSTNAME_LABELS")),
            "true",
        ),
        (
            "config.linkerd.io/proxy-outbound-connect-timeout",
            "2s",
            Some("2"),
            Box::new(env("LINKERD2_PROXY_OUTBOUND_CONNECT_TIMEOUT")),
            "2000ms",
        ),
        (
            "config.linkerd.io/proxy-inbound-connect-timeout",
            "250ms",
            Some("-1s"),
            Box::new(env("LINKERD2_PROXY_INBOUND_CONNECT_TIMEOUT")),
            "250ms",
        ),
        (
            "config.linkerd.io/proxy-outbound-discovery-cache-unused-timeout",
            "1m",
            Some("1 minute"),
            Box::new(env("LINKERD2_PROXY_OUTBOUND_DISCOVERY_IDLE_TIMEOUT")),
            "60s",
        ),
        (
            "config.linkerd.io/proxy-inbound-discovery-cache-unused-timeout",
            "1500ms",
            Some("m"),
            Box::new(env("LINKERD2_PROXY_INBOUND_DISCOVERY_IDLE_TIMEOUT")),
            "1s",
        ),
        (
            "config.linkerd.io/proxy-disable-outbound-protocol-detect-timeout",
            "true",
            Some("maybe"),
            Box::new(env("LINKERD2_PROXY_OUTBOUND_DETECT_TIMEOUT")),
            "365d",
        ),
        (
            "config.linkerd.io/proxy-disable-inbound-protocol-detect-timeout",
            "TRUE",
            Some("Y"),
            Box::new(env("LINKERD2_PROXY_INBOUND_DETECT_TIMEOUT")),
            "365d",
        ),
        (
            "config.linkerd.io/shutdown-grace-period",
            "45s",
            Some("45"),
            Box::new(env("LINKERD2_PROXY_SHUTDOWN_GRACE_PERIOD")),
            "45000ms",
        ),
        (
            "config.linkerd.io/default-inbound-policy",
            "audit",
            Some("open"),
            Box::new(env("LINKERD2_PROXY_INBOUND_DEFAULT_POLICY")),
            "audit",
        ),
        ("config.linkerd.io/access-log", "apache", Some("nginx"), Box::new(env("LINKERD2_PROXY_ACCESS_LOG")), "apache"),
        (
            "config.linkerd.io/proxy-await",
            "disabled",
            Some("off"),
            Box::new(|p: &Value| proxy_of(p).get("startupProbe").is_some().to_string()),
            "false",
        ),
        (
            "config.linkerd.io/enable-gateway",
            "true",
            Some("gateway"),
            Box::new(env("LINKERD2_PROXY_INBOUND_GATEWAY_SUFFIXES")),
            "svc.cluster.local.",
        ),
        (
            "config.linkerd.io/proxy-enable-native-sidecar",
            "false",
            Some("no"),
            Box::new(|p: &Value| proxy_of(p).get("restartPolicy").is_some().to_string()),
            "false",
        ),
        (
            "config.linkerd.io/enable-debug-sidecar",
            "true",
            Some("please"),
            Box::new(|p: &Value| p["spec"]["containers"].as_array().unwrap().len().to_string()),
            "2",
        ),
        (
            "config.linkerd.io/debug-image",
            "my/debug",
            None,
            Box::new(|_: &Value| "checked below".to_string()),
            "checked below",
        ),
        (
            "config.linkerd.io/proxy-additional-env",
            "[{\"name\":\"X\",\"value\":\"1\"}]",
            Some("{"),
            Box::new(env("X")),
            "1",
        ),
        (
            "config.alpha.linkerd.io/proxy-wait-before-exit-seconds",
            "7",
            Some("7s"),
            Box::new(|_: &Value| "native: no preStop".to_string()),
            "native: no preStop",
        ),
    ];
    let injector = injector(json!({}));
    for (key, valid, invalid, check, expected) in &cases {
        let object = pod(json!({"linkerd.io/inject": "enabled", *key: valid}), app_spec());
        let outcome = webhook(&injector, &object, json!({}));
        assert!(outcome.warnings.is_empty(), "{key}={valid}: {:?}", outcome.warnings);
        assert_eq!(&check(&applied(&object, &outcome)), expected, "{key}={valid}");
        if let Some(invalid) = invalid {
            let object = pod(json!({"linkerd.io/inject": "enabled", *key: invalid}), app_spec());
            let outcome = webhook(&injector, &object, json!({}));
            assert_eq!(outcome.warnings.len(), 1, "{key}={invalid}: {:?}", outcome.warnings);
            assert_eq!(outcome.warnings[0].key, *key);
            assert!(outcome.warnings[0].message.contains(&format!("{invalid:?}")), "{}", outcome.warnings[0]);
            let default_pod = applied(&object, &outcome);
            let baseline = pod(json!({"linkerd.io/inject": "enabled"}), app_spec());
            let baseline = applied(&baseline, &webhook(&injector, &baseline, json!({})));
            assert_eq!(check(&default_pod), check(&baseline), "{key}={invalid} keeps the default");
        }
    }
    let debug = pod(
        json!({"linkerd.io/inject": "enabled", "config.linkerd.io/enable-debug-sidecar": "true",
        "config.linkerd.io/debug-image": "my/debug", "config.linkerd.io/debug-image-version": "v2",
        "config.linkerd.io/debug-image-pull-policy": "Always"}),
        app_spec(),
    );
    let out = applied(&debug, &webhook(&injector, &debug, json!({})));
    let debug_container = &out["spec"]["containers"][1];
    assert_eq!(
        (debug_container["image"].as_str(), debug_container["imagePullPolicy"].as_str()),
        (Some("my/debug:v2"), Some("Always"))
    );
}

/// Every kind with a pod template is injected at its template, with its owner label (CLI).
#[test]
fn every_template_kind_is_injected_at_its_template() {
    let injector = injector(json!({}));
    let template = json!({"metadata": {"labels": {"app": "x"}}, "spec": app_spec()});
    let kinds = [
        ("Deployment", json!({"template": template}), "/spec/template", Some("linkerd.io/proxy-deployment")),
        ("StatefulSet", json!({"template": template}), "/spec/template", Some("linkerd.io/proxy-statefulset")),
        ("DaemonSet", json!({"template": template}), "/spec/template", Some("linkerd.io/proxy-daemonset")),
        ("ReplicaSet", json!({"template": template}), "/spec/template", Some("linkerd.io/proxy-replicaset")),
        (
            "ReplicationController",
            json!({"template": template}),
            "/spec/template",
            Some("linkerd.io/proxy-replicationcontroller"),
        ),
        ("Job", json!({"template": template}), "/spec/template", Some("linkerd.io/proxy-job")),
        (
            "CronJob",
            json!({"jobTemplate": {"spec": {"template": {"spec": app_spec()}}}}),
            "/spec/jobTemplate/spec/template",
            Some("linkerd.io/proxy-cronjob"),
        ),
        ("Pod", app_spec(), "", None),
    ];
    let overrides = AnnotationSet::default();
    for (kind, spec, at, owner_label) in kinds {
        let object =
            json!({"apiVersion": "x/v1", "kind": kind, "metadata": {"name": "w", "namespace": "n"}, "spec": spec});
        let origin = Origin::Cli { manual: true, overrides: &overrides };
        let outcome = injector.evaluate(&Request { object: &object, kind: None, origin }).unwrap();
        assert!(outcome.injectable, "{kind}");
        let out = applied(&object, &outcome);
        let pod = out.pointer(at).unwrap();
        assert!(proxy_of(pod)["name"] == "linkerd-proxy", "{kind}");
        let labels = pod["metadata"]["labels"].as_object().unwrap();
        match owner_label {
            Some(label) => assert_eq!(labels[label], "w", "{kind}"),
            None => assert!(labels.keys().all(|k| !k.starts_with("linkerd.io/proxy-")), "{kind}"),
        }
        assert_eq!(labels["linkerd.io/workload-ns"], "n");
    }
    for kind in ["Service", "Namespace", "ConfigMap", "MyCustomResource"] {
        let object = json!({"kind": kind, "metadata": {"name": "x"}});
        let origin = Origin::Cli { manual: true, overrides: &overrides };
        let outcome = injector.evaluate(&Request { object: &object, kind: None, origin }).unwrap();
        assert!(!outcome.injectable && outcome.reasons == [SkipReason::UnsupportedResource], "{kind}");
    }
}

/// Fingerprints pinned for three configurations. Every injected pod carries one, and a pod whose
/// fingerprint differs from what injection gives today is stale: a change here makes the
/// reconciler restart every meshed workload after an upgrade. Change them only with the rendering,
/// on purpose, never as a side effect of how the patch is written.
#[test]
fn fingerprints_change_only_with_what_injection_adds() {
    let spec = json!({"containers": [{"name": "web", "image": "web:v1", "ports": [{"containerPort": 80, "name": "http"}],
        "securityContext": {"capabilities": {"add": ["SYS_TIME"], "drop": ["ALL"]}}}]});
    let object = pod(json!({"linkerd.io/inject": "enabled", "config.linkerd.io/proxy-cpu-limit": "1"}), spec);
    let pinned = [
        (json!({}), "b134160c883e51be6798b722f28a2204"),
        (json!({"cniEnabled": true, "proxy": {"nativeSidecar": false}}), "62016b8e534667888f0d1edde0a73c61"),
        (injector_values_with_everything(), "549cde4b1bed1e4cb9cea4d96eb1b1ee"),
    ];
    for (values, fingerprint) in pinned {
        let outcome = webhook(&injector(values.clone()), &object, json!({}));
        assert_eq!(outcome.fingerprint.as_deref(), Some(fingerprint), "{values}");
    }
}
