//! The sidecar written by shardyfusion for its sqlite-vec fixture shard, checked two ways:
//! it parses, and edgeshard's own analysis of the shard finds exactly the same pages and chains.
// Integration tests stop where they fail: unwrap, expect and panic are how they assert.
// (clippy.toml's allow-*-in-tests covers #[test] functions, not the helpers around them.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use edgeshard_shared::sidecar::{analyze, Sidecar};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/shardyfusion");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture present")
}

#[test]
fn shardyfusion_sidecar_parses_and_pages_match_the_database() {
    let db = fixture("sqlite_vec_cosine_dim4_shard.db");
    let sidecar = Sidecar::parse(&fixture("sqlite_vec_cosine_dim4_shard.sidecar")).unwrap();
    assert_eq!(sidecar.tag, "\"etag-1\"");
    assert_eq!(sidecar.content.page_size, 4096);
    assert!(
        sidecar.content.pages.contains_key(&1),
        "page 1 is always pinned"
    );
    for (number, page) in &sidecar.content.pages {
        let start = (*number as usize - 1) * 4096;
        let original = &db[start..start + 4096];
        // Outside the unused gap between cell pointers and cell content, bytes are identical.
        let base = if *number == 1 { 100 } else { 0 };
        let header = if matches!(original[base], 2 | 5) {
            12
        } else {
            8
        };
        let cells = u16::from_be_bytes([original[base + 3], original[base + 4]]) as usize;
        let gap_start = base + header + 2 * cells;
        let gap_end = u16::from_be_bytes([original[base + 5], original[base + 6]]) as usize;
        assert_eq!(page.len(), 4096);
        assert_eq!(
            &page[..gap_start],
            &original[..gap_start],
            "page {number} head"
        );
        assert_eq!(
            &page[gap_end..],
            &original[gap_end..],
            "page {number} cells"
        );
        assert!(
            page[gap_start..gap_end].iter().all(|b| *b == 0),
            "page {number} gap"
        );
    }
}

#[test]
fn analysis_of_the_shard_equals_shardyfusion_sidecar() {
    let db = fixture("sqlite_vec_cosine_dim4_shard.db");
    let theirs = Sidecar::parse(&fixture("sqlite_vec_cosine_dim4_shard.sidecar")).unwrap();
    let ours = analyze(&db).unwrap();
    assert_eq!(
        ours.pages.keys().collect::<Vec<_>>(),
        theirs.content.pages.keys().collect::<Vec<_>>()
    );
    assert_eq!(ours.chains, theirs.content.chains);
    assert!(ours == theirs.content, "pinned page bytes differ");
    // And our encoding of the body is byte-identical to theirs once decompressed.
    assert!(
        !ours.chains.is_empty(),
        "the vector chunk is an overflow chain"
    );
}

#[test]
fn corrupt_sidecars_are_rejected() {
    let good = fixture("sqlite_vec_cosine_dim4_shard.sidecar");
    for (at, value) in [(0usize, b'X'), (4, 7), (40, 0xff), (good.len() - 2, 0x01)] {
        let mut bad = good.clone();
        bad[at] ^= value;
        assert!(
            Sidecar::parse(&bad).is_err(),
            "flipping byte {at} must be detected"
        );
    }
    assert!(Sidecar::parse(&good[..good.len() - 10]).is_err());
}

#[test]
fn retagging_keeps_the_body_and_changes_only_the_tag() {
    let original = fixture("sqlite_vec_cosine_dim4_shard.sidecar");
    let retagged = edgeshard_shared::sidecar::retag(&original, "\"5f3a-1d000\"").unwrap();
    let (a, b) = (
        Sidecar::parse(&original).unwrap(),
        Sidecar::parse(&retagged).unwrap(),
    );
    assert_eq!(b.tag, "\"5f3a-1d000\"");
    assert!(a.content == b.content);
    assert!(edgeshard_shared::sidecar::retag(b"not a sidecar", "x").is_err());
}
