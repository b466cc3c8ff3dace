//! `uninject(inject(x)) == x` for objects without Linkerd content; `uninject` never panics.
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
            // Whatever the object, uninjection itself must not panic.
            uninject(&mut object, Purpose::Uninject);
            continue;
        }
        if proxy_injector_fuzz::has_linkerd_content(&object) {
            uninject(&mut object, Purpose::Uninject);
            continue;
        }
        let origin = Origin::Cli { manual: true, overrides: &overrides };
        let Ok(outcome) = injector.evaluate(&Request { object: &object, kind: None, origin }) else { continue };
        let mut round_trip = proxy_injector_fuzz::apply(&object, &outcome);
        uninject(&mut round_trip, Purpose::Uninject);
        let (mut expected, mut got) = (object.clone(), round_trip);
        proxy_injector_fuzz::without_empty_containers(&mut expected);
        proxy_injector_fuzz::without_empty_containers(&mut got);
        assert_eq!(got, expected, "uninject(inject(x)) != x");
    }
});
