//! Whether a workload is injected, and why not (§2.5, §2.7).

use serde::Serialize;

/// Why a workload is not injected, in the order the reference evaluates them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    HostNetworkEnabled,
    SidecarAlreadyExists,
    UnsupportedResource,
    InjectionEnableAnnotationAbsent,
    InjectionDisableAnnotationPresent,
    InvalidInjectAnnotationAtWorkload,
    InvalidInjectAnnotationAtNs,
    DisabledAutomountServiceAccountTokenAccount,
}

impl SkipReason {
    pub fn code(self) -> &'static str {
        match self {
            SkipReason::HostNetworkEnabled => "host_network_enabled",
            SkipReason::SidecarAlreadyExists => "sidecar_already_exists",
            SkipReason::UnsupportedResource => "unsupported_resource",
            SkipReason::InjectionEnableAnnotationAbsent => "injection_enable_annotation_absent",
            SkipReason::InjectionDisableAnnotationPresent => "injection_disable_annotation_present",
            SkipReason::InvalidInjectAnnotationAtWorkload => "invalid_inject_annotation_at_workload",
            SkipReason::InvalidInjectAnnotationAtNs => "invalid_inject_annotation_at_ns",
            SkipReason::DisabledAutomountServiceAccountTokenAccount => {
                "disabled_automount_service_account_token_account"
            }
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            SkipReason::HostNetworkEnabled => "hostNetwork is enabled",
            SkipReason::SidecarAlreadyExists => "pod has a sidecar injected already",
            SkipReason::UnsupportedResource => "this resource kind is unsupported",
            SkipReason::InjectionEnableAnnotationAbsent => {
                "neither the namespace nor the pod have the annotation \"linkerd.io/inject:enabled\""
            }
            SkipReason::InjectionDisableAnnotationPresent => "pod has the annotation \"linkerd.io/inject:disabled\"",
            SkipReason::InvalidInjectAnnotationAtWorkload => {
                "invalid value for annotation \"linkerd.io/inject\" at workload"
            }
            SkipReason::InvalidInjectAnnotationAtNs => {
                "invalid value for annotation \"linkerd.io/inject\" at namespace"
            }
            SkipReason::DisabledAutomountServiceAccountTokenAccount => {
                "automountServiceAccountToken set to \"false\", with Values.identity.serviceAccountTokenProjection set to \"false\""
            }
        }
    }

    /// The reasons that are an error for `inject` on the command line when they are the only
    /// thing that stops injection (§7.1 step 6, §10 row 10).
    pub fn is_cli_error(self) -> bool {
        matches!(
            self,
            SkipReason::HostNetworkEnabled
                | SkipReason::SidecarAlreadyExists
                | SkipReason::DisabledAutomountServiceAccountTokenAccount
        )
    }
}

/// Where the deciding `linkerd.io/inject` annotation was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AnnotationAt {
    #[default]
    None,
    Namespace,
    Workload,
}

impl AnnotationAt {
    pub fn as_str(self) -> &'static str {
        match self {
            AnnotationAt::None => "",
            AnnotationAt::Namespace => "namespace",
            AnnotationAt::Workload => "workload",
        }
    }
}

/// The outcome of evaluating `linkerd.io/inject`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct InjectAnnotation {
    pub at: AnnotationAt,
    /// `enabled` or `ingress` when injecting.
    pub value: String,
    pub skip: Option<SkipReason>,
}

/// The values `linkerd.io/inject` accepts.
pub const INJECT_VALUES: [&str; 3] = ["enabled", "disabled", "ingress"];

/// The webhook's evaluation (§2.5): namespace value `ns`, pod value `pod`, `""` when absent.
pub fn evaluate_webhook(ns: &str, pod: &str) -> InjectAnnotation {
    let skip = |reason, at| InjectAnnotation { at, value: String::new(), skip: Some(reason) };
    if !ns.is_empty() && !INJECT_VALUES.contains(&ns) {
        return skip(SkipReason::InvalidInjectAnnotationAtNs, AnnotationAt::None);
    }
    if !pod.is_empty() && !INJECT_VALUES.contains(&pod) {
        return skip(SkipReason::InvalidInjectAnnotationAtWorkload, AnnotationAt::None);
    }
    if ns == "enabled" || ns == "ingress" {
        if pod == "disabled" {
            return skip(SkipReason::InjectionDisableAnnotationPresent, AnnotationAt::Workload);
        }
        return InjectAnnotation { at: AnnotationAt::Namespace, value: ns.to_string(), skip: None };
    }
    if pod != "enabled" && pod != "ingress" {
        return skip(SkipReason::InjectionEnableAnnotationAbsent, AnnotationAt::None);
    }
    InjectAnnotation { at: AnnotationAt::Workload, value: pod.to_string(), skip: None }
}

/// The command line's evaluation: only an explicit `disabled` stops injection.
pub fn evaluate_cli(pod: &str) -> InjectAnnotation {
    if pod == "disabled" {
        return InjectAnnotation {
            at: AnnotationAt::Workload,
            value: String::new(),
            skip: Some(SkipReason::InjectionDisableAnnotationPresent),
        };
    }
    let value = if pod == "ingress" { "ingress" } else { "enabled" };
    InjectAnnotation { at: AnnotationAt::Workload, value: value.into(), skip: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_truth_table() {
        let cases = [
            ("enabled", "enabled", true),
            ("enabled", "", true),
            ("enabled", "disabled", false),
            ("disabled", "enabled", true),
            ("", "enabled", true),
            ("disabled", "disabled", false),
            ("", "disabled", false),
            ("disabled", "", false),
            ("", "", false),
            ("ingress", "", true),
            ("", "ingress", true),
        ];
        for (ns, pod, injected) in cases {
            assert_eq!(evaluate_webhook(ns, pod).skip.is_none(), injected, "ns={ns:?} pod={pod:?}");
        }
    }

    #[test]
    fn webhook_reasons_and_location() {
        assert_eq!(evaluate_webhook("yes", "enabled").skip, Some(SkipReason::InvalidInjectAnnotationAtNs));
        assert_eq!(evaluate_webhook("enabled", "on").skip, Some(SkipReason::InvalidInjectAnnotationAtWorkload));
        assert_eq!(evaluate_webhook("", "").skip, Some(SkipReason::InjectionEnableAnnotationAbsent));
        let disabled = evaluate_webhook("enabled", "disabled");
        assert_eq!(
            (disabled.skip, disabled.at),
            (Some(SkipReason::InjectionDisableAnnotationPresent), AnnotationAt::Workload)
        );
        let ns = evaluate_webhook("ingress", "enabled");
        assert_eq!((ns.at, ns.value.as_str()), (AnnotationAt::Namespace, "ingress"));
        let pod = evaluate_webhook("disabled", "enabled");
        assert_eq!((pod.at, pod.value.as_str()), (AnnotationAt::Workload, "enabled"));
    }

    #[test]
    fn cli_only_honours_disabled() {
        assert!(evaluate_cli("").skip.is_none());
        assert!(evaluate_cli("bogus").skip.is_none());
        assert_eq!(evaluate_cli("ingress").value, "ingress");
        assert_eq!(evaluate_cli("disabled").skip, Some(SkipReason::InjectionDisableAnnotationPresent));
    }
}
