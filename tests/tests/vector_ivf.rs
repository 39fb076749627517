//! sqlite-vec shards with the IVF index (`--vector-index ivf`): a search reads the cells it
//! probes; probing every cell (or `exact`) equals brute force; fewer cells trade recall; filters
//! keep returning k matches; and the shard stays a plain sqlite-vec database that a reader
//! knowing nothing of the index (shardyfusion's query) searches exactly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use edgeshard_builder::build::build;
use edgeshard_builder::input::FieldMapping;
use edgeshard_builder::vector_index::IndexKind;
use edgeshard_native::{SearchOptions, Snapshot, VectorId};
use edgeshard_shared::filter::Filter;
use edgeshard_shared::vector::AnnParams;
use edgeshard_shared::Metric;
use edgeshard_tests::{
    assert_matches_brute_force, brute_force_knn, build_options, parse_original_id, random_vector,
    rng, run_cli, temp_dir, vector_json, write_jsonl, Tolerance,
};
use serde_json::{json, Value};
use std::path::Path;

const N: usize = 4_000;
const DIM: usize = 24;
const SHARDS: u32 = 4;
const TOL: Tolerance = Tolerance {
    tie_eps: 1e-6,
    score_tol: 1e-4,
};

type Items = Vec<(VectorId, Vec<f32>)>;

/// `N` random vectors (ids 0..N, payload `{"n": id, "even": bool}`) built into an IVF snapshot.
fn build_ivf(dir: &Path, metric: Metric, seed: u64) -> (Items, std::path::PathBuf) {
    let input = dir.join("vectors.jsonl");
    let out = dir.join("snap");
    let mut rng = rng(seed);
    let items: Items = (0..N as i64)
        .map(|i| {
            // dot_product with norms that vary (the L2 reduction then matters).
            let scale = match metric {
                Metric::DotProduct => 0.5 + (i % 7) as f32 * 0.25,
                _ => 1.0,
            };
            let v = random_vector(&mut rng, DIM)
                .into_iter()
                .map(|x| x * scale)
                .collect();
            (VectorId::Int(i), v)
        })
        .collect();
    write_jsonl(
        &input,
        items.iter().map(|(id, v)| {
            let VectorId::Int(i) = id else { unreachable!() };
            json!({"id": i, "value": format!("v{i}"), "emb": vector_json(v), "n": i,
                   "even": i % 2 == 0})
        }),
    );
    let mut opts = build_options(&input, &out);
    opts.fields = FieldMapping {
        key_field: "id".into(),
        value_field: Some("value".into()),
        vector_field: Some("emb".into()),
        payload_fields: vec!["n".into(), "even".into()],
    };
    opts.shards = SHARDS;
    opts.metric = metric;
    opts.vector_index = IndexKind::Ivf;
    build(&opts).expect("build");
    (items, out)
}

fn search(snap: &Snapshot, query: &[f32], ann: AnnParams, filter: Option<Filter>) -> Items {
    let response = snap
        .search_with(
            query,
            &SearchOptions {
                k: 10,
                ann,
                filter,
                ..SearchOptions::default()
            },
        )
        .expect("search");
    response
        .results
        .iter()
        .map(|h| (h.id.clone(), vec![h.score as f32]))
        .collect()
}

fn recall(got: &Items, want: &[(VectorId, f64)]) -> f64 {
    let want: Vec<&VectorId> = want.iter().map(|(id, _)| id).collect();
    got.iter().filter(|(id, _)| want.contains(&id)).count() as f64 / want.len() as f64
}

