//! The CLI's path: a manifest stream, parsed, each object checked, then `inject --manual`,
//! written both whole and edited in place.
#![no_main]

use inject::config::AnnotationSet;
use inject::uninject::{Purpose, uninject};
use inject::{Origin, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let injector = proxy_injector_fuzz::injector();
    let overrides = AnnotationSet::default();
    for document in manifest::documents(text) {
        let Ok(document) = document else { return };
        let mut object = document.value.clone();
        inject::shape::stringify_metadata_scalars(&mut object, None);
        if inject::shape::check(&object, None).is_err() {
            continue;
        }
        let user = object.clone();
        let mut clean = object;
        uninject(&mut clean, Purpose::BeforeInject);
        let origin = Origin::Cli { manual: true, overrides: &overrides };
        let Ok(outcome) = injector.evaluate(&Request { object: &clean, kind: None, origin }) else { continue };
        let patched = proxy_injector_fuzz::apply(&clean, &outcome);
        let kind = user.get("kind").and_then(serde_json::Value::as_str).unwrap_or("").to_string();
        proxy_injector_fuzz::assert_still_typed(&user, &patched, &kind);
        if !proxy_injector_fuzz::has_linkerd_content(&user) {
            proxy_injector_fuzz::assert_only_added(&user, &patched, "");
        }
        // What is printed parses back to what was injected.
        let yaml = manifest::to_yaml(&patched).expect("an injected object prints as YAML");
        let reparsed = manifest::parse_stream(&yaml).expect("the printed YAML parses");
        assert_eq!(reparsed.first().map(|d| &d.value), Some(&patched), "YAML round trip changed the object");
        // The in-place edit never panics, and what it writes reads as what was injected (or it
        // declines, and the document is written whole).
        let read = |text: &str| manifest::parse_stream(text).ok()?.into_iter().next().map(|d| d.value);
        if let Ok(edited) = manifest::edit::edit_document(document.text, &document.value, &patched, read) {
            assert_eq!(read(&edited).as_ref(), Some(&patched), "the in-place edit changed the object");
        }
    }
});
