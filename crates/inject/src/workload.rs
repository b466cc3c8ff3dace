//! A read-only view of a Kubernetes object: its kind, where its pod template lives, and the few
//! fields of the pod spec that injection reads. Nothing is deserialized beyond what is looked at.

use crate::fields::Fields;
use serde_json::{Map, Value};

/// The kinds injection knows (§2.1). Matching is case-insensitive and ignores `apiVersion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Pod,
    Deployment,
    ReplicationController,
    ReplicaSet,
    Job,
    DaemonSet,
    StatefulSet,
    CronJob,
    Namespace,
    Service,
}

impl Kind {
    pub fn parse(kind: &str) -> Option<Kind> {
        const ALL: [Kind; 10] = [
            Kind::Pod,
            Kind::Deployment,
            Kind::ReplicationController,
            Kind::ReplicaSet,
            Kind::Job,
            Kind::DaemonSet,
            Kind::StatefulSet,
            Kind::CronJob,
            Kind::Namespace,
            Kind::Service,
        ];
        ALL.into_iter().find(|k| k.as_str().eq_ignore_ascii_case(kind))
    }

    /// Lower-case name, as reports, labels and metrics spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pod => "pod",
            Kind::Deployment => "deployment",
            Kind::ReplicationController => "replicationcontroller",
            Kind::ReplicaSet => "replicaset",
            Kind::Job => "job",
            Kind::DaemonSet => "daemonset",
            Kind::StatefulSet => "statefulset",
            Kind::CronJob => "cronjob",
            Kind::Namespace => "namespace",
            Kind::Service => "service",
        }
    }

    /// JSON pointer of the pod template inside the object; `None` for kinds without one.
    pub fn template_pointer(self) -> Option<&'static str> {
        match self {
            Kind::Pod => Some(""),
            Kind::CronJob => Some("/spec/jobTemplate/spec/template"),
            Kind::Namespace | Kind::Service => None,
            _ => Some("/spec/template"),
        }
    }

    /// The owner label key (`linkerd.io/proxy-<kind>`), for the kinds that get one.
    pub fn owner_label(self) -> Option<&'static str> {
        Some(match self {
            Kind::Deployment => "linkerd.io/proxy-deployment",
            Kind::ReplicationController => "linkerd.io/proxy-replicationcontroller",
            Kind::ReplicaSet => "linkerd.io/proxy-replicaset",
            Kind::Job => "linkerd.io/proxy-job",
            Kind::DaemonSet => "linkerd.io/proxy-daemonset",
            Kind::StatefulSet => "linkerd.io/proxy-statefulset",
            Kind::CronJob => "linkerd.io/proxy-cronjob",
            Kind::Pod | Kind::Namespace | Kind::Service => return None,
        })
    }
}

/// An object with its kind resolved and its pod template located.
#[derive(Debug, Clone, Copy)]
pub struct Workload<'a> {
    pub object: &'a Value,
    pub kind: Option<Kind>,
    /// The `kind` field as written (`""` if absent).
    pub kind_name: &'a str,
    pub template: Option<PodTemplate<'a>>,
}

impl<'a> Workload<'a> {
    /// Views `object`; `kind_override` is the AdmissionRequest's kind, which wins over the body's.
    pub fn new(object: &'a Value, kind_override: Option<&'a str>) -> Self {
        let kind_name = kind_override.or_else(|| object.field("kind").and_then(Value::as_str)).unwrap_or("");
        let kind = Kind::parse(kind_name);
        let template = kind.and_then(Kind::template_pointer).and_then(|pointer| {
            object.pointer(pointer).filter(|t| !t.is_null()).map(|value| PodTemplate { value, pointer })
        });
        Workload { object, kind, kind_name, template }
    }

    pub fn metadata(&self) -> Option<&'a Map<String, Value>> {
        self.object.field("metadata").and_then(Value::as_object)
    }

    /// `metadata.name`, or for pods `generateName` when the name is empty.
    pub fn name(&self) -> &'a str {
        let meta = self.metadata();
        let field = |key| meta.and_then(|m| m.field(key)).and_then(Value::as_str).unwrap_or("");
        match (field("name"), self.kind) {
            ("", Some(Kind::Pod)) => field("generateName"),
            (name, _) => name,
        }
    }

    pub fn namespace(&self) -> &'a str {
        self.metadata().and_then(|m| m.field("namespace")).and_then(Value::as_str).unwrap_or("")
    }

    pub fn annotations(&self) -> Option<&'a Map<String, Value>> {
        self.metadata().and_then(|m| m.field("annotations")).and_then(Value::as_object)
    }

    pub fn labels(&self) -> Option<&'a Map<String, Value>> {
        self.metadata().and_then(|m| m.field("labels")).and_then(Value::as_object)
    }
}

