//! Keeps the MutatingAdmissionPolicy compiled from the configuration this webhook serves: after
//! a `linkerd upgrade` changes linkerd-config, the policy changes with the webhook, instead of
//! injecting the old proxy until someone re-runs `install`. A configuration the policy cannot
//! express removes the policy, so the webhook injects every pod rather than the policy a stale one.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use crate::metrics::Metrics;
use crate::registration;
use crate::reload::Loaded;

const FIELD_MANAGER: &str = "proxy-injector-webhook";

/// Which policy the webhook keeps, and where it applies.
#[derive(Debug, Clone)]
pub struct PolicySync {
    pub name: String,
    /// Only namespaces with this label get the policy (a staged rollout); the rest stay the
    /// webhook's.
    pub namespace_label: Option<(String, String)>,
    /// No webhook is registered for the pods the policy leaves: the policy fails as this says
    /// (`Fail` or `Ignore`), and a warning policy names the pods it leaves. Otherwise the policy
    /// fails open to the webhook.
    pub alone: Option<&'static str>,
}

impl PolicySync {
    fn options(&self, control_plane_ns: &str) -> admission_policy::Options {
        let mut namespace_selector = registration::namespace_selector();
        if let (Some((key, value)), Some(expressions)) =
            (&self.namespace_label, namespace_selector["matchExpressions"].as_array_mut())
        {
            expressions.push(json!({"key": key, "operator": "In", "values": [value]}));
        }
        admission_policy::Options {
            name: self.name.clone(),
            // With the webhook registered, it takes whatever the policy fails on.
            failure_policy: self.alone.unwrap_or("Ignore"),
            namespace_selector,
            object_selector: registration::object_selector(),
            control_plane_ns: control_plane_ns.into(),
        }
    }
}

fn api(client: &kube::Client, kind: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
    Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk))
}

async fn apply(client: &kube::Client, object: Value) -> Result<(), String> {
    let kind = object["kind"].as_str().unwrap_or_default().to_string();
    let typed: DynamicObject = serde_json::from_value(object).map_err(|e| e.to_string())?;
    let name = typed.metadata.name.clone().unwrap_or_default();
    api(client, &kind)
        .patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&typed))
        .await
        .map(drop)
        .map_err(|e| format!("cannot apply {kind} {name}: {e}"))
}

async fn remove(client: &kube::Client, name: &str) -> Result<(), String> {
    let warning = admission_policy::unserved::name(name);
    for (kind, name) in [
        ("MutatingAdmissionPolicyBinding", name),
        ("MutatingAdmissionPolicy", name),
        ("ValidatingAdmissionPolicyBinding", &warning),
        ("ValidatingAdmissionPolicy", &warning),
    ] {
        match api(client, kind).delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(format!("cannot delete {kind} {name}: {error}")),
        }
    }
    Ok(())
}

/// One pass: the policy for `loaded`, applied, or removed when it cannot be compiled.
async fn sync(client: &kube::Client, sync: &PolicySync, loaded: &Loaded) -> Result<(), String> {
    let options = sync.options(loaded.injector.control_plane_ns());
    match admission_policy::compile(&loaded.injector, &options) {
        Ok(compiled) => {
            apply(client, compiled.policy).await?;
            apply(client, compiled.binding).await?;
            if sync.alone.is_some() {
                let support = admission_policy::support(&loaded.injector).map_err(|e| e.to_string())?;
                for object in admission_policy::unserved::warning(&support, &options) {
                    apply(client, object).await?;
                }
            }
            tracing::info!(policy = %sync.name, digest = %compiled.digest, "admission policy in sync");
            Ok(())
        }
        Err(error) => {
            tracing::error!(policy = %sync.name, %error, "the configuration has no admission policy; the webhook injects every pod");
            remove(client, &sync.name).await
        }
    }
}

/// How long to wait after `failures` failed syncs in a row: doubling from `interval` up to a
/// minute, so an apiserver that refuses the policy (one without admissionregistration.k8s.io/v1
/// MutatingAdmissionPolicy, say) gets a warning a minute rather than one every reload interval.
fn retry_delay(interval: Duration, failures: u32) -> Duration {
    let cap = Duration::from_secs(60).max(interval);
    interval.saturating_mul(1 << failures.min(16)).min(cap)
}

/// Syncs whenever a new configuration is loaded, and retries a failed sync with backoff.
pub async fn run(
    client: kube::Client,
    sync_config: PolicySync,
    loaded: Arc<ArcSwapOption<Loaded>>,
    metrics: Arc<Metrics>,
    interval: Duration,
) {
    let mut synced: Option<Arc<Loaded>> = None;
    let mut failures = 0;
    loop {
        let current = loaded.load_full();
        if let Some(current) = current
            && !synced.as_ref().is_some_and(|s| Arc::ptr_eq(s, &current))
        {
            match sync(&client, &sync_config, &current).await {
                Ok(()) => {
                    metrics.reloaded("admission-policy", true);
                    synced = Some(current);
                    failures = 0;
                }
                Err(error) => {
                    metrics.reloaded("admission-policy", false);
                    failures += 1;
                    let delay = retry_delay(interval, failures);
                    tracing::warn!(%error, retry_in = ?delay, "admission policy not synced");
                    tokio::time::sleep(delay.saturating_sub(interval)).await;
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_syncs_back_off_to_a_minute() {
        let second = Duration::from_secs(1);
        let delays: Vec<u64> = (1..=8).map(|n| retry_delay(second, n).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_delay(Duration::from_secs(90), 3), Duration::from_secs(90), "never below the interval");
        assert_eq!(retry_delay(second, u32::MAX), Duration::from_secs(60));
    }
}
