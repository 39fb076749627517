//! A manifest file's bytes: parse and validate, then everything a reader derives from a
//! manifest it accepted (shard paths, artifact paths, the vector spec, routing of its keys).
#![no_main]
use edgeshard_shared::manifest::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(manifest) = Manifest::from_sqlite_bytes(data) else {
        return;
    };
    for shard in &manifest.shards {
        if let Ok(dir) = manifest.shard_dir_relative(shard) {
            assert!(!dir.split('/').any(|s| s == ".." || s.is_empty()), "{dir}");
        }
        let _ = shard.check_size(shard.db_bytes);
    }
    let _ = manifest.artifact_relative(Some("../../x"), "centroids.npy");
    let _ = manifest.vector_spec();
    let _ = edgeshard_shared::routing::shard_for_key(
        &edgeshard_shared::Key::Int(7),
        manifest.meta.num_dbs,
    );
});