/// A pod template (or a pod): `metadata` and `spec`.
#[derive(Debug, Clone, Copy)]
pub struct PodTemplate<'a> {
    pub value: &'a Value,
    /// JSON pointer of this template inside its object.
    pub pointer: &'static str,
}

/// A container (regular or init) with one of these names or image prefixes is a mesh proxy.
pub const SIDECAR_PROXY_NAMES: &[&str] = &["linkerd-proxy", "istio-proxy"];
pub const SIDECAR_PROXY_IMAGES: &[&str] = &["cr.l5d.io/linkerd/proxy:", "gcr.io/istio-release/proxyv2:"];
/// An init container with one of these names or image prefixes is a mesh's iptables setup.
pub const SIDECAR_INIT_NAMES: &[&str] = &["linkerd-init", "istio-init"];
pub const SIDECAR_INIT_IMAGES: &[&str] = &["cr.l5d.io/linkerd/proxy-init:", "gcr.io/istio-release/proxy_init:"];

pub const SERVICE_ACCOUNT_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

impl<'a> PodTemplate<'a> {
    pub fn metadata(&self) -> Option<&'a Map<String, Value>> {
        self.value.field("metadata").and_then(Value::as_object)
    }

    pub fn annotations(&self) -> Option<&'a Map<String, Value>> {
        self.metadata().and_then(|m| m.field("annotations")).and_then(Value::as_object)
    }

    pub fn annotation(&self, key: &str) -> Option<&'a str> {
        self.annotations().and_then(|a| a.field(key)).and_then(Value::as_str)
    }

    pub fn labels(&self) -> Option<&'a Map<String, Value>> {
        self.metadata().and_then(|m| m.field("labels")).and_then(Value::as_object)
    }

    pub fn spec(&self) -> Option<&'a Map<String, Value>> {
        self.value.field("spec").and_then(Value::as_object)
    }

    fn spec_field(&self, key: &str) -> Option<&'a Value> {
        self.spec().and_then(|s| s.field(key))
    }

    fn list(&self, key: &str) -> &'a [Value] {
        self.spec_field(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn containers(&self) -> &'a [Value] {
        self.list("containers")
    }

    pub fn init_containers(&self) -> &'a [Value] {
        self.list("initContainers")
    }

    pub fn has_volumes(&self) -> bool {
        self.spec_field("volumes").is_some_and(|v| !v.is_null())
    }

    pub fn has_init_containers(&self) -> bool {
        self.spec_field("initContainers").is_some_and(|v| !v.is_null())
    }

    /// Init containers first, then regular ones, in declaration order.
    pub fn all_containers(&self) -> impl Iterator<Item = &'a Value> + use<'a> {
        self.init_containers().iter().chain(self.containers())
    }

    pub fn host_network(&self) -> bool {
        self.spec_field("hostNetwork").and_then(Value::as_bool).unwrap_or(false)
    }

    pub fn automount_service_account_token(&self) -> Option<bool> {
        self.spec_field("automountServiceAccountToken").and_then(Value::as_bool)
    }

    /// Any regular container declares a UDP port (init containers are not checked, §2.2).
    pub fn uses_udp(&self) -> bool {
        self.containers()
            .iter()
            .flat_map(container_ports)
            .any(|p| p.field("protocol").and_then(Value::as_str) == Some("UDP"))
    }

    /// A Linkerd or Istio proxy is already there (§2.3).
    pub fn has_sidecar(&self) -> bool {
        let name_image = |c: &'a Value| {
            (
                c.field("name").and_then(Value::as_str).unwrap_or(""),
                c.field("image").and_then(Value::as_str).unwrap_or(""),
            )
        };
        let is = |names: &[&str], images: &[&str], (name, image): (&str, &str)| {
            names.contains(&name) || images.iter().any(|prefix| image.starts_with(prefix))
        };
        self.all_containers().map(name_image).any(|c| is(SIDECAR_PROXY_NAMES, SIDECAR_PROXY_IMAGES, c))
            || self.init_containers().iter().map(name_image).any(|c| is(SIDECAR_INIT_NAMES, SIDECAR_INIT_IMAGES, c))
    }

    pub fn first_container(&self) -> Option<&'a Value> {
        self.containers().first()
    }

    /// The first container's volume mount at the default service-account token path.
    pub fn service_account_mount(&self) -> Option<&'a Value> {
        self.first_container()?
            .field("volumeMounts")?
            .as_array()?
            .iter()
            .find(|m| m.field("mountPath").and_then(Value::as_str) == Some(SERVICE_ACCOUNT_MOUNT_PATH))
    }

    /// The pod's inbound ports: container ports of every container plus integer HTTP probe ports
    /// of liveness and readiness probes, de-duplicated and sorted as strings (§5.2 item 17).
    pub fn inbound_ports(&self) -> String {
        let mut ports: Vec<String> = Vec::new();
        for container in self.all_containers() {
            for port in container_ports(container) {
                if let Some(number) = port.field("containerPort").and_then(Value::as_i64) {
                    ports.push(number.to_string());
                }
            }
            for probe in ["livenessProbe", "readinessProbe"] {
                if let Some(number) = container
                    .field(probe)
                    .and_then(|p| p.field("httpGet"))
                    .and_then(|g| g.field("port"))
                    .and_then(Value::as_i64)
                {
                    ports.push(number.to_string());
                }
            }
        }
        ports.sort();
        ports.dedup();
        ports.join(",")
    }

    /// Resolves a container port name (init containers first) to its number.
    pub fn named_port(&self, name: &str) -> Option<u16> {
        self.all_containers()
            .flat_map(container_ports)
            .find(|p| p.field("name").and_then(Value::as_str) == Some(name))
            .and_then(|p| p.field("containerPort").and_then(Value::as_u64))
            .and_then(|n| u16::try_from(n).ok())
    }

    /// Every declared container port number, init containers first, in declaration order.
    pub fn container_port_numbers(self) -> impl Iterator<Item = u16> + 'a {
        self.all_containers()
            .flat_map(container_ports)
            .filter_map(|p| p.field("containerPort").and_then(Value::as_u64))
            .filter_map(|n| u16::try_from(n).ok())
    }
}

