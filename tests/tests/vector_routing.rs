//! dot_product on sqlite-vec, vector-only snapshots with vector routing (cluster, lsh,
//! explicit) and probes, payload filters, and the vector-only manifest against the spec.
//!
//! Expected values come from the generated data and exact f64 arithmetic written here (routing
//! recomputed from the published centroids / hyperplanes files, parsed by hand), never from the
//! reader under test.

use edgeshard_builder::build::{build, BuildOptions, VectorOnlyOptions, VectorRoutingKind};
use edgeshard_builder::input::FieldMapping;
use edgeshard_native::{SearchOptions, Snapshot, VectorId};
use edgeshard_shared::filter::Filter;
use edgeshard_shared::Metric;
use edgeshard_tests::{
    assert_matches_brute_force, build_options, current_manifest_file, edit_manifest_custom,
    json_lines, random_vector, rng, run_cli, temp_dir, vector_json, write_jsonl, RootState,
    Tolerance,
};
use rand::rngs::StdRng;
use rand::Rng;
use rusqlite::{Connection, OpenFlags};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const TOL: Tolerance = Tolerance {
    tie_eps: 1e-6,
    score_tol: 1e-4,
};
/// dot_product scores are recomputed exactly from the stored vector.
const DOT_TOL: Tolerance = Tolerance {
    tie_eps: 1e-12,
    score_tol: 1e-12,
};

type Items = Vec<(VectorId, Vec<f32>)>;

fn hits(response: &edgeshard_native::SearchResponse) -> Vec<(VectorId, f64)> {
    response
        .results
        .iter()
        .map(|h| (h.id.clone(), h.score))
        .collect()
}

/// Writes `items` as JSONL (`id`, `emb`, payload fields `g` = id % 10 and `part` = id % 4).
fn write_items(path: &Path, items: &Items) {
    write_jsonl(
        path,
        items.iter().map(|(id, v)| {
            let VectorId::Int(i) = id else { unreachable!() };
            json!({"id": i, "value": format!("v{i}"), "emb": vector_json(v), "g": i % 10,
                   "part": i % 4})
        }),
    );
}

fn vector_fields() -> FieldMapping {
    FieldMapping {
        key_field: "id".into(),
        value_field: Some("value".into()),
        vector_field: Some("emb".into()),
        payload_fields: vec!["g".into()],
    }
}

fn options(input: &Path, out: &Path, shards: u32, metric: Metric) -> BuildOptions {
    let mut opts = build_options(input, out);
    opts.fields = vector_fields();
    opts.shards = shards;
    opts.metric = metric;
    opts
}

fn vector_only(routing: VectorRoutingKind, probes: u32) -> Option<VectorOnlyOptions> {
    Some(VectorOnlyOptions {
        routing,
        num_probes: probes,
        shard_field: (routing == VectorRoutingKind::Explicit).then(|| "part".to_string()),
        hash_bits: None,
        spill: 0.0,
    })
}

/// `n` vectors around `centres` blob centres (so cluster routing has structure), ids 0..n.
fn clustered(rng: &mut StdRng, n: usize, dim: usize, centres: usize) -> Items {
    let centres: Vec<Vec<f32>> = (0..centres)
        .map(|_| random_vector(rng, dim).iter().map(|x| x * 3.0).collect())
        .collect();
    (0..n)
        .map(|i| {
            let c = &centres[rng.random_range(0..centres.len())];
            let v = c
                .iter()
                .map(|x| x + rng.random_range(-0.6f32..0.6))
                .collect();
            (VectorId::Int(i as i64), v)
        })
        .collect()
}

/// The manifest `_CURRENT` points at, as its `build_meta` row (custom parsed).
fn manifest_meta(root: &Path) -> (PathBuf, Value) {
    let path = current_manifest_file(root);
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let meta = conn
        .query_row(
            "SELECT key_col, key_encoding, sharding, custom, num_dbs FROM build_meta",
            [],
            |r| {
                Ok(json!({
                    "key_col": r.get::<_, String>(0)?,
                    "key_encoding": r.get::<_, String>(1)?,
                    "sharding": serde_json::from_str::<Value>(&r.get::<_, String>(2)?).unwrap(),
                    "custom": serde_json::from_str::<Value>(&r.get::<_, String>(3)?).unwrap(),
                    "num_dbs": r.get::<_, i64>(4)?,
                }))
            },
        )
        .unwrap();
    (path, meta)
}