fn check_metric(metric: Metric, seed: u64) {
    let dir = temp_dir();
    let (items, out) = build_ivf(dir.path(), metric, seed);
    let snap = Snapshot::open(out.to_str().unwrap()).expect("open");
    let info = snap.info();
    let vector = info.vector.expect("custom.vector");
    assert_eq!(vector["index_type"], "ivf", "{vector}");
    let default_nprobes = vector["index_params"]["nprobes"].as_u64().unwrap() as usize;
    let max_cells = vector["index_params"]["max_cells"].as_u64().unwrap() as usize;
    assert_eq!(max_cells, 32, "sqrt(~1,000 rows per shard)");

    let mut rng = rng(seed + 1);
    let (mut one, mut default) = (0.0, 0.0);
    const QUERIES: usize = 30;
    for q in 0..QUERIES {
        let query = random_vector(&mut rng, DIM);
        let want = brute_force_knn(metric, &query, &items, 10);
        // Every cell probed, or no index at all: exactly brute force.
        for (label, ann) in [
            (
                "exact",
                AnnParams {
                    exact: true,
                    ..AnnParams::default()
                },
            ),
            (
                "all cells",
                AnnParams {
                    nprobes: Some(max_cells),
                    ..AnnParams::default()
                },
            ),
        ] {
            let got: Vec<(VectorId, f64)> = search(&snap, &query, ann, None)
                .into_iter()
                .map(|(id, s)| (id, s[0] as f64))
                .collect();
            assert_matches_brute_force(
                &format!("{} query {q} {label}", metric.as_str()),
                metric,
                &query,
                &items,
                &got,
                10,
                Tolerance {
                    score_tol: 1e-4,
                    ..TOL
                },
            );
        }
        let probe = |n: usize| AnnParams {
            nprobes: Some(n),
            ..AnnParams::default()
        };
        one += recall(&search(&snap, &query, probe(1), None), &want);
        default += recall(&search(&snap, &query, AnnParams::default(), None), &want);
        assert_eq!(
            search(&snap, &query, AnnParams::default(), None),
            search(&snap, &query, probe(default_nprobes), None),
            "the default is the manifest's nprobes"
        );
    }
    let (one, default) = (one / QUERIES as f64, default / QUERIES as f64);
    // Random vectors have no clusters: one cell of 32 finds few neighbours, so the index is
    // really limiting what is read; more cells find more.
    assert!(
        one < 0.5,
        "{}: recall@10 with 1 cell {one}",
        metric.as_str()
    );
    assert!(
        default > one,
        "{}: recall@10 default {default} <= 1 cell {one}",
        metric.as_str()
    );

    // A filter still returns k matches, all matching, the nearest among the probed cells.
    let query = random_vector(&mut rng, DIM);
    let filter = Filter::parse(&["even=true".to_string()]).unwrap();
    let got = search(&snap, &query, AnnParams::default(), Some(filter));
    assert_eq!(got.len(), 10);
    for (id, _) in &got {
        let VectorId::Int(i) = id else { unreachable!() };
        assert_eq!(i % 2, 0, "{id:?} does not match even=true");
    }
    let filter = Filter::parse(&["n=17".to_string()]).unwrap();
    let got = search(&snap, &query, AnnParams::default(), Some(filter));
    assert_eq!(got.len(), 1, "the one match, wherever its cell");
    assert_eq!(got[0].0, VectorId::Int(17));
}

#[test]
fn ivf_cosine_is_exact_over_all_cells_and_approximate_below() {
    check_metric(Metric::Cosine, 11);
}

#[test]
fn ivf_l2_is_exact_over_all_cells_and_approximate_below() {
    check_metric(Metric::L2, 12);
}

#[test]
fn ivf_dot_product_is_exact_over_all_cells_and_approximate_below() {
    check_metric(Metric::DotProduct, 13);
}

