//! Search filters (`--filter field=value`, one per line), matched against a few payloads.
#![no_main]
use edgeshard_shared::filter::Filter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let conditions: Vec<&str> = text.lines().collect();
    let Ok(filter) = Filter::parse(&conditions) else {
        return;
    };
    let payloads = [
        serde_json::json!({"section": "web", "priority": 3, "tags": ["a", "b"]}),
        serde_json::json!({"section": null}),
        serde_json::json!([1, 2, 3]),
    ];
    for payload in &payloads {
        let _ = filter.matches(Some(payload));
    }
    let _ = filter.matches(None);
});
