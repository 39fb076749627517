//! Bad input is refused with the record number and field, and publishes nothing: a good snapshot
//! already in the root stays current and untouched. Also the CSV and Parquet happy paths.

use edgeshard_builder::build::{build, BuildOptions, DuplicatePolicy};
use edgeshard_builder::input::{FieldMapping, InputFormat};
use edgeshard_native::{Snapshot, VectorId};
use edgeshard_shared::{Key, KeyEncoding, Metric};
use edgeshard_tests::{
    assert_matches_brute_force, build_options, random_vector, rng, temp_dir, vector_json,
    write_jsonl, write_parquet, write_text, ParquetColumns, RootState, TempDir, Tolerance,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const TOL: Tolerance = Tolerance {
    tie_eps: 1e-6,
    score_tol: 1e-5,
};

fn vector_fields() -> FieldMapping {
    FieldMapping {
        key_field: "id".into(),
        value_field: Some("value".into()),
        vector_field: Some("emb".into()),
        payload_fields: vec![],
    }
}

/// A temp dir whose `snap/` root already holds a good published snapshot (keys 1..=20).
fn root_with_good_snapshot() -> (TempDir, PathBuf) {
    let dir = temp_dir();
    let input = dir.path().join("good.jsonl");
    let root = dir.path().join("snap");
    write_jsonl(
        &input,
        (1..=20).map(|i| json!({"id": i, "value": format!("good{i}"), "emb": [i, 1, 0, 0]})),
    );
    let mut opts = build_options(&input, &root);
    opts.fields = vector_fields();
    opts.shards = 4;
    build(&opts).expect("good build");
    (dir, root)
}

fn assert_good_snapshot_serves(root: &Path) {
    let snap = Snapshot::open(root.to_str().unwrap()).expect("old snapshot still opens");
    for i in [1i64, 7, 20] {
        assert_eq!(
            snap.get(&Key::Int(i)).unwrap(),
            Some(format!("good{i}").into_bytes())
        );
    }
}

/// Runs a build that must fail; checks the message and that nothing was published.
fn assert_refused(root: &Path, opts: &BuildOptions, needles: &[&str]) -> String {
    let before = RootState::capture(root);
    assert!(before.current.is_some());
    let err = build(opts).expect_err("the build must fail").to_string();
    for needle in needles {
        assert!(
            err.contains(needle),
            "error {err:?} should mention {needle:?}"
        );
    }
    let after = RootState::capture(root);
    assert_eq!(after.current, before.current, "_CURRENT changed: {err}");
    assert_eq!(
        after.manifests, before.manifests,
        "a manifest appeared: {err}"
    );
    assert_eq!(
        after.shard_runs, before.shard_runs,
        "a shard run appeared: {err}"
    );
    assert!(
        after.staging.is_empty(),
        "staging left behind: {:?}",
        after.staging
    );
    assert_good_snapshot_serves(root);
    err
}

fn jsonl_case(dir: &Path, name: &str, rows: Vec<Value>) -> PathBuf {
    let path = dir.join(format!("{name}.jsonl"));
    write_jsonl(&path, rows);
    path
}

#[test]
fn wrong_vector_dimension() {
    let (dir, root) = root_with_good_snapshot();
    let input = jsonl_case(
        dir.path(),
        "dim",
        vec![
            json!({"id": 100, "value": "a", "emb": [1, 2, 3, 4]}),
            json!({"id": 101, "value": "b", "emb": [1, 2, 3, 4]}),
            json!({"id": 102, "value": "c", "emb": [1, 2, 3]}),
            json!({"id": 103, "value": "d", "emb": [1, 2, 3, 4]}),
        ],
    );
    let mut opts = build_options(&input, &root);
    opts.fields = vector_fields();
    assert_refused(&root, &opts, &["record 3", "\"emb\"", "dimension 3", "4"]);
}

#[test]
fn nan_in_a_csv_vector() {
    let (dir, root) = root_with_good_snapshot();
    let input = dir.path().join("nan.csv");
    write_text(
        &input,
        "id,value,emb\nk1,a,\"[1.0, 2.0, 3.0, 4.0]\"\nk2,b,\"[0.5, 1.0, 2.0, 3.0]\"\nk3,c,\"[1.0, NaN, 3.0, 4.0]\"\n",
    );
    let mut opts = build_options(&input, &root);
    opts.fields = vector_fields();
    assert_refused(&root, &opts, &["record 3", "\"emb\"", "NaN"]);
}

#[test]
fn an_unclosed_quote_in_a_csv_file() {
    // The csv crate ends an unclosed quoted field at the end of the input without an error:
    // record 1's value swallowed record 2, and the build published 1 row with exit 0.
    let (dir, root) = root_with_good_snapshot();
    let input = dir.path().join("unclosed.csv");
    write_text(&input, "id,value\n1,\"abc\n2,d\n");
    let opts = build_options(&input, &root);
    assert_refused(&root, &opts, &["unclosed.csv:2", "never closed"]);
    // Quotes that are closed, escaped (`""`) or inside an unquoted field are fine.
    let good = dir.path().join("quotes.csv");
    write_text(
        &good,
        "id,value\n1,\"a \"\"quoted\"\" word\"\n2,5\" tall\n3,\"two\nlines\"\n4,\"\"\n",
    );
    let summary = build(&build_options(&good, &root)).expect("well-quoted CSV");
    assert_eq!(summary.rows, 4);
    let snapshot = Snapshot::open(root.to_str().unwrap()).unwrap();
    let values: Vec<Option<Vec<u8>>> = ["1", "2", "3", "4"]
        .iter()
        .map(|k| snapshot.get(&Key::Str(k.to_string())).unwrap())
        .collect();
    assert_eq!(
        values,
        [&b"a \"quoted\" word"[..], b"5\" tall", b"two\nlines", b""].map(|v| Some(v.to_vec()))
    );
}

#[test]
fn a_csv_header_that_names_a_column_twice() {
    // The last `id` column silently won.
    let (dir, root) = root_with_good_snapshot();
    let input = dir.path().join("twice.csv");
    write_text(&input, "id,id,value\n1,2,a\n");
    let opts = build_options(&input, &root);
    assert_refused(&root, &opts, &["twice.csv", "\"id\" twice"]);
}

#[test]
fn infinity_in_a_csv_vector() {
    let (dir, root) = root_with_good_snapshot();
    let input = dir.path().join("inf.csv");
    write_text(
        &input,
        "id,value,emb\nk1,a,\"[1.0, 2.0, 3.0, 4.0]\"\nk2,b,\"[1.0, 2.0, -Infinity, 4.0]\"\n",
    );
    let mut opts = build_options(&input, &root);
    opts.fields = vector_fields();
    assert_refused(&root, &opts, &["record 2", "\"emb\"", "inf"]);
}

#[test]
fn non_finite_in_a_parquet_vector() {
    for (bad, name) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf")] {
        let (dir, root) = root_with_good_snapshot();
        let input = dir.path().join("bad.parquet");
        let ids: Vec<i64> = (0..6).collect();
        let values: Vec<Vec<u8>> = ids.iter().map(|i| vec![*i as u8; 3]).collect();
        let mut vectors: Vec<Vec<f32>> =
            ids.iter().map(|i| vec![1.0, *i as f32, 0.5, 2.0]).collect();
        vectors[4][2] = bad;
        write_parquet(
            &input,
            &ParquetColumns {
                ids: &ids,
                values: &values,
                vectors: Some(&vectors),
                tags: None,
            },
        );
        let mut opts = build_options(&input, &root);
        opts.fields = vector_fields();
        assert_refused(&root, &opts, &["record 5", "\"emb\"", "component 2", name]);
    }
}