/// An NPY v1.0 file parsed by hand: checks the header per the NPY spec and returns
/// (rows, cols, data).
fn read_npy_by_hand(bytes: &[u8]) -> (usize, usize, Vec<f32>) {
    assert_eq!(&bytes[..6], b"\x93NUMPY", "NPY magic");
    assert_eq!((bytes[6], bytes[7]), (1, 0), "NPY version 1.0");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + header_len) % 64, 0, "data 64-byte aligned");
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.ends_with('\n'), "{header:?}");
    assert!(
        header.contains("'descr': '<f4'"),
        "little-endian float32: {header}"
    );
    assert!(header.contains("'fortran_order': False"), "{header}");
    let shape = &header[header.find("'shape': (").unwrap() + 10..];
    let shape = &shape[..shape.find(')').unwrap()];
    let dims: Vec<usize> = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(dims.len(), 2, "2-D: {shape}");
    let data: Vec<f32> = bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(
        data.len(),
        dims[0] * dims[1],
        "data length matches the shape"
    );
    (dims[0], dims[1], data)
}

fn artifact(root: &Path, meta: &Value, key: &str) -> (usize, usize, Vec<f32>) {
    let url = meta["custom"]["vector"][key].as_str().unwrap();
    let rel = &url[url.find("vector_meta/").unwrap()..];
    read_npy_by_hand(&std::fs::read(root.join(rel)).unwrap())
}

/// Spec section 7 cluster distance, written out here.
fn centroid_distance(metric: Metric, v: &[f32], c: &[f32]) -> f64 {
    let dot: f64 = v.iter().zip(c).map(|(a, b)| *a as f64 * *b as f64).sum();
    let nv: f64 = v.iter().map(|a| (*a as f64).powi(2)).sum();
    let nc: f64 = c.iter().map(|a| (*a as f64).powi(2)).sum();
    match metric {
        Metric::L2 => nv + nc - 2.0 * dot,
        Metric::Cosine => 1.0 - dot / (nv.sqrt() * nc.sqrt()),
        Metric::DotProduct => -dot,
    }
}

/// Centroid indices by distance (stable), as spec section 7 orders probes.
fn nearest_centroids(metric: Metric, v: &[f32], centroids: &(usize, usize, Vec<f32>)) -> Vec<u32> {
    let (rows, cols, data) = centroids;
    let mut order: Vec<(u32, f64)> = (0..*rows)
        .map(|i| {
            (
                i as u32,
                centroid_distance(metric, v, &data[i * cols..(i + 1) * cols]),
            )
        })
        .collect();
    order.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    order.into_iter().map(|(i, _)| i).collect()
}

/// Spec section 7 LSH code.
fn lsh_code(v: &[f32], planes: &(usize, usize, Vec<f32>)) -> u64 {
    let (rows, cols, data) = planes;
    (0..*rows)
        .filter(|i| {
            let h = &data[i * cols..(i + 1) * cols];
            h.iter()
                .zip(v)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum::<f64>()
                > 0.0
        })
        .map(|i| 1u64 << i)
        .sum()
}

