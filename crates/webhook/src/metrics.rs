//! Prometheus metrics: the reference's admission counters (§3.7), plus what it lacks: latency by
//! outcome, requests in flight, rejections, certificate expiry and configuration reloads.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Label names are static, so a label set costs one allocation per non-empty value.
pub type Labels = Vec<(&'static str, String)>;

/// Sub-millisecond resolution where admissions live, up to the apiserver's 30 s ceiling.
const LATENCY_BUCKETS: [f64; 17] =
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<Labels, Counter>,
    pub responses: Family<Labels, Counter>,
    pub duration: Family<Labels, Histogram, fn() -> Histogram>,
    pub in_flight: Gauge,
    pub rejected: Family<Labels, Counter>,
    pub certificate_expiry: Gauge,
    pub reloads: Family<Labels, Counter>,
    pub reload_failures: Family<Labels, Counter>,
    pub events_not_recorded: Family<Labels, Counter>,
    pub advice: Family<Labels, Counter>,
    pub policy_violations: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "proxy_inject_admission_requests",
            "A count of the number of injection requests",
            requests.clone(),
        );
        let responses = Family::<Labels, Counter>::default();
        registry.register(
            "proxy_inject_admission_responses",
            "A count of the number of injection responses",
            responses.clone(),
        );
        let duration = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register(
            "proxy_injector_admission_duration_seconds",
            "Time to answer an AdmissionReview, by outcome (inject, skip, error)",
            duration.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "proxy_injector_requests_in_flight",
            "AdmissionReview requests being answered",
            in_flight.clone(),
        );
        let rejected = Family::<Labels, Counter>::default();
        registry.register(
            "proxy_injector_requests_rejected",
            "Requests refused before injection, by reason (overload, body_too_large, bad_request, deadline)",
            rejected.clone(),
        );
        let certificate_expiry = Gauge::default();
        registry.register(
            "proxy_injector_certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate, in seconds since the epoch",
            certificate_expiry.clone(),
        );
        let reloads = Family::<Labels, Counter>::default();
        registry.register("proxy_injector_config_reloads", "Successful reloads, by source", reloads.clone());
        let reload_failures = Family::<Labels, Counter>::default();
        registry.register(
            "proxy_injector_config_reload_failures",
            "Rejected reloads (the previous version stays in use), by source",
            reload_failures.clone(),
        );
        let events_not_recorded = Family::<Labels, Counter>::default();
        registry.register(
            "proxy_injector_events_not_recorded",
            "Kubernetes Events not recorded, by reason (duplicate within a minute, queue_full, api_error)",
            events_not_recorded.clone(),
        );
        let advice = Family::<Labels, Counter>::default();
        registry.register(
            "proxy_injector_advice",
            "Workloads, namespaces and Services reviewed at apply time, by kind, operation and whether warned",
            advice.clone(),
        );
        let policy_violations = Family::<Labels, Counter>::default();
        registry.register(
            "proxy_injector_policy_violations",
            "Governance rules broken, by rule, mode (audit, enforce) and kind (pods admitted or denied; workloads warned)",
            policy_violations.clone(),
        );
        Metrics {
            registry,
            advice,
            policy_violations,
            requests,
            responses,
            duration,
            in_flight,
            rejected,
            certificate_expiry,
            reloads,
            reload_failures,
            events_not_recorded,
        }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }

    pub fn reject(&self, reason: &str) {
        self.rejected.get_or_create(&vec![("reason", reason.into())]).inc();
    }

    pub fn event_not_recorded(&self, reason: &str) {
        self.events_not_recorded.get_or_create(&vec![("reason", reason.into())]).inc();
    }

    pub fn advised(&self, kind: &str, operation: &str, warned: bool) {
        let labels =
            vec![("kind", kind.to_ascii_lowercase()), ("operation", operation.into()), ("warned", warned.to_string())];
        self.advice.get_or_create(&labels).inc();
    }

    pub fn violated(&self, violation: &governance::Violation, kind: &str) {
        let labels = vec![
            ("rule", violation.rule.as_str().into()),
            ("mode", violation.mode.as_str().into()),
            ("kind", kind.to_ascii_lowercase()),
        ];
        self.policy_violations.get_or_create(&labels).inc();
    }

    pub fn reloaded(&self, source: &str, ok: bool) {
        let family = if ok { &self.reloads } else { &self.reload_failures };
        family.get_or_create(&vec![("source", source.into())]).inc();
    }
}

/// The reference's per-annotation label names: the key after its first `/`, `-` → `_`.
static ANNOTATION_LABEL_NAMES: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    inject::annotation::METRIC_LABELLED
        .iter()
        .map(|key| key.split_once('/').map_or(*key, |(_, rest)| rest).replace('-', "_"))
        .collect()
});

/// One label per configuration annotation, valued as the pod itself sets it (`""` if not).
pub fn annotation_labels(annotations: Option<&serde_json::Map<String, serde_json::Value>>) -> Labels {
    inject::annotation::METRIC_LABELLED
        .iter()
        .zip(ANNOTATION_LABEL_NAMES.iter())
        .map(|(key, label)| {
            let value = annotations.and_then(|a| a.get(*key)).and_then(|v| v.as_str()).unwrap_or("");
            (label.as_str(), value.to_string())
        })
        .collect()
}