#[test]
fn missing_key() {
    let (dir, root) = root_with_good_snapshot();
    let input = jsonl_case(
        dir.path(),
        "nokey",
        vec![
            json!({"id": 1, "value": "a"}),
            json!({"value": "b"}),
            json!({"id": 3, "value": "c"}),
        ],
    );
    let opts = build_options(&input, &root);
    assert_refused(&root, &opts, &["record 2", "\"id\"", "missing key"]);
}

#[test]
fn keys_that_do_not_fit_the_encoding() {
    let (dir, root) = root_with_good_snapshot();
    // A string key with --key-encoding u64be.
    let input = jsonl_case(
        dir.path(),
        "strkey",
        vec![
            json!({"id": 1, "value": "a"}),
            json!({"id": "abc", "value": "b"}),
        ],
    );
    let mut opts = build_options(&input, &root);
    opts.key_encoding = Some(KeyEncoding::U64Be);
    assert_refused(&root, &opts, &["record 2", "\"id\"", "u64be"]);

    // A negative integer (u64be inferred from the first record).
    let input = jsonl_case(
        dir.path(),
        "negative",
        vec![
            json!({"id": 1, "value": "a"}),
            json!({"id": 2, "value": "b"}),
            json!({"id": 3, "value": "c"}),
            json!({"id": -5, "value": "d"}),
        ],
    );
    let opts = build_options(&input, &root);
    assert_refused(&root, &opts, &["record 4", "\"id\"", "-5", "u64be"]);

    // u32be overflow.
    let input = jsonl_case(
        dir.path(),
        "u32",
        vec![
            json!({"id": 4294967295u64, "value": "max"}),
            json!({"id": 4294967296u64, "value": "over"}),
        ],
    );
    let mut opts = build_options(&input, &root);
    opts.key_encoding = Some(KeyEncoding::U32Be);
    assert_refused(&root, &opts, &["record 2", "\"id\"", "4294967296", "u32be"]);
}

