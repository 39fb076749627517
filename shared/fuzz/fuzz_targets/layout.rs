//! Recorded paths (`db_url`, `manifest_ref`, artifact refs) and run ids: normalisation never
//! yields a path that leaves the root, and is idempotent.
#![no_main]
use edgeshard_shared::layout;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(normal) = layout::normalize_relative(text) {
        assert!(!normal.is_empty());
        assert!(
            !normal.split('/').any(|s| s.is_empty() || s == "." || s == ".."),
            "{normal}"
        );
        assert_eq!(layout::normalize_relative(&normal).as_deref(), Ok(normal.as_str()));
    }
    if layout::validate_run_id(text).is_ok() {
        let dir = layout::manifest_dir("2026-01-01T00:00:00.000000Z", text);
        assert_eq!(layout::normalize_relative(&dir).as_deref(), Ok(dir.as_str()));
    }
    let _ = layout::manifest_ref_relative(text);
});
