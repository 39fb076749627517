//! A routing artifact's bytes (NPY): parse, then the checks readers make before routing.
#![no_main]
use edgeshard_shared::npy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(matrix) = npy::read(data) {
        assert_eq!(matrix.data.len(), matrix.rows * matrix.cols);
        let _ = matrix.check_routing_artifact(matrix.cols);
        let _ = npy::write(&matrix);
    }
});