#[test]
fn dot_product_equals_brute_force() {
    const N: usize = 10_000;
    const DIM: usize = 64;
    let dir = temp_dir();
    let input = dir.path().join("v.jsonl");
    let out = dir.path().join("snap");
    let mut rng = rng(0xd07);
    // Not normalised: lengths from 0.1 to 3, so inner product and cosine rank differently.
    let items: Items = (0..N as i64)
        .map(|i| {
            let scale = rng.random_range(0.1f32..3.0);
            let v = random_vector(&mut rng, DIM)
                .into_iter()
                .map(|x| x * scale)
                .collect();
            (VectorId::Int(i), v)
        })
        .collect();
    write_items(&input, &items);
    build(&options(&input, &out, 8, Metric::DotProduct)).expect("dot_product build");

    // The reduction is recorded; the index is dim + 1, l2; dim and metric stay the user's.
    let (_, meta) = manifest_meta(&out);
    let vector = &meta["custom"]["vector"];
    assert_eq!(vector["metric"], "dot_product");
    assert_eq!(vector["dim"], DIM);
    assert_eq!(vector["dot_reduction"]["method"], "l2_augmented");
    let max_norm = items
        .iter()
        .map(|(_, v)| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>())
        .fold(0f64, f64::max)
        .sqrt();
    let recorded = vector["dot_reduction"]["max_norm"].as_f64().unwrap();
    assert!(
        (recorded - max_norm).abs() < 1e-9,
        "{recorded} vs {max_norm}"
    );
    let shard0 = std::fs::read_dir(out.join("shards"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("db=00000/attempt=00/shard.db");
    let conn = Connection::open_with_flags(&shard0, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let ddl: String = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'vec_index'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        ddl.contains(&format!("float[{}] distance_metric=l2", DIM + 1)),
        "{ddl}"
    );

    let snap = Snapshot::open(out.to_str().unwrap()).unwrap();
    let mut differs_from_cosine = 0;
    for q in 0..100 {
        let query = random_vector(&mut rng, DIM);
        let response = snap.search(&query, 10, None).unwrap();
        let got = hits(&response);
        assert_matches_brute_force(
            &format!("dot query {q}"),
            Metric::DotProduct,
            &query,
            &items,
            &got,
            10,
            DOT_TOL,
        );
        let cosine_top = edgeshard_tests::brute_force_knn(Metric::Cosine, &query, &items, 10);
        if cosine_top.iter().map(|h| &h.0).ne(got.iter().map(|h| &h.0)) {
            differs_from_cosine += 1;
        }
    }
    assert!(
        differs_from_cosine > 50,
        "the data must tell dot from cosine ({differs_from_cosine}/100 differ)"
    );

    // Large k and a filter (g = 3: a tenth of the vectors), still exact.
    let query = random_vector(&mut rng, DIM);
    let got = hits(&snap.search(&query, 300, None).unwrap());
    assert_matches_brute_force(
        "dot k=300",
        Metric::DotProduct,
        &query,
        &items,
        &got,
        300,
        DOT_TOL,
    );
    let subset: Items = items
        .iter()
        .filter(|(id, _)| matches!(id, VectorId::Int(i) if i % 10 == 3))
        .cloned()
        .collect();
    let response = snap
        .search_with(
            &query,
            &SearchOptions {
                k: 20,
                filter: Some(Filter::parse(&["g=3"]).unwrap()),
                ..SearchOptions::default()
            },
        )
        .unwrap();
    assert_matches_brute_force(
        "dot filtered",
        Metric::DotProduct,
        &query,
        &subset,
        &hits(&response),
        20,
        DOT_TOL,
    );
}

#[test]
fn dot_product_with_only_zero_vectors_is_refused() {
    let dir = temp_dir();
    let input = dir.path().join("v.jsonl");
    let out = dir.path().join("snap");
    write_jsonl(
        &input,
        (0..5).map(|i| json!({"id": i, "value": "x", "emb": [0.0, 0.0, 0.0]})),
    );
    let err = build(&options(&input, &out, 2, Metric::DotProduct))
        .unwrap_err()
        .to_string();
    assert!(err.contains("all zeros"), "{err}");
    assert!(!out.join("_CURRENT").exists(), "nothing published");
}

/// Builds a vector-only snapshot; returns (root, items, manifest meta).
fn build_vector_only(
    dir: &Path,
    items: &Items,
    shards: u32,
    metric: Metric,
    routing: VectorRoutingKind,
    probes: u32,
) -> (PathBuf, Value) {
    let input = dir.join(format!("{}.jsonl", routing_name(routing)));
    let out = dir.join(format!("snap-{}", routing_name(routing)));
    write_items(&input, items);
    let mut opts = options(&input, &out, shards, metric);
    opts.vector_only = vector_only(routing, probes);
    let summary = build(&opts).expect("vector-only build");
    assert_eq!(summary.vector_routing, Some(routing_name(routing)));
    let (_, meta) = manifest_meta(&out);
    (out, meta)
}

fn routing_name(routing: VectorRoutingKind) -> &'static str {
    match routing {
        VectorRoutingKind::Cluster => "cluster",
        VectorRoutingKind::Lsh => "lsh",
        VectorRoutingKind::Explicit => "explicit",
    }
}

fn check_cluster(metric: Metric, seed: u64, min_non_empty: usize) {
    const SHARDS: u32 = 8;
    let dir = temp_dir();
    let mut rng = rng(seed);
    let items = clustered(&mut rng, 4_000, 32, 12);
    let (out, meta) = build_vector_only(
        dir.path(),
        &items,
        SHARDS,
        metric,
        VectorRoutingKind::Cluster,
        2,
    );
    let centroids = artifact(&out, &meta, "centroids_ref");
    assert_eq!((centroids.0, centroids.1), (SHARDS as usize, 32));
    let shard_of = |v: &[f32]| nearest_centroids(metric, v, &centroids)[0];
    let non_empty: BTreeSet<u32> = items.iter().map(|(_, v)| shard_of(v)).collect();
    assert!(
        non_empty.len() >= min_non_empty,
        "k-means spreads the data: {non_empty:?}"
    );

    let snap = Snapshot::open(out.to_str().unwrap()).unwrap();
    for q in 0..40 {
        let query = clustered(&mut rng, 1, 32, 12).remove(0).1;
        // All shards probed: exactly brute force over everything.
        let all = snap
            .search_with(
                &query,
                &SearchOptions {
                    k: 10,
                    probes: Some(SHARDS as usize),
                    ..SearchOptions::default()
                },
            )
            .unwrap();
        assert_eq!(all.shards_queried, non_empty.len());
        assert_matches_brute_force(
            &format!("{} cluster all probes q{q}", metric.as_str()),
            metric,
            &query,
            &items,
            &hits(&all),
            10,
            TOL,
        );
        for hit in &all.results {
            let VectorId::Int(i) = hit.id else { panic!() };
            assert_eq!(
                hit.shard,
                shard_of(&items[i as usize].1),
                "stored where routed"
            );
        }
        // Default probes (the manifest's 2): the two nearest centroids, nothing else.
        let two = snap.search(&query, 10, None).unwrap();
        let probed: Vec<u32> = nearest_centroids(metric, &query, &centroids)[..2].to_vec();
        // Reported ascending (the same in every reader), not in probe order.
        let mut touched: Vec<u32> = probed
            .iter()
            .copied()
            .filter(|s| non_empty.contains(s))
            .collect();
        touched.sort_unstable();
        assert_eq!(two.shards, touched, "q{q}");
        assert_eq!(two.shards_queried, touched.len());
        let subset: Items = items
            .iter()
            .filter(|(_, v)| probed.contains(&shard_of(v)))
            .cloned()
            .collect();
        assert_matches_brute_force(
            &format!("{} cluster 2 probes q{q}", metric.as_str()),
            metric,
            &query,
            &subset,
            &hits(&two),
            10,
            TOL,
        );
        let one = snap
            .search_with(
                &query,
                &SearchOptions {
                    k: 10,
                    probes: Some(1),
                    ..SearchOptions::default()
                },
            )
            .unwrap();
        assert!(one.shards_queried <= 1);
    }
    let query = items[0].1.clone();
    let bad = |probes| {
        snap.search_with(
            &query,
            &SearchOptions {
                k: 10,
                probes: Some(probes),
                ..SearchOptions::default()
            },
        )
    };
    assert!(bad(0).unwrap_err().to_string().contains("probes"));
    // More probes than shards: capped, every shard searched.
    assert_eq!(bad(99).unwrap().shards_queried, non_empty.len());
}

#[test]
fn cluster_routing_cosine() {
    check_cluster(Metric::Cosine, 0xc1, 6);
}

#[test]
fn cluster_routing_l2() {
    check_cluster(Metric::L2, 0xc2, 6);
}

#[test]
fn cluster_routing_dot_product() {
    // -dot favours long centroids, so fewer shards may hold vectors; routing is still exact.
    check_cluster(Metric::DotProduct, 0xc3, 2);
}

#[test]
fn lsh_routing() {
    const SHARDS: u32 = 8;
    let dir = temp_dir();
    let mut rng = rng(0x15);
    let items: Items = (0..3_000)
        .map(|i| (VectorId::Int(i), random_vector(&mut rng, 24)))
        .collect();
    let (out, meta) = build_vector_only(
        dir.path(),
        &items,
        SHARDS,
        Metric::Cosine,
        VectorRoutingKind::Lsh,
        1,
    );
    let bits = meta["custom"]["vector"]["num_hash_bits"].as_u64().unwrap();
    assert_eq!(bits, 3, "ceil(log2(8))");
    let planes = artifact(&out, &meta, "hyperplanes_ref");
    assert_eq!((planes.0, planes.1), (3, 24));
    let shard_of = |v: &[f32]| (lsh_code(v, &planes) % SHARDS as u64) as u32;
    let non_empty: BTreeSet<u32> = items.iter().map(|(_, v)| shard_of(v)).collect();
    assert_eq!(non_empty.len(), SHARDS as usize);

    let snap = Snapshot::open(out.to_str().unwrap()).unwrap();
    for q in 0..30 {
        let query = random_vector(&mut rng, 24);
        let all = snap
            .search_with(
                &query,
                &SearchOptions {
                    k: 10,
                    probes: Some(SHARDS as usize),
                    ..SearchOptions::default()
                },
            )
            .unwrap();
        assert_eq!(all.shards_queried, SHARDS as usize);
        assert_matches_brute_force(
            &format!("lsh all probes q{q}"),
            Metric::Cosine,
            &query,
            &items,
            &hits(&all),
            10,
            TOL,
        );
        for hit in &all.results {
            let VectorId::Int(i) = hit.id else { panic!() };
            assert_eq!(hit.shard, shard_of(&items[i as usize].1));
        }
        // One probe: the query's own bucket; two: then bit 0 flipped.
        let code = lsh_code(&query, &planes);
        let one = snap.search(&query, 10, None).unwrap();
        assert_eq!(one.shards, [(code % SHARDS as u64) as u32]);
        let two = snap
            .search_with(
                &query,
                &SearchOptions {
                    k: 10,
                    probes: Some(2),
                    ..SearchOptions::default()
                },
            )
            .unwrap();
        let mut probed = [
            (code % SHARDS as u64) as u32,
            ((code ^ 1) % SHARDS as u64) as u32,
        ];
        probed.sort_unstable();
        assert_eq!(
            two.shards, probed,
            "ascending, as every reader reports them"
        );
        let subset: Items = items
            .iter()
            .filter(|(_, v)| two.shards.contains(&shard_of(v)))
            .cloned()
            .collect();
        assert_matches_brute_force(
            &format!("lsh 2 probes q{q}"),
            Metric::Cosine,
            &query,
            &subset,
            &hits(&two),
            10,
            TOL,
        );
    }
}

#[test]
fn explicit_routing_needs_shard_ids() {
    let dir = temp_dir();
    let mut rng = rng(0xe4);
    let items: Items = (0..2_000)
        .map(|i| (VectorId::Int(i), random_vector(&mut rng, 16)))
        .collect();
    let (out, meta) = build_vector_only(
        dir.path(),
        &items,
        4,
        Metric::L2,
        VectorRoutingKind::Explicit,
        1,
    );
    assert_eq!(meta["custom"]["vector"]["sharding_strategy"], "explicit");
    let snap = Snapshot::open(out.to_str().unwrap()).unwrap();
    let query = random_vector(&mut rng, 16);
    let err = snap.search(&query, 10, None).unwrap_err().to_string();
    assert!(
        err.contains("explicit") && err.contains("shard ids"),
        "{err}"
    );
    for ids in [vec![1u32], vec![0, 3]] {
        let response = snap.search(&query, 10, Some(&ids)).unwrap();
        assert_eq!(response.shards, ids);
        let subset: Items = items
            .iter()
            .filter(|(id, _)| matches!(id, VectorId::Int(i) if ids.contains(&((i % 4) as u32))))
            .cloned()
            .collect();
        assert_matches_brute_force(
            &format!("explicit {ids:?}"),
            Metric::L2,
            &query,
            &subset,
            &hits(&response),
            10,
            TOL,
        );
    }

    // A record naming a shard >= --shards is refused and nothing is published.
    let input = dir.path().join("bad.jsonl");
    write_jsonl(
        &input,
        (0..10).map(|i| json!({"id": i, "emb": [1.0, i], "part": if i == 7 { 4 } else { i % 4 }})),
    );
    let mut opts = options(&input, &out, 4, Metric::L2);
    opts.fields.value_field = None;
    opts.vector_only = vector_only(VectorRoutingKind::Explicit, 1);
    let before = RootState::capture(&out);
    let err = build(&opts).unwrap_err().to_string();
    assert!(
        err.contains("record 8") && err.contains("part") && err.contains("not below"),
        "{err}"
    );
    assert_eq!(RootState::capture(&out), before, "nothing published");
}

#[test]
fn bad_vector_routing_requests_publish_nothing() {
    let dir = temp_dir();
    let input = dir.path().join("v.jsonl");
    let out = dir.path().join("snap");
    write_jsonl(
        &input,
        (0..5).map(|i| json!({"id": i, "value": "x", "emb": [1.0, i, 0.5]})),
    );
    type Tweak = Box<dyn Fn(&mut BuildOptions)>;
    let cases: Vec<(Tweak, &str)> = vec![
        (
            Box::new(|o| o.vector_only = vector_only(VectorRoutingKind::Cluster, 1)),
            "5 vectors cannot make 8 shards",
        ),
        (
            Box::new(|o| {
                o.shards = 2;
                o.vector_only = vector_only(VectorRoutingKind::Cluster, 0);
            }),
            "--probes must be between 1 and --shards",
        ),
        (
            Box::new(|o| {
                o.shards = 2;
                o.vector_only = vector_only(VectorRoutingKind::Lsh, 3);
            }),
            "--probes must be between 1 and --shards (2)",
        ),
        (
            Box::new(|o| {
                o.shards = 2;
                o.vector_only = vector_only(VectorRoutingKind::Explicit, 1);
                if let Some(v) = &mut o.vector_only {
                    v.shard_field = None;
                }
            }),
            "--shard-field",
        ),
        (
            Box::new(|o| {
                o.shards = 2;
                o.fields.vector_field = None;
                o.vector_only = vector_only(VectorRoutingKind::Lsh, 1);
            }),
            "--vector-field",
        ),
    ];
    for (tweak, needle) in cases {
        let mut opts = options(&input, &out, 8, Metric::Cosine);
        tweak(&mut opts);
        let err = build(&opts).unwrap_err().to_string();
        assert!(err.contains(needle), "expected {needle:?} in {err:?}");
        assert!(!out.exists() || !out.join("_CURRENT").exists(), "{needle}");
    }
    // probes on a snapshot routed by key: an error, not silently ignored.
    build(&options(&input, &out, 2, Metric::Cosine)).unwrap();
    let snap = Snapshot::open(out.to_str().unwrap()).unwrap();
    let err = snap
        .search_with(
            &[1.0, 0.0, 0.0],
            &SearchOptions {
                k: 3,
                probes: Some(1),
                ..SearchOptions::default()
            },
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("routes by key"), "{err}");
}

#[test]
fn filters_return_k_matching_results() {
    const N: i64 = 10_000;
    let dir = temp_dir();
    let input = dir.path().join("v.jsonl");
    let mut rng = rng(0xf1);
    let items: Items = (0..N)
        .map(|i| (VectorId::Int(i), random_vector(&mut rng, 32)))
        .collect();
    // tag: "common" for most, "some" for every 10th, "rare" for 50 of them.
    let tag = |i: i64| match i {
        _ if i % 200 == 7 => "rare",
        _ if i % 10 == 1 => "some",
        _ => "common",
    };
    write_jsonl(
        &input,
        items.iter().map(|(id, v)| {
            let VectorId::Int(i) = id else { unreachable!() };
            json!({"id": i, "value": "x", "emb": vector_json(v), "tag": tag(*i), "n": i})
        }),
    );
    for shards in [1u32, 8] {
        let out = dir.path().join(format!("snap{shards}"));
        let mut opts = options(&input, &out, shards, Metric::Cosine);
        opts.fields.payload_fields = vec!["tag".into(), "n".into()];
        // Exact shards (one shard holds more vectors than `auto` keeps flat): the filters'
        // exactness is what is tested here; IVF's is in vector_ivf.rs.
        opts.vector_index = edgeshard_builder::vector_index::IndexKind::Flat;
        build(&opts).unwrap();
        let snap = Snapshot::open(out.to_str().unwrap()).unwrap();
        type Case<'a> = (&'a [&'a str], usize, fn(&str) -> bool);
        let cases: [Case; 5] = [
            (&["tag=rare"], 10, |t| t == "rare"),
            // 40 of 50 rare ones: past the 4096 KNN cap on one shard, so the exact scan.
            (&["tag=rare"], 40, |t| t == "rare"),
            // More than match: all 50 come back.
            (&["tag=rare"], 80, |t| t == "rare"),
            (&["tag=rare|some"], 25, |t| t != "common"),
            (&["tag!=common"], 15, |t| t != "common"),
        ];
        for (conditions, k, keep) in cases {
            let query = random_vector(&mut rng, 32);
            let subset: Items = items
                .iter()
                .filter(|(id, _)| matches!(id, VectorId::Int(i) if keep(tag(*i))))
                .cloned()
                .collect();
            let response = snap
                .search_with(
                    &query,
                    &SearchOptions {
                        k,
                        filter: Some(Filter::parse(conditions).unwrap()),
                        ..SearchOptions::default()
                    },
                )
                .unwrap();
            assert_eq!(response.results.len(), k.min(subset.len()));
            assert_matches_brute_force(
                &format!("{shards} shards, {conditions:?}, k={k}"),
                Metric::Cosine,
                &query,
                &subset,
                &hits(&response),
                k,
                TOL,
            );
            for hit in &response.results {
                assert!(keep(hit.payload.as_ref().unwrap()["tag"].as_str().unwrap()));
            }
        }
        // Projection: only the asked payload fields.
        let response = snap
            .search_with(
                &items[5].1,
                &SearchOptions {
                    k: 3,
                    payload_fields: Some(vec!["n".into()]),
                    ..SearchOptions::default()
                },
            )
            .unwrap();
        assert_eq!(response.results[0].id, VectorId::Int(5));
        assert_eq!(response.results[0].payload, Some(json!({"n": 5})));
    }
}

#[test]
fn vector_only_manifest_follows_the_spec() {
    let dir = temp_dir();
    let mut rng = rng(0xc0f);
    let items = clustered(&mut rng, 1_500, 8, 5);
    let (out, meta) = build_vector_only(
        dir.path(),
        &items,
        4,
        Metric::L2,
        VectorRoutingKind::Cluster,
        2,
    );
    let root_url = format!("file://{}", std::path::absolute(&out).unwrap().display());
    let run_id = {
        let current: Value =
            serde_json::from_slice(&std::fs::read(out.join("_CURRENT")).unwrap()).unwrap();
        current["run_id"].as_str().unwrap().to_string()
    };
    assert_eq!(meta["key_col"], "_vector_id");
    assert_eq!(meta["key_encoding"], "raw");
    assert_eq!(
        meta["sharding"],
        json!({"strategy": "hash", "hash_algorithm": "xxh3_64", "routing_values": null,
               "cel_expr": null, "cel_columns": null})
    );
    let vector = meta["custom"]["vector"].as_object().unwrap();
    let keys: BTreeSet<&str> = vector.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "backend",
            "centroids_ref",
            "dim",
            "index_type",
            "metric",
            "num_probes",
            "quantization",
            "sharding_strategy",
            "total_vectors"
        ])
    );
    assert_eq!(vector["backend"], "sqlite-vec");
    assert_eq!(vector["dim"], 8);
    assert_eq!(vector["metric"], "l2");
    assert_eq!(vector["sharding_strategy"], "cluster");
    assert_eq!(vector["num_probes"], 2);
    assert_eq!(vector["total_vectors"], items.len());
    assert_eq!(
        vector["centroids_ref"],
        format!("{root_url}/vector_meta/run_id={run_id}/centroids.npy")
    );
    let centroids = artifact(&out, &meta, "centroids_ref");
    assert_eq!((centroids.0, centroids.1), (4, 8), "shape [num_dbs, dim]");

    // Shards: the spec's sqlite-vec schema, kv empty, every vector with its id.
    edgeshard_native::sqlite_vec_ext::register();
    let mut total = 0;
    let shards_dir = out.join(format!("shards/run_id={run_id}"));
    for entry in std::fs::read_dir(&shards_dir).unwrap() {
        let db = entry.unwrap().path().join("attempt=00/shard.db");
        let conn = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let kv: i64 = conn
            .query_row("SELECT count(*) FROM kv", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kv, 0, "vector-only shards have an empty kv table");
        let ddl: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'vec_index'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            ddl,
            "CREATE VIRTUAL TABLE vec_index USING vec0(embedding float[8] distance_metric=l2)"
        );
        let n: i64 = conn
            .query_row("SELECT count(*) FROM vec_id_map", [], |r| r.get(0))
            .unwrap();
        total += n as usize;
    }
    assert_eq!(total, items.len());
}

