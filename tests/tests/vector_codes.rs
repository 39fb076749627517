//! sqlite-vec shards with binary codes (`--quantization binary`): the codes file maps every
//! vector to its exact bytes in `shard.db`; a search's hits carry exactly the scores an exact
//! search gives them, and find the exact neighbours well (recall); range reads through the
//! map answer exactly as whole files do; a damaged, missing or swapped codes file is an error
//! that names it, never a different answer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use edgeshard_builder::build::{build, Quantization};
use edgeshard_builder::input::FieldMapping;
use edgeshard_native::{AccessMode, OpenOptions, SearchOptions, Snapshot, VectorId};
use edgeshard_shared::codes::{self, Codes};
use edgeshard_shared::filter::Filter;
use edgeshard_shared::vector::AnnParams;
use edgeshard_shared::Metric;
use edgeshard_tests::{
    brute_force_knn, build_options, random_vector, rng, temp_dir, vector_json, write_jsonl,
};
use rand::Rng;
use serde_json::json;
use std::path::{Path, PathBuf};

const N: usize = 3_000;
const DIM: usize = 128;
const SHARDS: u32 = 4;

type Items = Vec<(VectorId, Vec<f32>)>;

/// `N` vectors around 30 centres (embeddings cluster; sign codes rank clustered data far
/// better than uniform noise), payload `{"n": id, "even": bool}`, built with binary codes.
fn build_codes(dir: &Path, metric: Metric, seed: u64) -> (Items, PathBuf, Vec<Vec<f32>>) {
    let input = dir.join("vectors.jsonl");
    let out = dir.join("snap");
    let mut rng = rng(seed);
    let centres: Vec<Vec<f32>> = (0..30).map(|_| random_vector(&mut rng, DIM)).collect();
    let items: Items = (0..N as i64)
        .map(|i| {
            let centre = &centres[rng.random_range(0..centres.len())];
            let noise = random_vector(&mut rng, DIM);
            // dot_product and l2 with norms that vary.
            let scale = match metric {
                Metric::Cosine => 1.0,
                _ => 0.5 + (i % 5) as f32 * 0.25,
            };
            let v = centre
                .iter()
                .zip(&noise)
                .map(|(c, n)| (c + 0.35 * n) * scale)
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
    opts.quantization = Quantization::Binary;
    build(&opts).expect("build");
    (items, out, centres)
}

/// A query near one of the data's centres, as real queries are near real data.
fn query_near(centres: &[Vec<f32>], rng: &mut rand::rngs::StdRng) -> Vec<f32> {
    let centre = &centres[rng.random_range(0..centres.len())];
    let noise = random_vector(rng, DIM);
    centre
        .iter()
        .zip(&noise)
        .map(|(c, n)| c + 0.35 * n)
        .collect()
}

fn search(snap: &Snapshot, query: &[f32], ann: AnnParams) -> Vec<(VectorId, f64)> {
    snap.search_with(
        query,
        &SearchOptions {
            k: 10,
            ann,
            ..SearchOptions::default()
        },
    )
    .expect("search")
    .results
    .into_iter()
    .map(|h| (h.id, h.score))
    .collect()
}

fn shard_files(out: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![out.join("shards")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.file_name().is_some_and(|n| n == name) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn check_metric(metric: Metric, seed: u64, min_recall: f64) {
    let dir = temp_dir();
    let (items, out, centres) = build_codes(dir.path(), metric, seed);
    let root = out.to_str().unwrap();
    let whole = Snapshot::open(root).expect("open");
    let ranged = Snapshot::open_with(
        root,
        OpenOptions {
            access: AccessMode::Range,
            ..OpenOptions::default()
        },
    )
    .expect("open by range");
    let vector = whole.info().vector.expect("custom.vector");
    assert_eq!(vector["index_params"]["codes"], "binary", "{vector}");
    assert!(vector["quantization"].is_null(), "{vector}");

    let mut rng = rng(seed + 1);
    let mut found = 0usize;
    const QUERIES: usize = 25;
    for _ in 0..QUERIES {
        let query = query_near(&centres, &mut rng);
        let want = brute_force_knn(metric, &query, &items, 10);
        let exact = search(
            &whole,
            &query,
            AnnParams {
                exact: true,
                ..AnnParams::default()
            },
        );
        let got = search(&whole, &query, AnnParams::default());
        // The map read by range gives the same vectors, hence the same answer.
        assert_eq!(search(&ranged, &query, AnnParams::default()), got);
        // Every hit's score is the exact one (the exact search over all of the shard scores
        // every vector; a hit it does not list must score no better than its 10th).
        let all = search(
            &whole,
            &query,
            AnnParams {
                exact: true,
                ..AnnParams::default()
            },
        );
        for (id, score) in &got {
            let truth = metric.score(
                &query,
                &items[match id {
                    VectorId::Int(i) => *i as usize,
                    other => panic!("{other:?}"),
                }]
                .1,
            );
            assert!(
                (score - truth).abs() < 1e-4 * truth.abs().max(1.0),
                "{metric:?}: {id:?} scored {score}, exactly {truth}"
            );
        }
        assert_eq!(all, exact);
        // Sorted, best first.
        assert!(got.windows(2).all(|w| w[0].1 <= w[1].1), "{got:?}");
        found += got
            .iter()
            .filter(|(id, _)| want.iter().any(|(w, _)| w == id))
            .count();
    }
    let recall = found as f64 / (QUERIES * 10) as f64;
    eprintln!("{metric:?}: recall@10 {recall}");
    assert!(
        recall >= min_recall,
        "{metric:?}: recall@10 {recall} below {min_recall}"
    );
}

#[test]
fn cosine_hits_are_exact_and_found() {
    check_metric(Metric::Cosine, 11, 0.5);
}

#[test]
fn l2_hits_are_exact_and_found() {
    check_metric(Metric::L2, 12, 0.5);
}

#[test]
fn dot_product_hits_are_exact_and_found() {
    check_metric(Metric::DotProduct, 13, 0.5);
}

/// Real embeddings (the bundled Debian sample, 2,000 x 384 MiniLM, and its 20 text queries):
/// the default search finds nearly all of the exact top 10.
#[test]
fn real_embeddings_are_found() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/debian-sample");
    let dir = temp_dir();
    let out = dir.path().join("snap");
    let mut opts = build_options(&sample.join("packages.parquet"), &out);
    opts.fields = FieldMapping {
        key_field: "id".into(),
        value_field: Some("text".into()),
        vector_field: Some("embedding".into()),
        payload_fields: Vec::new(),
    };
    opts.shards = 4;
    opts.quantization = Quantization::Binary;
    build(&opts).expect("build");
    let snap = Snapshot::open(out.to_str().unwrap()).unwrap();
    let text = std::fs::read_to_string(sample.join("text_queries.jsonl")).unwrap();
    let queries: Vec<Vec<f32>> = text
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            serde_json::from_value(row["vector"].clone()).unwrap()
        })
        .collect();
    assert_eq!(queries.len(), 20);
    let mut found = 0;
    for q in &queries {
        let exact = search(
            &snap,
            q,
            AnnParams {
                exact: true,
                ..AnnParams::default()
            },
        );
        let got = search(&snap, q, AnnParams::default());
        found += got.iter().filter(|hit| exact.contains(hit)).count();
    }
    let recall = found as f64 / (queries.len() * 10) as f64;
    eprintln!("Debian sample: recall@10 {recall}");
    assert!(recall >= 0.95, "recall@10 {recall} on the Debian sample");
}

/// A cold search by range reads each shard in a fixed number of rounds, whatever the hits:
/// its open (the sidecar and first page), its codes, the candidates' pages (one round, through
/// the codes' map) and the hits' id and payload leaves (one round, found through the pinned
/// interior pages): 4 per shard. Without the planned reads, each hit's lookup costs a round of
/// its own.
#[test]
fn a_cold_range_search_takes_a_fixed_number_of_rounds() {
    let dir = temp_dir();
    let (_, out, centres) = build_codes(dir.path(), Metric::Cosine, 51);
    let mut rng = rng(52);
    for _ in 0..3 {
        let snap = Snapshot::open_with(
            out.to_str().unwrap(),
            OpenOptions {
                access: AccessMode::Range,
                ..OpenOptions::default()
            },
        )
        .unwrap();
        let before = snap.stats();
        let got = search(&snap, &query_near(&centres, &mut rng), AnnParams::default());
        assert_eq!(got.len(), 10);
        let rounds = snap.stats().rounds - before.rounds;
        assert!(
            rounds <= 4 * SHARDS as u64,
            "{rounds} rounds for a cold search of {SHARDS} shards"
        );
    }
}

/// A larger refine re-ranks more candidates: recall can only grow, and with every vector a
/// candidate the answer is the exact search's.
#[test]
fn refining_everything_is_exact() {
    let dir = temp_dir();
    let (_, out, _) = build_codes(dir.path(), Metric::Cosine, 21);
    let snap = Snapshot::open(out.to_str().unwrap()).unwrap();
    let mut rng = rng(22);
    for _ in 0..5 {
        let query = random_vector(&mut rng, DIM);
        let exact = search(
            &snap,
            &query,
            AnnParams {
                exact: true,
                ..AnnParams::default()
            },
        );
        let all = search(
            &snap,
            &query,
            AnnParams {
                refine_factor: Some(N as u32),
                ..AnnParams::default()
            },
        );
        assert_eq!(all, exact);
    }
    // A filter is answered exactly (the codes are not used for it).
    let query = random_vector(&mut rng, DIM);
    let filter = Filter::parse(&["even=true".to_string()]).unwrap();
    let filtered = snap
        .search_with(
            &query,
            &SearchOptions {
                k: 10,
                filter: Some(filter),
                ..SearchOptions::default()
            },
        )
        .unwrap();
    assert_eq!(filtered.results.len(), 10);
    assert!(filtered
        .results
        .iter()
        .all(|h| matches!(h.id, VectorId::Int(i) if i % 2 == 0)));
}

/// The map in every codes file names exactly the bytes `vec0` returns for each rowid.
#[test]
fn the_map_names_every_vectors_bytes() {
    let dir = temp_dir();
    let (_, out, _) = build_codes(dir.path(), Metric::DotProduct, 31);
    edgeshard_native::sqlite_vec_ext::register();
    let dbs = shard_files(&out, "shard.db");
    assert_eq!(dbs.len(), SHARDS as usize);
    let mut checked = 0;
    for db in dbs {
        let image = std::fs::read(&db).unwrap();
        let file = std::fs::read(db.with_file_name(codes::FILE_NAME)).unwrap();
        let codes = Codes::parse(&file, Some((image.len() / 4096) as u32)).unwrap();
        let conn = rusqlite::Connection::open(&db).unwrap();
        let mut stmt = conn
            .prepare("SELECT embedding FROM vec_index WHERE rowid = ?1")
            .unwrap();
        for ordinal in 0..codes.len() {
            let page = |n: u32| {
                let start = (n as usize - 1) * 4096;
                image.get(start..start + 4096)
            };
            let mapped = codes.read_vector(ordinal, page).unwrap();
            let stored: Vec<u8> = stmt
                .query_row([codes.rowid(ordinal)], |r| r.get(0))
                .unwrap();
            assert_eq!(mapped, stored, "{} vector {ordinal}", db.display());
            checked += 1;
        }
    }
    assert_eq!(checked, N);
}

/// A damaged, missing or swapped codes file fails the search with an error naming the file;
/// an exact search (which does not read it) still answers.
#[test]
fn bad_codes_files_are_errors() {
    let dir = temp_dir();
    let (_, out, _) = build_codes(dir.path(), Metric::Cosine, 41);
    let root = out.to_str().unwrap();
    let files = shard_files(&out, codes::FILE_NAME);
    assert_eq!(files.len(), SHARDS as usize);
    let query = random_vector(&mut rng(42), DIM);
    let fails = |why: &str| {
        let snap = Snapshot::open(root).unwrap();
        let err = snap
            .search_with(
                &query,
                &SearchOptions {
                    k: 10,
                    ..SearchOptions::default()
                },
            )
            .expect_err(why)
            .to_string();
        assert!(err.contains("shard.codes"), "{why}: {err}");
        let exact = snap.search_with(
            &query,
            &SearchOptions {
                k: 10,
                ann: AnnParams {
                    exact: true,
                    ..AnnParams::default()
                },
                ..SearchOptions::default()
            },
        );
        assert!(exact.is_ok(), "{why}: exact search failed too");
        err
    };
    let original = std::fs::read(&files[0]).unwrap();
    let mut flipped = original.clone();
    flipped[original.len() / 2] ^= 1;
    std::fs::write(&files[0], &flipped).unwrap();
    let err = fails("a flipped bit");
    assert!(err.contains("hash"), "{err}");
    let verify = Snapshot::open(root).unwrap().verify_shards();
    assert!(
        verify.is_err_and(|e| e.to_string().contains("shard.codes")),
        "verify passed a damaged codes file"
    );
    std::fs::write(&files[0], &original[..original.len() - 100]).unwrap();
    fails("a truncated file");
    std::fs::remove_file(&files[0]).unwrap();
    fails("a missing file");
    // Another shard's (valid) codes in its place.
    std::fs::copy(&files[1], &files[0]).unwrap();
    fails("another shard's codes");
    std::fs::write(&files[0], &original).unwrap();
    let checks = Snapshot::open(root).unwrap().verify_shards().unwrap();
    assert!(
        checks.iter().all(|c| c.checked.ends_with("codes")),
        "{checks:?}"
    );
    assert!(Snapshot::open(root)
        .unwrap()
        .search(&query, 10, None)
        .is_ok());
}

/// The codes are a file beside the shard, never a change to it: the same records and run id
/// give byte-identical `shard.db` files with and without `--quantization binary`, so every
/// reader that ignores the codes (shardyfusion's) reads exactly the flat shard it always did.
#[test]
fn shard_files_are_unchanged_by_codes() {
    let dir = temp_dir();
    let input = dir.path().join("v.jsonl");
    let mut rng = rng(61);
    write_jsonl(
        &input,
        (0..500).map(
            |i| json!({"id": i, "value": "x", "emb": vector_json(&random_vector(&mut rng, 16))}),
        ),
    );
    let mut files = Vec::new();
    for quantization in [Quantization::None, Quantization::Binary] {
        let out = dir.path().join(format!("{quantization:?}"));
        let mut opts = build_options(&input, &out);
        opts.fields.vector_field = Some("emb".into());
        opts.shards = 2;
        opts.run_id = Some("same-run".into());
        opts.quantization = quantization;
        build(&opts).expect("build");
        let dbs: Vec<Vec<u8>> = shard_files(&out, "shard.db")
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        assert_eq!(dbs.len(), 2);
        assert_eq!(
            shard_files(&out, codes::FILE_NAME).len(),
            if quantization == Quantization::Binary {
                2
            } else {
                0
            }
        );
        files.push(dbs);
    }
    assert!(files[0] == files[1], "shard.db differs with codes");
}
