//! The webhook's path: an AdmissionReview body, decoded, then the engine as the webhook calls it.
#![no_main]

use inject::{Origin, Request};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

fuzz_target!(|body: &[u8]| {
    let Ok(review) = webhook::admission::decode(body) else { return };
    let request = &review.request;
    let Some(object) = request.object.as_ref() else { return };
    let namespace: Map<String, Value> =
        json!({"linkerd.io/inject": "enabled"}).as_object().cloned().unwrap_or_default();
    let origin =
        Origin::Webhook { namespace: &request.namespace, namespace_annotations: Some(&namespace), owner: None };
    let injector = proxy_injector_fuzz::injector();
    let Ok(outcome) = injector.evaluate(&Request { object, kind: Some(&request.kind.kind), origin }) else { return };
    let patched = proxy_injector_fuzz::apply(object, &outcome);
    proxy_injector_fuzz::assert_still_typed(object, &patched, &request.kind.kind);
    proxy_injector_fuzz::assert_only_added(object, &patched, "");
    // The answer encodes whatever the request held.
    let answer =
        webhook::admission::Answer { allowed: true, patch: Some(outcome.patch.to_json()), ..Default::default() };
    let encoded = webhook::admission::encode(&review.api_version, &request.uid, &answer);
    assert!(serde_json::from_slice::<Value>(&encoded).is_ok(), "the answer is JSON");
});