/// What shardyfusion's reader runs (format spec section 5): the plain `vec0` KNN, no cell
/// constraint, on the shard file itself with stock sqlite-vec. It must see every vector.
#[test]
fn an_ivf_shard_answers_a_plain_sqlite_vec_query_exactly() {
    let dir = temp_dir();
    let (items, out) = build_ivf(dir.path(), Metric::Cosine, 21);
    edgeshard_native::sqlite_vec_ext::register();
    let mut rng = rng(22);
    let shard_files: Vec<_> = walk_files(&out)
        .into_iter()
        .filter(|p| p.ends_with("shard.db"))
        .collect();
    assert_eq!(shard_files.len(), SHARDS as usize);
    let queries: Vec<Vec<f32>> = (0..10).map(|_| random_vector(&mut rng, DIM)).collect();
    let mut per_query: Vec<Vec<(VectorId, f64)>> = vec![Vec::new(); queries.len()];
    for path in &shard_files {
        let conn =
            rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap();
        // The index is there (cells as a partition key, the centroid table)...
        let ddl: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'vec_index'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(ddl.contains("cell integer partition key"), "{ddl}");
        let cells: i64 = conn
            .query_row("SELECT count(*) FROM vec_ivf_centroids", [], |r| r.get(0))
            .unwrap();
        assert!(cells > 1);
        // ...and the plain query ignores it.
        for (q, query) in queries.iter().enumerate() {
            let bytes = edgeshard_shared::vector::to_le_bytes(query);
            let mut stmt = conn
                .prepare(
                    "SELECT m.original_id, v.distance FROM vec_index v \
                     JOIN vec_id_map m ON m.internal_id = v.rowid \
                     WHERE v.embedding MATCH ?1 AND k = 10",
                )
                .unwrap();
            let rows = stmt
                .query_map([bytes], |r| {
                    Ok((parse_original_id(&r.get::<_, String>(0)?), r.get(1)?))
                })
                .unwrap();
            per_query[q].extend(rows.map(Result::unwrap));
        }
    }
    for (q, query) in queries.iter().enumerate() {
        let mut got = per_query[q].clone();
        got.sort_by(|a, b| a.1.total_cmp(&b.1));
        got.truncate(10);
        assert_matches_brute_force(
            &format!("plain query {q}"),
            Metric::Cosine,
            query,
            &items,
            &got,
            10,
            TOL,
        );
    }
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn the_cli_takes_ivf_nprobes_and_exact_and_refuses_what_does_not_fit() {
    let dir = temp_dir();
    let (items, out) = build_ivf(dir.path(), Metric::L2, 31);
    let root = out.to_str().unwrap();
    let query = &items[5].1;
    let vector = serde_json::to_string(&vector_json(query)).unwrap();
    let ids = |text: String| -> Vec<Value> {
        let v: Value = serde_json::from_str(&text).unwrap();
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].clone())
            .collect()
    };
    let exact = ids(run_cli(&["search", "--root", root, "--vector", &vector, "--exact"]).unwrap());
    let all = ids(run_cli(&[
        "search",
        "--root",
        root,
        "--vector",
        &vector,
        "--nprobes",
        "1000",
    ])
    .unwrap());
    assert_eq!(exact, all);
    assert_eq!(exact[0], json!(5), "a stored vector finds itself first");
    let one = ids(run_cli(&[
        "search",
        "--root",
        root,
        "--vector",
        &vector,
        "--nprobes",
        "1",
    ])
    .unwrap());
    assert_eq!(one[0], json!(5), "its own cell is probed first");
    let err = run_cli(&[
        "search",
        "--root",
        root,
        "--vector",
        &vector,
        "--exact",
        "--nprobes",
        "2",
    ])
    .unwrap_err();
    assert!(err.contains("cannot be used with"), "{err}");

    let input = dir.path().join("vectors.jsonl");
    let input = input.to_str().unwrap();
    let out2 = dir.path().join("other");
    let out2 = out2.to_str().unwrap();
    let err = run_cli(&[
        "build",
        "--input",
        input,
        "--key-field",
        "id",
        "--value-field",
        "value",
        "--vector-index",
        "ivf",
        "--out",
        out2,
    ])
    .unwrap_err();
    assert!(
        err.contains("--vector-index ivf needs --vector-field"),
        "{err}"
    );
    let err = run_cli(&[
        "build",
        "--input",
        input,
        "--key-field",
        "id",
        "--vector-field",
        "emb",
        "--vector-index",
        "ivf-pq",
        "--out",
        out2,
    ])
    .unwrap_err();
    assert!(err.contains("LanceDB"), "{err}");
}

/// `--vector-index auto` on sqlite-vec: exact (flat) while the largest shard holds fewer than
/// `AUTO_MIN_ROWS` vectors, IVF from there, flat when binary codes are asked for.
#[test]
fn auto_indexes_large_shards_only() {
    use edgeshard_builder::build::Quantization;
    use edgeshard_shared::ivf::AUTO_MIN_ROWS;
    let dir = temp_dir();
    let mut rng = rng(31);
    for (rows, quantization, want) in [
        (AUTO_MIN_ROWS - 1, Quantization::None, "flat"),
        (AUTO_MIN_ROWS, Quantization::None, "ivf"),
        (AUTO_MIN_ROWS, Quantization::Binary, "flat"),
    ] {
        let input = dir.path().join(format!("v{rows}{quantization:?}.jsonl"));
        let out = dir.path().join(format!("snap{rows}{quantization:?}"));
        write_jsonl(
            &input,
            (0..rows).map(
                |i| json!({"id": i, "value": "v", "emb": vector_json(&random_vector(&mut rng, 4))}),
            ),
        );
        let mut opts = build_options(&input, &out);
        opts.fields.vector_field = Some("emb".into());
        opts.shards = 1;
        opts.vector_index = IndexKind::Auto;
        opts.quantization = quantization;
        build(&opts).expect("build");
        let snap = Snapshot::open(out.to_str().unwrap()).unwrap();
        let vector = snap.info().vector.expect("custom.vector");
        assert_eq!(
            vector["index_type"], want,
            "{rows} rows, {quantization:?}: {vector}"
        );
    }
}