#[test]
fn duplicate_keys() {
    let (dir, root) = root_with_good_snapshot();
    let rows = vec![
        json!({"id": 10, "value": "first"}),
        json!({"id": 11, "value": "x"}),
        json!({"id": 12, "value": "y"}),
        json!({"id": 13, "value": "z"}),
        json!({"id": 10, "value": "second"}),
    ];
    let input = jsonl_case(dir.path(), "dups", rows);
    let opts = build_options(&input, &root);
    assert_refused(&root, &opts, &["duplicate key 10", "records 1 and 5"]);

    // last-wins: the build succeeds and the later value is the one stored.
    let mut opts = build_options(&input, &root);
    opts.on_duplicate = DuplicatePolicy::LastWins;
    let summary = build(&opts).expect("last-wins build");
    assert_eq!(summary.rows, 4);
    assert_eq!(summary.duplicates_dropped, 1);
    let snap = Snapshot::open(root.to_str().unwrap()).unwrap();
    assert_eq!(snap.get(&Key::Int(10)).unwrap(), Some(b"second".to_vec()));
    assert_eq!(snap.get(&Key::Int(13)).unwrap(), Some(b"z".to_vec()));
    assert_eq!(
        snap.get(&Key::Int(1)).unwrap(),
        None,
        "the new snapshot is current"
    );
}

#[test]
fn empty_input() {
    let (dir, root) = root_with_good_snapshot();
    let empty = dir.path().join("empty.jsonl");
    write_text(&empty, "");
    assert_refused(&root, &build_options(&empty, &root), &["no records"]);
    let blank = dir.path().join("blank.jsonl");
    write_text(&blank, "\n  \n\n");
    assert_refused(&root, &build_options(&blank, &root), &["no records"]);
    let header_only = dir.path().join("header.csv");
    write_text(&header_only, "id,value\n");
    assert_refused(&root, &build_options(&header_only, &root), &["no records"]);
}

