//! Flat sqlite-vec search is exact: 10,000 x 64-d vectors, results equal brute force.

use edgeshard_builder::build::build;
use edgeshard_builder::input::FieldMapping;
use edgeshard_native::{Snapshot, VectorId};
use edgeshard_shared::routing::shard_for_key;
use edgeshard_shared::{Key, Metric};
use edgeshard_tests::{
    assert_matches_brute_force, build_options, random_vector, rng, temp_dir, vector_json,
    write_jsonl, Tolerance,
};
use serde_json::json;
use std::collections::BTreeSet;

const N: usize = 10_000;
const DIM: usize = 64;
const SHARDS: u32 = 8;
const TOL: Tolerance = Tolerance {
    tie_eps: 1e-6,
    score_tol: 1e-4,
};

fn check_metric(metric: Metric, seed: u64) {
    let dir = temp_dir();
    let input = dir.path().join("vectors.jsonl");
    let out = dir.path().join("snap");
    let mut rng = rng(seed);
    // l2 data off the origin, so distances are not all alike.
    let offset = if metric == Metric::L2 { 0.5 } else { 0.0 };
    let items: Vec<(VectorId, Vec<f32>)> = (0..N as i64)
        .map(|i| {
            let v: Vec<f32> = random_vector(&mut rng, DIM)
                .into_iter()
                .map(|x| x + offset)
                .collect();
            (VectorId::Int(i * 7 + 3), v)
        })
        .collect();
    write_jsonl(
        &input,
        items.iter().map(|(id, v)| {
            let VectorId::Int(i) = id else { unreachable!() };
            json!({"id": i, "value": format!("v{i}"), "emb": vector_json(v), "n": i})
        }),
    );
    let mut opts = build_options(&input, &out);
    opts.fields = FieldMapping {
        key_field: "id".into(),
        value_field: Some("value".into()),
        vector_field: Some("emb".into()),
        payload_fields: vec!["n".into()],
    };
    opts.shards = SHARDS;
    opts.metric = metric;
    build(&opts).expect("build");

    let shard_of = |id: &VectorId| {
        let VectorId::Int(i) = id else { unreachable!() };
        shard_for_key(&Key::Int(*i), SHARDS).unwrap()
    };
    let non_empty: BTreeSet<u32> = items.iter().map(|(id, _)| shard_of(id)).collect();

    let snap = Snapshot::open(out.to_str().unwrap()).expect("open");
    for q in 0..100 {
        let query: Vec<f32> = random_vector(&mut rng, DIM)
            .into_iter()
            .map(|x| x + offset)
            .collect();
        let response = snap.search(&query, 10, None).expect("search");
        assert_eq!(response.shards_queried, non_empty.len());
        let got: Vec<(VectorId, f64)> = response
            .results
            .iter()
            .map(|h| (h.id.clone(), h.score))
            .collect();
        assert_matches_brute_force(
            &format!("{} query {q}", metric.as_str()),
            metric,
            &query,
            &items,
            &got,
            10,
            TOL,
        );
        for hit in &response.results {
            let VectorId::Int(i) = hit.id else {
                panic!("int ids stay ints: {:?}", hit.id)
            };
            assert_eq!(hit.payload, Some(json!({"n": i})));
            assert_eq!(
                hit.shard,
                shard_of(&hit.id),
                "hit.shard is the routed shard"
            );
        }
    }

    // Restricted to shards 0 and 3: brute force over only the records routed there.
    let subset: Vec<(VectorId, Vec<f32>)> = items
        .iter()
        .filter(|(id, _)| matches!(shard_of(id), 0 | 3))
        .cloned()
        .collect();
    assert!(!subset.is_empty() && subset.len() < N);
    for q in 0..20 {
        let query = random_vector(&mut rng, DIM);
        let response = snap.search(&query, 10, Some(&[0, 3])).expect("search");
        assert_eq!(
            response.shards_queried,
            [0, 3].iter().filter(|s| non_empty.contains(s)).count()
        );
        let got: Vec<(VectorId, f64)> = response
            .results
            .iter()
            .map(|h| (h.id.clone(), h.score))
            .collect();
        assert_matches_brute_force(
            &format!("{} shards [0,3] query {q}", metric.as_str()),
            metric,
            &query,
            &subset,
            &got,
            10,
            TOL,
        );
    }

    // Large k still exact (all ids of the best 500).
    let query = random_vector(&mut rng, DIM);
    let response = snap.search(&query, 500, None).unwrap();
    let got: Vec<(VectorId, f64)> = response
        .results
        .iter()
        .map(|h| (h.id.clone(), h.score))
        .collect();
    assert_matches_brute_force("k=500", metric, &query, &items, &got, 500, TOL);

    // Bad requests are errors, not empty or wrong answers.
    assert!(snap.search(&query, 4097, None).is_err(), "k > 4096");
    assert!(snap.search(&query, 0, None).is_err(), "k = 0");
    assert!(
        snap.search(&query[..DIM - 1], 10, None).is_err(),
        "dimension 63"
    );
    let mut long = query.clone();
    long.push(1.0);
    assert!(snap.search(&long, 10, None).is_err(), "dimension 65");
    let mut nan = query.clone();
    nan[5] = f32::NAN;
    assert!(snap.search(&nan, 10, None).is_err(), "NaN query");
    let mut inf = query.clone();
    inf[0] = f32::INFINITY;
    assert!(snap.search(&inf, 10, None).is_err(), "infinite query");
    assert!(
        snap.search(&query, 10, Some(&[SHARDS])).is_err(),
        "shard id out of range"
    );
}

#[test]
fn cosine_search_equals_brute_force() {
    check_metric(Metric::Cosine, 0xc051);
}

#[test]
fn l2_search_equals_brute_force() {
    check_metric(Metric::L2, 0x12);
}
