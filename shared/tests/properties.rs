//! Property tests (proptest) of the pure logic every reader relies on, each against a brute-force
//! reference written out here: routing and key encodings, the merge of per-shard top-k lists, and
//! the dot_product-to-L2 reduction with the bound readers use to stop fetching candidates.

use edgeshard_shared::key::{Key, KeyEncoding};
use edgeshard_shared::merge::{merge_top_k_distinct, Scored};
use edgeshard_shared::routing::{canonical_bytes, shard_for_key};
use edgeshard_shared::vector::{dot, DotReduction};
use proptest::prelude::*;
use xxhash_rust::xxh3::xxh3_64;

/// A hit of shard `.1` for vector id `.0`.
type Hit = Scored<(u32, usize)>;

fn any_key() -> impl Strategy<Value = Key> {
    prop_oneof![
        any::<i64>().prop_map(Key::Int),
        ".{0,24}".prop_map(Key::Str),
        proptest::collection::vec(any::<u8>(), 0..24).prop_map(Key::Bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Routing is xxh3_64 (seed 0) of the canonical bytes (integers 8 bytes little-endian,
    /// strings UTF-8, bytes as is) modulo the slot count, always a valid slot.
    #[test]
    fn routing_is_xxh3_of_the_canonical_bytes(key in any_key(), num_dbs in 1u32..=65_536) {
        let reference = match &key {
            Key::Int(i) => i.to_le_bytes().to_vec(),
            Key::Str(s) => s.as_bytes().to_vec(),
            Key::Bytes(b) => b.clone(),
        };
        prop_assert_eq!(canonical_bytes(&key), reference.clone());
        let shard = shard_for_key(&key, num_dbs).unwrap();
        prop_assert_eq!(shard as u64, xxh3_64(&reference) % num_dbs as u64);
        prop_assert!(shard < num_dbs);
    }

    /// A stored key decodes to the key it encodes, and routes as that key: what lets a reader
    /// check that a shard file holds its slot's keys.
    #[test]
    fn stored_keys_decode_and_route_as_written(i in 0i64..=i64::MAX, s in ".{0,24}", num_dbs in 1u32..4096) {
        for (encoding, key) in [
            (KeyEncoding::U64Be, Key::Int(i)),
            (KeyEncoding::U32Be, Key::Int(i % (u32::MAX as i64 + 1))),
            (KeyEncoding::Utf8, Key::Str(s.clone())),
        ] {
            let stored = encoding.encode(&key).unwrap();
            let back = encoding.decode(&stored).unwrap();
            prop_assert_eq!(&back, &key);
            prop_assert_eq!(
                shard_for_key(&back, num_dbs).unwrap(),
                shard_for_key(&key, num_dbs).unwrap()
            );
        }
    }

    /// Integer keys stored as u64be sort as the integers do (SQLite compares BLOBs bytewise, so
    /// the `kv` table's first key is the smallest).
    #[test]
    fn u64be_order_is_numeric_order(a in 0i64..=i64::MAX, b in 0i64..=i64::MAX) {
        let (ea, eb) = (
            KeyEncoding::U64Be.encode(&Key::Int(a)).unwrap(),
            KeyEncoding::U64Be.encode(&Key::Int(b)).unwrap(),
        );
        prop_assert_eq!(ea.cmp(&eb), a.cmp(&b));
    }

    /// Merging per-shard lists equals the brute force: all hits sorted by score (ties in shard
    /// order, then list order), each id kept once (its best hit), the first k.
    #[test]
    fn merge_equals_sorting_everything(
        shards in proptest::collection::vec(
            proptest::collection::vec((0u32..40, 0u8..12), 0..12), 0..6),
        k in 1usize..20,
    ) {
        // Each shard's list sorted by score, as shards return them; scores on a coarse grid so
        // ties happen.
        let per_shard: Vec<Vec<Hit>> = shards
            .iter()
            .enumerate()
            .map(|(shard, hits)| {
                let mut hits: Vec<Hit> = hits
                    .iter()
                    .map(|&(id, score)| Scored { score: score as f64 / 4.0, item: (id, shard) })
                    .collect();
                hits.sort_by(|a, b| a.score.total_cmp(&b.score));
                hits
            })
            .collect();
        let mut all: Vec<(usize, usize, Hit)> = per_shard
            .iter()
            .enumerate()
            .flat_map(|(s, hits)| hits.iter().cloned().enumerate().map(move |(i, h)| (s, i, h)))
            .collect();
        all.sort_by(|a, b| a.2.score.total_cmp(&b.2.score).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
        let mut expected: Vec<Hit> = Vec::new();
        for (_, _, hit) in all {
            if expected.len() < k && !expected.iter().any(|e| e.item.0 == hit.item.0) {
                expected.push(hit);
            }
        }
        let merged = merge_top_k_distinct(per_shard, k, |item| item.0);
        prop_assert_eq!(merged, expected);
    }

    /// The dot_product reduction, for vectors whose norms span many orders of magnitude: the
    /// bound readers stop at holds for the distance an f32 index computes, and the readers'
    /// procedure (take candidates in index order, rescore each by its exact dot, stop once the
    /// bound says nothing further can beat the k-th) finds exactly the brute-force top k.
    #[test]
    fn dot_reduction_with_the_stop_bound_is_exact(
        vectors in proptest::collection::vec(
            (proptest::collection::vec(-1.0f32..1.0, 6), -3i32..=4), 2..40),
        query in proptest::collection::vec(-1.0f32..1.0, 6),
        k in 1usize..5,
    ) {
        let vectors: Vec<Vec<f32>> = vectors
            .into_iter()
            .map(|(v, exp)| v.iter().map(|x| x * 10f32.powi(exp)).collect())
            .collect();
        prop_assume!(vectors.iter().any(|v| v.iter().any(|x| *x != 0.0)));
        let reduction = DotReduction::for_vectors(vectors.iter().map(Vec::as_slice)).unwrap();
        let qa = DotReduction::augment_query(&query);
        // The distance as an f32 index computes it: f32 differences, squares and sum.
        let l2_f32 = |v: &[f32]| -> f64 {
            let augmented = reduction.augment(v);
            let sum: f32 = qa.iter().zip(augmented).map(|(a, b)| (a - b) * (a - b)).sum();
            sum.sqrt() as f64
        };
        for v in &vectors {
            prop_assert!(dot(&query, v) <= reduction.max_dot_beyond(&query, l2_f32(v)),
                "dot {} above the bound", dot(&query, v));
        }
        let mut index_order: Vec<(f64, f64)> =
            vectors.iter().map(|v| (l2_f32(v), dot(&query, v))).collect();
        index_order.sort_by(|a, b| a.0.total_cmp(&b.0));
        let top = |dots: &mut Vec<f64>| {
            dots.sort_by(|a, b| b.total_cmp(a));
            dots.truncate(k);
        };
        let mut brute: Vec<f64> = index_order.iter().map(|c| c.1).collect();
        top(&mut brute);
        for fetched in 1..=index_order.len() {
            let mut found: Vec<f64> = index_order[..fetched].iter().map(|c| c.1).collect();
            top(&mut found);
            let last = index_order[fetched - 1].0;
            let settled = found.len() == k
                && reduction.max_dot_beyond(&query, last) < found[k - 1];
            if settled || fetched == index_order.len() {
                prop_assert_eq!(found, brute, "stopped after {} of {}", fetched, index_order.len());
                break;
            }
        }
    }
}
