//! SQLite page bytes as a range reader meets them (fetched from anywhere, possibly damaged): the
//! B-tree helpers its planners run on every fetched page, the page checks, and a whole image
//! through the sidecar analysis and page sealing. Whatever the bytes, an error or a value,
//! never a panic; and a sealed image always passes its own checks.
#![no_main]
use edgeshard_shared::integrity::{seal_pages, PageVerifier};
use edgeshard_shared::{btree, sidecar};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    // First bytes: page number and usable-size reduction; the rest is the page or the image.
    let number = u32::from(data[0]) + 1;
    let usable = 4096u32.saturating_sub(u32::from(data[1]) * 16);
    let page = &data[2..];
    let _ = btree::children(number, page);
    let _ = btree::is_interior(number, page);
    let _ = btree::overflow_heads(number, page, usable);
    let _ = sidecar::index_overflow_heads(number, page, usable);
    let _ = sidecar::unused_gap(number, page);
    let verifier = PageVerifier::new(0, 7);
    let _ = verifier.check_page(number, page);
    let _ = verifier.check_block(number, page, 512);
    let _ = sidecar::analyze(page);
    let _ = sidecar::btree_pages(page);
    let mut image = page.to_vec();
    if let Ok(seed) = seal_pages(&mut image, 7, 0) {
        let verifier = PageVerifier::new(0, seed);
        let page_size = match u16::from_be_bytes([image[16], image[17]]) {
            1 => 65536,
            v => v as usize,
        };
        assert!(verifier.check_block(1, &image, page_size).is_ok(), "a sealed image fails its own checks");
    }
});