#[test]
fn shardyfusion_style_vector_only_manifests_are_read() {
    let dir = temp_dir();
    let mut rng = rng(0x5f);
    let items = clustered(&mut rng, 800, 8, 4);
    let (out, _) = build_vector_only(
        dir.path(),
        &items,
        4,
        Metric::Cosine,
        VectorRoutingKind::Cluster,
        4,
    );
    // shardyfusion names no backend on vector-only manifests.
    edit_manifest_custom(&out, |custom| {
        custom["vector"].as_object_mut().unwrap().remove("backend");
    });
    let query = items[3].1.clone();
    let snap = Snapshot::open(out.to_str().unwrap()).unwrap();
    let response = snap.search(&query, 5, None).unwrap();
    assert_matches_brute_force(
        "no backend key",
        Metric::Cosine,
        &query,
        &items,
        &hits(&response),
        5,
        TOL,
    );
    drop(snap);

    // A shard missing is an error, never fewer results.
    let run_dir = std::fs::read_dir(out.join("shards"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let victim = &response.results[0];
    let shard_dir = run_dir.join(format!("db={:05}/attempt=00", victim.shard));
    std::fs::rename(shard_dir.join("shard.db"), dir.path().join("moved.db")).unwrap();
    let snap = Snapshot::open(out.to_str().unwrap()).unwrap();
    assert!(snap.search(&query, 5, None).is_err(), "missing shard");
    drop(snap);

    // LanceDB shards (vector_index.lance, no shard.db): detected, and refused clearly.
    for entry in std::fs::read_dir(&run_dir).unwrap() {
        let attempt = entry.unwrap().path().join("attempt=00");
        let _ = std::fs::remove_file(attempt.join("shard.db"));
        std::fs::create_dir_all(attempt.join("vector_index.lance")).unwrap();
    }
    let snap = Snapshot::open(out.to_str().unwrap()).unwrap();
    let err = snap.search(&query, 5, None).unwrap_err().to_string();
    if cfg!(feature = "lancedb") {
        // Detected as LanceDB and opened: the (empty) table is missing, an error not an empty shard.
        assert!(err.contains("vector_index"), "{err}");
    } else {
        assert!(
            err.contains("LanceDB") && err.contains("--features lancedb"),
            "{err}"
        );
    }
}

/// Cluster routing with spill: boundary vectors are stored in two shards, results list each
/// vector once, probing every shard still equals brute force, and with few probes recall is
/// at least that of the same snapshot without spill (higher on this data).
#[test]
fn cluster_spill_stores_boundary_vectors_twice_and_reports_them_once() {
    let dir = temp_dir();
    let mut rng = rng(0x5911);
    // No blob structure: k-means cells then cut through dense regions, so 2 probes of 8 miss
    // neighbours across the boundaries (what spill is for).
    let items: Items = (0..3_000)
        .map(|i| (VectorId::Int(i), random_vector(&mut rng, 16)))
        .collect();
    let queries: Vec<Vec<f32>> = (0..40).map(|_| random_vector(&mut rng, 16)).collect();
    let input = dir.path().join("spill.jsonl");
    write_items(&input, &items);
    let recall_and_rows = |spill: f64| {
        let out = dir.path().join(format!("snap-{spill}"));
        let mut opts = options(&input, &out, 8, Metric::L2);
        opts.vector_only = vector_only(VectorRoutingKind::Cluster, 2);
        if let Some(v) = opts.vector_only.as_mut() {
            v.spill = spill;
        }
        build(&opts).expect("build");
        let (_, meta) = manifest_meta(&out);
        let stored: u64 = Snapshot::open(out.to_str().unwrap())
            .unwrap()
            .manifest()
            .shards
            .iter()
            .map(|s| s.row_count)
            .sum();
        assert_eq!(meta["custom"]["vector"]["total_vectors"], items.len());
        let snap = Snapshot::open(out.to_str().unwrap()).unwrap();
        let mut found = 0usize;
        for q in &queries {
            let all = snap
                .search_with(
                    q,
                    &SearchOptions {
                        probes: Some(8),
                        ..SearchOptions::default()
                    },
                )
                .unwrap();
            assert_matches_brute_force("all probes", Metric::L2, q, &items, &hits(&all), 10, TOL);
            let two = snap.search_with(q, &SearchOptions::default()).unwrap();
            assert_eq!(two.shards_queried, 2);
            let ids: BTreeSet<String> = two.results.iter().map(|h| format!("{:?}", h.id)).collect();
            assert_eq!(ids.len(), two.results.len(), "a vector listed twice");
            let truth: BTreeSet<String> =
                edgeshard_tests::brute_force_knn(Metric::L2, q, &items, 10)
                    .into_iter()
                    .map(|(id, _)| format!("{id:?}"))
                    .collect();
            found += ids.intersection(&truth).count();
        }
        (found, stored, meta)
    };
    let (plain, plain_rows, _) = recall_and_rows(0.0);
    let (spilled, spilled_rows, meta) = recall_and_rows(0.3);
    assert_eq!(plain_rows, items.len() as u64);
    assert_eq!(
        spilled_rows,
        items.len() as u64 + 900,
        "30% of 3,000 stored twice"
    );
    assert_eq!(meta["custom"]["vector"]["spill_fraction"], 0.3);
    assert!(
        spilled > plain,
        "spill should find more true neighbours with 2 probes: {spilled} vs {plain} of 400"
    );
    // --spill needs cluster routing, and a fraction.
    for (routing, spill) in [
        (VectorRoutingKind::Lsh, 0.2),
        (VectorRoutingKind::Cluster, 1.5),
    ] {
        let out = dir.path().join("refused");
        let mut opts = options(&input, &out, 8, Metric::L2);
        opts.vector_only = vector_only(routing, 2);
        if let Some(v) = opts.vector_only.as_mut() {
            v.spill = spill;
        }
        assert!(build(&opts).is_err(), "{routing:?} spill {spill}");
        assert!(!out.join("_CURRENT").exists());
    }
}

#[test]
fn cli_vector_only_build_and_search() {
    let dir = temp_dir();
    let input = dir.path().join("v.jsonl");
    let out = dir.path().join("snap");
    let mut rng = rng(0xc11);
    let items = clustered(&mut rng, 1_200, 16, 6);
    write_items(&input, &items);
    let summary = json_lines(
        &run_cli(&[
            "build",
            "--quiet",
            "--input",
            input.to_str().unwrap(),
            "--key-field",
            "id",
            "--vector-field",
            "emb",
            "--payload-fields",
            "g,part",
            "--vector-only",
            "--routing",
            "cluster",
            "--shards",
            "6",
            "--probes",
            "2",
            "--metric",
            "l2",
            "--out",
            out.to_str().unwrap(),
        ])
        .unwrap(),
    );
    assert_eq!(summary[0]["vector_routing"], "cluster");
    assert_eq!(summary[0]["metric"], "l2");
    let query = vector_json(&items[10].1).to_string();
    let root = out.to_str().unwrap();
    let search = |extra: &[&str]| {
        let mut args = vec!["search", "--root", root, "--vector", &query, "--k", "5"];
        args.extend_from_slice(extra);
        run_cli(&args)
    };
    let rows = json_lines(&search(&[]).unwrap());
    assert_eq!(rows[0]["shards_queried"], 2, "the manifest's num_probes");
    let rows = json_lines(&search(&["--probes", "6"]).unwrap());
    assert!(rows[0]["shards_queried"].as_u64().unwrap() >= 2);
    let rows = json_lines(&search(&["--probes", "6", "--filter", "g=3", "--fields", "g"]).unwrap());
    let results = rows[0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    for hit in results {
        assert_eq!(hit["payload"], json!({"g": 3}));
    }
    assert!(search(&["--probes", "0"]).unwrap_err().contains("probes"));
    assert!(search(&["--filter", "nonsense"])
        .unwrap_err()
        .contains("FIELD=VALUE"));
    // Routing flags without --vector-only are refused.
    let err = run_cli(&[
        "build",
        "--input",
        input.to_str().unwrap(),
        "--key-field",
        "id",
        "--vector-field",
        "emb",
        "--routing",
        "lsh",
        "--out",
        dir.path().join("other").to_str().unwrap(),
    ])
    .unwrap_err();
    assert!(err.contains("--vector-only"), "{err}");
}
