//! The reader conformance suite: every case of `tests/conformance/cases.json` (answers computed
//! from the records, and from shardyfusion's own shard file, by `tests/conformance/oracle.py`,
//! never by a reader) asked of every
//! native reader: local files, local range mode, HTTP download and range (a real nginx; range
//! without and with bound sidecars), S3 download and range (a real S3-compatible server). The
//! wasm reader runs the same cases (`runtime-wasm/js/test/conformance.test.mjs`). A reader that
//! answers any case differently fails with the case, the reader and both answers.

use edgeshard_native::{AccessMode, Error, OpenOptions, SearchOptions, Snapshot, VectorId};
use edgeshard_shared::filter::Filter;
use edgeshard_shared::Key;
use edgeshard_tests::http_server::{ServerMode, StaticServer};
use edgeshard_tests::s3_server::S3Server;
use edgeshard_tests::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance")
}

fn load_suite() -> Value {
    let text = std::fs::read_to_string(suite_dir().join("cases.json")).expect("cases.json");
    serde_json::from_str(&text).expect("cases.json is JSON")
}

/// The CLI arguments that build one of the suite's snapshots (the Node runner builds with the
/// same arguments).
fn build_args(spec: &Value, out: &Path) -> Vec<String> {
    let mut args = vec![
        "build".to_string(),
        "--input".into(),
        suite_dir()
            .join(spec["input"].as_str().expect("input"))
            .display()
            .to_string(),
        "--key-field".into(),
        "id".into(),
        "--value-field".into(),
        "value".into(),
        "--shards".into(),
        spec["shards"].to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    if let Some(field) = spec["vector_field"].as_str() {
        args.extend(["--vector-field".into(), field.into()]);
        args.extend([
            "--metric".into(),
            spec["metric"].as_str().expect("metric").into(),
        ]);
    }
    if spec["vector_only"] == json!(true) {
        args.push("--vector-only".into());
    }
    if let Some(routing) = spec["routing"].as_str() {
        args.extend(["--routing".into(), routing.into()]);
    }
    if let Some(field) = spec["shard_field"].as_str() {
        args.extend(["--shard-field".into(), field.into()]);
    }
    if let Some(index) = spec["vector_index"].as_str() {
        args.extend(["--vector-index".into(), index.into()]);
    }
    if let Some(kind) = spec["quantization"].as_str() {
        args.extend(["--quantization".into(), kind.into()]);
    }
    if let Some(fields) = spec["payload_fields"].as_array() {
        let names: Vec<&str> = fields.iter().filter_map(Value::as_str).collect();
        args.extend(["--payload-fields".into(), names.join(",")]);
    }
    args
}

fn key_of(value: &Value) -> Key {
    match value {
        Value::Number(n) => Key::Int(n.as_i64().expect("integer key")),
        Value::String(s) => Key::Str(s.clone()),
        other => panic!("unsupported key {other}"),
    }
}

fn text(value: Option<Vec<u8>>) -> Value {
    value.map_or(Value::Null, |v| {
        Value::String(String::from_utf8(v).expect("UTF-8 value"))
    })
}

/// One case asked of one reader: its answer in the suite's shape (or the error's kind).
fn answer(snapshot: &Snapshot, case: &Value) -> Value {
    let outcome: Result<Value, Error> = match case["op"].as_str().expect("op") {
        "get" => snapshot
            .get(&key_of(&case["key"]))
            .map(|v| json!({ "value": text(v) })),
        "multiget" => {
            let keys: Vec<Key> = case["keys"]
                .as_array()
                .expect("keys")
                .iter()
                .map(key_of)
                .collect();
            snapshot
                .multi_get(&keys)
                .map(|values| json!({ "values": values.into_iter().map(text).collect::<Vec<_>>() }))
        }
        "search" => {
            let vector: Vec<f32> = case["vector"]
                .as_array()
                .expect("vector")
                .iter()
                .map(|x| x.as_f64().expect("number") as f32)
                .collect();
            let strings = |name: &str| -> Option<Vec<String>> {
                case[name].as_array().map(|items| {
                    items
                        .iter()
                        .map(|s| s.as_str().expect("string").to_string())
                        .collect()
                })
            };
            let options = SearchOptions {
                k: case["k"].as_u64().expect("k") as usize,
                probes: case["probes"].as_u64().map(|p| p as usize),
                shard_ids: case["shards"]
                    .as_array()
                    .map(|ids| ids.iter().map(|i| i.as_u64().expect("id") as u32).collect()),
                filter: strings("filter").map(|c| Filter::parse(&c).expect("filter")),
                payload_fields: strings("fields"),
                ann: edgeshard_shared::vector::AnnParams {
                    nprobes: case["nprobes"].as_u64().map(|p| p as usize),
                    refine_factor: case["refine"].as_u64().map(|r| r as u32),
                    exact: case["exact"] == json!(true),
                    ..Default::default()
                },
            };
            snapshot.search_with(&vector, &options).map(|response| {
                let results: Vec<Value> = response
                    .results
                    .into_iter()
                    .map(|hit| {
                        json!({
                            "id": match hit.id { VectorId::Int(i) => json!(i), VectorId::Str(s) => json!(s) },
                            "score": hit.score,
                            "payload": hit.payload,
                            "shard": hit.shard,
                        })
                    })
                    .collect();
                json!({ "results": results })
            })
        }
        other => panic!("unknown op {other}"),
    };
    outcome.unwrap_or_else(|e| json!({ "error": e.kind().as_str(), "message": e.to_string() }))
}

/// Whether `got` answers the case as `expected` says: equal, except scores within 1e-4, an
/// error's message (only its kind is specified) and a hit's shard where the oracle cannot know it
/// (no `shard` in the expected hit: vector-routed snapshots, whose cells the builder chooses).
fn conforms(expected: &Value, got: &Value) -> bool {
    if let Some(kind) = expected.get("error") {
        return got.get("error") == Some(kind);
    }
    if let (Some(want), Some(have)) = (expected.get("results"), got.get("results")) {
        let (Some(want), Some(have)) = (want.as_array(), have.as_array()) else {
            return false;
        };
        return want.len() == have.len()
            && want.iter().zip(have).all(|(w, h)| {
                w["id"] == h["id"]
                    && (w.get("shard").is_none() || w["shard"] == h["shard"])
                    && w["payload"] == h["payload"]
                    && match (w["score"].as_f64(), h["score"].as_f64()) {
                        (Some(a), Some(b)) => (a - b).abs() <= 1e-4,
                        _ => false,
                    }
            });
    }
    expected == got
}

#[test]
fn every_native_reader_answers_every_case_like_the_oracle() {
    let suite = load_suite();
    let dir = temp_dir();
    let roots: BTreeMap<String, PathBuf> = suite["snapshots"]
        .as_object()
        .expect("snapshots")
        .iter()
        .map(|(name, spec)| {
            let root = dir.path().join("roots").join(name);
            match spec["prebuilt"].as_str() {
                // Written by shardyfusion: a script assembles the root around its files.
                Some(script) => {
                    let status = std::process::Command::new("python3")
                        .arg(suite_dir().join(script))
                        .arg(&root)
                        .status()
                        .expect("python3 runs");
                    assert!(status.success(), "{script} failed");
                }
                None => {
                    let args = build_args(spec, &root);
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    run_cli(&args).unwrap_or_else(|e| panic!("build {name}: {e}"));
                }
            }
            (name.clone(), root)
        })
        .collect();
    let cases = suite["cases"].as_array().expect("cases");
    assert!(cases.len() >= 60, "the suite lost cases: {}", cases.len());

    let server = StaticServer::start(&dir.path().join("roots"), ServerMode::Normal);
    let s3 = S3Server::start();
    s3.create_bucket("conformance");
    s3.upload_dir(&dir.path().join("roots"), "conformance", "roots");
    let cache = dir.path().join("cache");
    let open = |url: String, access: AccessMode, storage: Vec<(String, String)>| {
        Snapshot::open_with(
            &url,
            OpenOptions {
                access,
                cache_dir: Some(cache.clone()),
                cache_pages: 256,
                storage_options: storage,
            },
        )
        .unwrap_or_else(|e| panic!("open {url} ({access:?}): {e}"))
    };
    type Reader<'a> = (&'static str, Box<dyn Fn(&str, &Path) -> Snapshot + 'a>);
    let mut readers: Vec<Reader<'_>> = vec![
        (
            "local",
            Box::new(|_, root| Snapshot::open(root.to_str().unwrap()).unwrap()),
        ),
        (
            "local range",
            Box::new(|_, root| open(root.display().to_string(), AccessMode::Range, vec![])),
        ),
        (
            "http download",
            Box::new(|name, _| {
                open(
                    format!("{}/{name}", server.base_url),
                    AccessMode::Download,
                    vec![],
                )
            }),
        ),
        (
            "http range",
            Box::new(|name, _| {
                open(
                    format!("{}/{name}", server.base_url),
                    AccessMode::Range,
                    vec![],
                )
            }),
        ),
        (
            "s3 download",
            Box::new(|name, _| {
                open(
                    format!("s3://conformance/roots/{name}"),
                    AccessMode::Download,
                    s3.storage_options(),
                )
            }),
        ),
        (
            "s3 range",
            Box::new(|name, _| {
                open(
                    format!("s3://conformance/roots/{name}"),
                    AccessMode::Range,
                    s3.storage_options(),
                )
            }),
        ),
    ];
    let mut failures = Vec::new();
    let mut asked = 0;
    let mut run_all = |readers: &[Reader<'_>], failures: &mut Vec<String>| {
        for (reader, open_reader) in readers {
            let snapshots: BTreeMap<&String, Snapshot> = roots
                .iter()
                .map(|(name, root)| (name, open_reader(name, root)))
                .collect();
            for (i, case) in cases.iter().enumerate() {
                let snapshot =
                    &snapshots[&case["snapshot"].as_str().expect("snapshot").to_string()];
                let got = answer(snapshot, case);
                asked += 1;
                if !conforms(&case["expect"], &got) {
                    failures.push(format!(
                        "case {i} ({} {} on {}), reader {reader}:\n  expected {}\n  got      {}",
                        case["op"],
                        case.get("k").unwrap_or(&Value::Null),
                        case["snapshot"],
                        case["expect"],
                        got
                    ));
                }
            }
        }
    };
    run_all(&readers, &mut failures);
    // Sidecars bound to nginx's ETags: range reads over HTTP now plan from pinned pages.
    for name in roots.keys() {
        let root = dir.path().join("roots").join(name);
        run_cli(&[
            "sidecar-bind",
            "--root",
            root.to_str().unwrap(),
            "--host",
            &format!("{}/{name}", server.base_url),
        ])
        .unwrap_or_else(|e| panic!("sidecar-bind {name}: {e}"));
    }
    readers.retain(|(name, _)| *name == "http range");
    readers[0].0 = "http range, sidecars bound";
    run_all(&readers, &mut failures);
    assert!(
        failures.is_empty(),
        "{} of {asked} answers differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(asked, cases.len() * 7);
}
