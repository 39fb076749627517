//! A sidecar file's bytes (zstd-compressed page cache): parse.
#![no_main]
use edgeshard_shared::sidecar::Sidecar;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Sidecar::parse(data);
});