fn container_ports(container: &Value) -> &[Value] {
    container.field("ports").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_are_case_insensitive_and_locate_templates() {
        assert_eq!(Kind::parse("deployment"), Some(Kind::Deployment));
        assert_eq!(Kind::parse("CronJob"), Some(Kind::CronJob));
        assert_eq!(Kind::parse("ConfigMap"), None);
        let cron = json!({"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {}}}}}});
        assert_eq!(Workload::new(&cron, None).template.unwrap().pointer, "/spec/jobTemplate/spec/template");
        let svc = json!({"kind": "Service", "metadata": {"name": "s"}});
        assert!(Workload::new(&svc, None).template.is_none());
    }

    #[test]
    fn pod_name_falls_back_to_generate_name() {
        let pod = json!({"kind": "Pod", "metadata": {"generateName": "web-"}});
        assert_eq!(Workload::new(&pod, None).name(), "web-");
    }

    #[test]
    fn inbound_ports_are_sorted_as_strings() {
        let pod = json!({"kind": "Pod", "spec": {
            "initContainers": [{"name": "i", "ports": [{"containerPort": 11211}]}],
            "containers": [{"name": "a", "ports": [{"containerPort": 80}, {"containerPort": 9090, "name": "metrics"}],
                "livenessProbe": {"httpGet": {"port": 9090}}, "readinessProbe": {"httpGet": {"port": "metrics"}},
                "startupProbe": {"httpGet": {"port": 7000}}}]}});
        let template = Workload::new(&pod, None).template.unwrap();
        assert_eq!(template.inbound_ports(), "11211,80,9090");
        assert_eq!(template.named_port("metrics"), Some(9090));
    }

    #[test]
    fn sidecars_are_detected_by_name_and_image() {
        let check =
            |spec: Value| Workload::new(&json!({"kind": "Pod", "spec": spec}), None).template.unwrap().has_sidecar();
        assert!(check(json!({"containers": [{"name": "istio-proxy"}]})));
        assert!(check(json!({"containers": [{"name": "x", "image": "cr.l5d.io/linkerd/proxy:v1"}]})));
        assert!(check(json!({"initContainers": [{"name": "istio-init"}], "containers": []})));
        assert!(!check(json!({"containers": [{"name": "istio-init"}]})));
        assert!(!check(json!({"containers": [{"name": "app", "image": "nginx"}]})));
    }
}