#[test]
fn zero_vector_with_cosine() {
    let (dir, root) = root_with_good_snapshot();
    let rows = vec![
        json!({"id": 1, "value": "a", "emb": [1, 0, 0, 0]}),
        json!({"id": 2, "value": "b", "emb": [0, 0, 0, 0]}),
    ];
    let input = jsonl_case(dir.path(), "zero", rows);
    let mut opts = build_options(&input, &root);
    opts.fields = vector_fields();
    assert_refused(&root, &opts, &["record 2", "\"emb\"", "zero"]);
    // The same vector is fine for l2.
    opts.metric = Metric::L2;
    build(&opts).expect("a zero vector is valid for l2");
}

/// Backend options that cannot apply are refused before anything is written: LanceDB in a
/// build without the `lancedb` feature, an index choice on sqlite-vec (always exact).
#[test]
fn backend_options_that_cannot_apply() {
    let (dir, root) = root_with_good_snapshot();
    let rows = vec![json!({"id": 1, "value": "a", "emb": [1, 0, 0, 0]})];
    let input = jsonl_case(dir.path(), "backend", rows);
    let mut opts = build_options(&input, &root);
    opts.fields = vector_fields();
    opts.vector_index = edgeshard_builder::vector_index::IndexKind::IvfPq;
    assert_refused(&root, &opts, &["--vector-index", "sqlite-vec"]);
    if cfg!(not(feature = "lancedb")) {
        opts.vector_index = Default::default();
        opts.vector_backend = edgeshard_builder::build::VectorBackendKind::Lancedb;
        assert_refused(
            &root,
            &opts,
            &["--vector-backend lancedb", "--features lancedb"],
        );
    }
}

/// A failure while writing shards (after staging started) also leaves nothing behind: a raw key
/// that is not UTF-8 cannot be a vector id.
#[test]
fn failure_while_writing_shards_cleans_up() {
    let (dir, root) = root_with_good_snapshot();
    let input = dir.path().join("rawkeys.parquet");
    let ids: Vec<i64> = (0..4).collect();
    let values: Vec<Vec<u8>> = vec![
        b"ok-a".to_vec(),
        b"ok-b".to_vec(),
        vec![0xff, 0xfe],
        b"ok-d".to_vec(),
    ];
    let vectors: Vec<Vec<f32>> = ids.iter().map(|i| vec![1.0, *i as f32, 0.0, 1.0]).collect();
    write_parquet(
        &input,
        &ParquetColumns {
            ids: &ids,
            values: &values,
            vectors: Some(&vectors),
            tags: None,
        },
    );
    let mut opts = build_options(&input, &root);
    // The binary column is the key here.
    opts.fields = FieldMapping {
        key_field: "value".into(),
        value_field: Some("id".into()),
        vector_field: Some("emb".into()),
        payload_fields: vec![],
    };
    opts.key_encoding = Some(KeyEncoding::Raw);
    assert_refused(&root, &opts, &["record 3"]);
}

