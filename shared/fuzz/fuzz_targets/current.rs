//! `_CURRENT`'s bytes: parse, then resolve `manifest_ref` under the root.
#![no_main]
use edgeshard_shared::current::CurrentPointer;
use edgeshard_shared::layout;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(pointer) = CurrentPointer::parse(data) else {
        return;
    };
    if let Ok(relative) = layout::manifest_ref_relative(&pointer.manifest_ref) {
        assert!(relative.starts_with("manifests/"), "{relative}");
        assert!(!relative.split('/').any(|s| s == ".."), "{relative}");
    }
    let _ = pointer.to_json_bytes();
});