#[test]
fn csv_input_happy_path() {
    let dir = temp_dir();
    let input = dir.path().join("docs.csv");
    let root = dir.path().join("snap");
    let mut rng = rng(0xc5f);
    let mut text = String::from("id,value,emb,tag\n");
    let mut items = Vec::new();
    for i in 0..60 {
        let v = random_vector(&mut rng, 8);
        text.push_str(&format!(
            "doc-{i},\"text, number {i}\",\"{}\",t{}\n",
            vector_json(&v),
            i % 4
        ));
        items.push((VectorId::Str(format!("doc-{i}")), v));
    }
    write_text(&input, &text);
    let mut opts = build_options(&input, &root);
    opts.fields = FieldMapping {
        payload_fields: vec!["tag".into()],
        ..vector_fields()
    };
    opts.shards = 4;
    let summary = build(&opts).expect("csv build");
    assert_eq!(summary.rows, 60);
    assert_eq!(summary.key_encoding, "utf8");
    let snap = Snapshot::open(root.to_str().unwrap()).unwrap();
    for i in 0..60 {
        assert_eq!(
            snap.get(&Key::Str(format!("doc-{i}"))).unwrap(),
            Some(format!("text, number {i}").into_bytes())
        );
    }
    assert_eq!(snap.get(&Key::Str("doc-60".into())).unwrap(), None);
    for q in 0..10 {
        let query = random_vector(&mut rng, 8);
        let response = snap.search(&query, 7, None).unwrap();
        let got: Vec<(VectorId, f64)> = response
            .results
            .iter()
            .map(|h| (h.id.clone(), h.score))
            .collect();
        assert_matches_brute_force(
            &format!("csv q{q}"),
            Metric::Cosine,
            &query,
            &items,
            &got,
            7,
            TOL,
        );
        for hit in &response.results {
            let VectorId::Str(id) = &hit.id else {
                panic!("string ids stay strings")
            };
            let n: usize = id.strip_prefix("doc-").unwrap().parse().unwrap();
            assert_eq!(hit.payload, Some(json!({"tag": format!("t{}", n % 4)})));
        }
    }
}

#[test]
fn parquet_input_happy_path() {
    let dir = temp_dir();
    let input = dir.path().join("docs.parquet");
    let root = dir.path().join("snap");
    let mut rng = rng(0xba5e);
    let n = 40_000;
    let ids: Vec<i64> = (0..n).map(|i| i * 3 + 1).collect();
    let values: Vec<Vec<u8>> = ids
        .iter()
        .map(|i| {
            let mut v = i.to_le_bytes().to_vec();
            v.push(0xff); // never UTF-8
            v
        })
        .collect();
    let vectors: Vec<Vec<f32>> = (0..n).map(|_| random_vector(&mut rng, 8)).collect();
    let tags: Vec<String> = ids.iter().map(|i| format!("tag{}", i % 5)).collect();
    write_parquet(
        &input,
        &ParquetColumns {
            ids: &ids,
            values: &values,
            vectors: Some(&vectors),
            tags: Some(&tags),
        },
    );
    let mut opts = build_options(&input, &root);
    opts.input_format = Some(InputFormat::Parquet);
    opts.fields = FieldMapping {
        payload_fields: vec!["tag".into()],
        ..vector_fields()
    };
    opts.metric = Metric::L2;
    let summary = build(&opts).expect("parquet build");
    assert_eq!(summary.rows, n as u64);
    assert_eq!(summary.key_encoding, "u64be");
    assert_eq!(summary.vector_dim, Some(8));
    let snap = Snapshot::open(root.to_str().unwrap()).unwrap();
    let keys: Vec<Key> = ids.iter().copied().map(Key::Int).collect();
    let got = snap.multi_get(&keys).unwrap();
    for ((id, value), got) in ids.iter().zip(&values).zip(got) {
        assert_eq!(got.as_ref(), Some(value), "key {id}");
    }
    assert_eq!(snap.get(&Key::Int(2)).unwrap(), None);
    let items: Vec<(VectorId, Vec<f32>)> =
        ids.iter().map(|i| VectorId::Int(*i)).zip(vectors).collect();
    for q in 0..10 {
        let query = random_vector(&mut rng, 8);
        let response = snap.search(&query, 10, None).unwrap();
        let got: Vec<(VectorId, f64)> = response
            .results
            .iter()
            .map(|h| (h.id.clone(), h.score))
            .collect();
        assert_matches_brute_force(
            &format!("parquet q{q}"),
            Metric::L2,
            &query,
            &items,
            &got,
            10,
            TOL,
        );
        for hit in &response.results {
            let VectorId::Int(i) = hit.id else {
                panic!("int ids stay ints")
            };
            assert_eq!(hit.payload, Some(json!({"tag": format!("tag{}", i % 5)})));
        }
    }
}
