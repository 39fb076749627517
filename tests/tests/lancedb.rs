//! The LanceDB backend (`--features lancedb`), end to end with real LanceDB tables:
//! - composite snapshots (SQLite KV + LanceDB per shard): `get` from SQLite, `search` from
//!   LanceDB, flat shards equal brute force for cosine, l2 and dot_product (scores in
//!   edgeshard's one convention);
//! - an indexed shard (IVF_HNSW_SQ) reaches recall@10 >= 0.9 against brute force;
//! - payload filters: pushed into LanceDB (plain fields) or post-filtered (nested fields), both
//!   equal brute force over the matching vectors;
//! - vector-only LanceDB snapshots with cluster routing;
//! - a snapshot on S3 (moto on 127.0.0.1) is searched in place: nothing is downloaded, and a
//!   warm query on an indexed shard reads under an eighth of its table (bytes counted by a proxy);
//! - a shard whose table is missing is an error, never an empty shard.
#![cfg(feature = "lancedb")]

use edgeshard_builder::build::{
    build, BuildOptions, VectorBackendKind, VectorOnlyOptions, VectorRoutingKind,
};
use edgeshard_builder::vector_index::IndexKind;
use edgeshard_native::{AccessMode, OpenOptions, SearchOptions, Snapshot, VectorId};
use edgeshard_shared::filter::Filter;
use edgeshard_shared::{Key, Metric};
use edgeshard_tests::proxy::DelayProxy;
use edgeshard_tests::s3_server::S3Server;
use edgeshard_tests::*;
use rand::Rng;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

const DIM: usize = 24;
const SECTIONS: [&str; 4] = ["web", "net", "libs", "games"];

struct Data {
    input: PathBuf,
    items: Vec<(VectorId, Vec<f32>)>,
    payloads: Vec<Value>,
    queries: Vec<Vec<f32>>,
}

/// `rows` records: int ids, a text value, a vector (not normalised, so dot differs from
/// cosine), a payload with a plain `section` field and a nested `meta.odd` one.
fn data(dir: &Path, rows: i64, seed: u64) -> Data {
    let mut rng = rng(seed);
    let mut items = Vec::new();
    let mut payloads = Vec::new();
    let lines: Vec<Value> = (0..rows)
        .map(|id| {
            let scale = rng.random_range(0.5..2.0f32);
            let v: Vec<f32> = random_vector(&mut rng, DIM).iter().map(|x| x * scale).collect();
            let payload = json!({
                "section": SECTIONS[(id % 4) as usize],
                "meta": {"odd": id % 2 == 1},
            });
            items.push((VectorId::Int(id), v.clone()));
            payloads.push(payload.clone());
            json!({"id": id, "value": format!("value-{id}"), "emb": vector_json(&v), "section": payload["section"], "meta": payload["meta"]})
        })
        .collect();
    let input = dir.join(format!("in-{seed}.jsonl"));
    write_jsonl(&input, lines);
    let queries = (0..20).map(|_| random_vector(&mut rng, DIM)).collect();
    Data {
        input,
        items,
        payloads,
        queries,
    }
}

fn options(d: &Data, out: &str, metric: Metric) -> BuildOptions {
    let mut opts = build_options(&d.input, Path::new(out));
    opts.out = out.to_string();
    opts.shards = 4;
    opts.metric = metric;
    opts.fields.vector_field = Some("emb".into());
    opts.fields.payload_fields = vec!["section".into(), "meta".into()];
    opts.vector_backend = VectorBackendKind::Lancedb;
    opts
}

fn hits(snap: &Snapshot, q: &[f32], options: &SearchOptions) -> Vec<(VectorId, f64)> {
    snap.search_with(q, options)
        .unwrap_or_else(|e| panic!("search: {e}"))
        .results
        .into_iter()
        .map(|h| (h.id, h.score))
        .collect()
}

const TOL: Tolerance = Tolerance {
    tie_eps: 1e-5,
    score_tol: 1e-4,
};

#[test]
fn composite_snapshot_gets_from_sqlite_and_searches_lancedb_exactly() {
    let dir = temp_dir();
    let d = data(dir.path(), 3_000, 1);
    for metric in [Metric::Cosine, Metric::L2, Metric::DotProduct] {
        let out = dir.path().join(format!("snap-{}", metric.as_str()));
        build(&options(&d, out.to_str().unwrap(), metric)).expect("build");
        // The layout of spec section 1: shard.db (KV) and vector/vector_index.lance.
        let files = walk(&out);
        assert!(files.iter().any(|f| f.ends_with("/shard.db")), "{files:?}");
        assert!(
            files
                .iter()
                .any(|f| f.contains("/vector/vector_index.lance/")),
            "{files:?}"
        );
        let snap = Snapshot::open(out.to_str().unwrap()).expect("open");
        let spec = snap.vector_spec().expect("vector spec");
        assert_eq!(spec.backend.map(|b| b.as_str()), Some("lancedb"));
        assert_eq!(spec.dot_reduction, None, "LanceDB ranks by dot itself");
        for key in [0i64, 7, 2_999] {
            let value = snap.get(&Key::Int(key)).expect("get");
            assert_eq!(value.as_deref(), Some(format!("value-{key}").as_bytes()));
        }
        assert_eq!(snap.get(&Key::Int(3_000)).expect("get"), None);
        for (i, q) in d.queries.iter().enumerate() {
            let got = hits(&snap, q, &SearchOptions::default());
            assert_matches_brute_force(
                &format!("{} query {i}", metric.as_str()),
                metric,
                q,
                &d.items,
                &got,
                10,
                TOL,
            );
        }
    }
}

#[test]
fn payload_filters_pushed_down_or_post_filtered_equal_brute_force() {
    let dir = temp_dir();
    let d = data(dir.path(), 2_000, 2);
    let out = dir.path().join("snap");
    build(&options(&d, out.to_str().unwrap(), Metric::Cosine)).expect("build");
    let snap = Snapshot::open(out.to_str().unwrap()).expect("open");
    for conditions in [
        &["section=web"][..],
        &["section=net|games"],
        &["section!=web", "meta.odd=true"],
    ] {
        let filter = Filter::parse(conditions).expect("filter");
        let matching: Vec<(VectorId, Vec<f32>)> = d
            .items
            .iter()
            .zip(&d.payloads)
            .filter(|(_, p)| filter.matches(Some(p)))
            .map(|(item, _)| item.clone())
            .collect();
        for (i, q) in d.queries.iter().take(5).enumerate() {
            let got = hits(
                &snap,
                q,
                &SearchOptions {
                    k: 10,
                    filter: Some(filter.clone()),
                    ..SearchOptions::default()
                },
            );
            assert_matches_brute_force(
                &format!("{conditions:?} query {i}"),
                Metric::Cosine,
                q,
                &matching,
                &got,
                10,
                TOL,
            );
        }
    }
}

#[test]
fn an_indexed_shard_keeps_recall_and_records_its_index() {
    let dir = temp_dir();
    let d = data(dir.path(), 24_000, 3);
    let out = dir.path().join("snap");
    let mut opts = options(&d, out.to_str().unwrap(), Metric::L2);
    opts.shards = 1;
    opts.vector_index = IndexKind::IvfHnswSq;
    build(&opts).expect("build");
    let snap = Snapshot::open(out.to_str().unwrap()).expect("open");
    let custom = &snap.manifest().meta.custom;
    assert_eq!(custom["vector"]["index_type"], "ivf_hnsw_sq", "{custom:?}");
    assert!(
        custom["vector"]["index_params"]["nprobes"]
            .as_u64()
            .is_some(),
        "{custom:?}"
    );
    let mut found = 0usize;
    for q in &d.queries {
        let got: HashSet<VectorId> = hits(&snap, q, &SearchOptions::default())
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let want = brute_force_knn(Metric::L2, q, &d.items, 10);
        found += want.iter().filter(|(id, _)| got.contains(id)).count();
    }
    let recall = found as f64 / (10 * d.queries.len()) as f64;
    assert!(recall >= 0.9, "recall@10 {recall}");
}

#[test]
fn vector_only_lancedb_snapshot_with_cluster_routing() {
    let dir = temp_dir();
    let d = data(dir.path(), 3_000, 4);
    let out = dir.path().join("snap");
    let mut opts = options(&d, out.to_str().unwrap(), Metric::Cosine);
    opts.shards = 8;
    opts.fields.value_field = None;
    opts.vector_only = Some(VectorOnlyOptions {
        routing: VectorRoutingKind::Cluster,
        num_probes: 2,
        shard_field: None,
        hash_bits: None,
        spill: 0.0,
    });
    build(&opts).expect("build");
    let files = walk(&out);
    assert!(
        !files.iter().any(|f| f.ends_with("/shard.db")),
        "vector-only: no SQLite"
    );
    let snap = Snapshot::open(out.to_str().unwrap()).expect("open");
    for q in d.queries.iter().take(5) {
        let all = snap
            .search_with(
                q,
                &SearchOptions {
                    probes: Some(8),
                    ..SearchOptions::default()
                },
            )
            .expect("search all");
        let got: Vec<(VectorId, f64)> = all.results.into_iter().map(|h| (h.id, h.score)).collect();
        assert_matches_brute_force("all probes", Metric::Cosine, q, &d.items, &got, 10, TOL);
        let two = snap
            .search_with(q, &SearchOptions::default())
            .expect("search");
        assert_eq!(two.shards_queried, 2);
    }
}

#[test]
fn a_snapshot_on_s3_is_searched_in_place() {
    let dir = temp_dir();
    let d = data(dir.path(), 2_000, 5);
    let server = S3Server::start();
    server.create_bucket("lance");
    let url = "s3://lance/snap";
    let mut opts = options(&d, url, Metric::L2);
    opts.storage_options = server.storage_options();
    build(&opts).expect("build to S3");
    let local = dir.path().join("local");
    build(&options(&d, local.to_str().unwrap(), Metric::L2)).expect("local build");
    let cache = dir.path().join("cache");
    let remote = Snapshot::open_with(
        url,
        OpenOptions {
            access: AccessMode::Range,
            cache_dir: Some(cache.clone()),
            cache_pages: 256,
            storage_options: server.storage_options(),
        },
    )
    .expect("open on S3");
    let local = Snapshot::open(local.to_str().unwrap()).expect("open local");
    for q in d.queries.iter().take(5) {
        let a = hits(&remote, q, &SearchOptions::default());
        let b = hits(&local, q, &SearchOptions::default());
        assert_eq!(
            a.iter().map(|h| &h.0).collect::<Vec<_>>(),
            b.iter().map(|h| &h.0).collect::<Vec<_>>()
        );
    }
    assert_eq!(
        remote.get(&Key::Int(5)).expect("get").as_deref(),
        Some(&b"value-5"[..])
    );
    // Range mode and LanceDB's own reads: no shard was downloaded.
    let cached = if cache.exists() {
        walk(&cache)
    } else {
        Default::default()
    };
    assert!(
        cached.iter().all(|f| !f.contains("vector_index")),
        "{cached:?}"
    );
}

/// What "searched in place" means for an indexed shard: after the index is loaded, a query
/// reads a small fraction of the table from S3 (counted by a proxy in front of moto), never
/// the table itself.
#[test]
fn an_indexed_shard_on_s3_reads_a_fraction_of_the_table_per_query() {
    let dir = temp_dir();
    let d = data(dir.path(), 24_000, 7);
    let local = dir.path().join("snap");
    let mut opts = options(&d, local.to_str().unwrap(), Metric::Cosine);
    opts.shards = 1;
    opts.vector_index = IndexKind::IvfHnswSq;
    build(&opts).expect("build");
    let table_bytes: u64 = walk(&local)
        .iter()
        .filter(|f| f.contains("vector_index.lance/"))
        .map(|f| std::fs::metadata(local.join(f)).expect("stat").len())
        .sum();
    let server = S3Server::start();
    server.create_bucket("lance");
    server.upload_dir(&local, "lance", "snap");
    let proxy = DelayProxy::start(server.port(), std::time::Duration::ZERO);
    let storage: Vec<(String, String)> = server
        .storage_options()
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "aws_endpoint" => (k, proxy.endpoint.clone()),
            _ => (k, v),
        })
        .collect();
    let remote = Snapshot::open_with(
        "s3://lance/snap",
        OpenOptions {
            access: AccessMode::Range,
            storage_options: storage,
            ..OpenOptions::default()
        },
    )
    .expect("open on S3");
    let local = Snapshot::open(local.to_str().unwrap()).expect("open local");
    let options = SearchOptions {
        payload_fields: Some(Vec::new()),
        ..SearchOptions::default()
    };
    hits(&remote, &d.queries[0], &options); // loads the index
    let before = proxy.traffic();
    for q in &d.queries[1..] {
        let a = hits(&remote, q, &options);
        let b = hits(&local, q, &options);
        // Same index files, same query: the same ids (scores equal up to rounding).
        assert_eq!(
            a.iter().map(|h| &h.0).collect::<Vec<_>>(),
            b.iter().map(|h| &h.0).collect::<Vec<_>>()
        );
    }
    let used = proxy.traffic() - before;
    let per_query = used.bytes_down / (d.queries.len() as u64 - 1);
    assert!(used.requests > 0, "queries went through the proxy");
    assert!(
        per_query * 8 < table_bytes,
        "a warm query read {per_query} bytes of a {table_bytes}-byte table"
    );
}

#[test]
fn a_missing_lance_table_is_an_error_not_an_empty_shard() {
    let dir = temp_dir();
    let d = data(dir.path(), 500, 6);
    let out = dir.path().join("snap");
    build(&options(&d, out.to_str().unwrap(), Metric::Cosine)).expect("build");
    let victim = walk(&out)
        .into_iter()
        .find(|f| {
            f.ends_with("/vector/vector_index.lance/_versions")
                || f.contains("/vector/vector_index.lance/")
        })
        .map(|f| out.join(f.split("/vector/").next().unwrap()).join("vector"))
        .expect("a LanceDB folder");
    std::fs::remove_dir_all(&victim).expect("remove the table");
    let snap = Snapshot::open(out.to_str().unwrap()).expect("open (shards open lazily)");
    let e = snap
        .search_with(&d.queries[0], &SearchOptions::default())
        .expect_err("a missing table must fail the search");
    let text = e.to_string();
    assert!(text.contains("vector_index"), "{text}");
}

/// What a user types: `edgeshard build --vector-backend lancedb --vector-index ivf-hnsw-sq`,
/// then `search` with the ANN knobs and a filter; JSON out, results equal to the library's.
#[test]
fn the_cli_builds_and_searches_a_lancedb_snapshot() {
    let dir = temp_dir();
    let d = data(dir.path(), 3_000, 8);
    let root = dir.path().join("snap");
    let root = root.to_str().unwrap();
    let summary = &json_lines(
        &run_cli(&[
            "build",
            "--input",
            d.input.to_str().unwrap(),
            "--key-field",
            "id",
            "--value-field",
            "value",
            "--vector-field",
            "emb",
            "--payload-fields",
            "section,meta",
            "--metric",
            "l2",
            "--shards",
            "1",
            "--vector-backend",
            "lancedb",
            "--vector-index",
            "ivf-hnsw-sq",
            "--out",
            root,
        ])
        .expect("build"),
    )[0];
    assert_eq!(summary["rows"], 3_000, "{summary}");
    let info = &json_lines(&run_cli(&["info", "--root", root]).expect("info"))[0];
    assert_eq!(info["vector"]["metric"], "l2", "{info}");
    let q = &d.queries[0];
    let out = run_cli(&[
        "search",
        "--root",
        root,
        "--vector",
        &vector_json(q).to_string(),
        "--k",
        "5",
        "--nprobes",
        "1",
        "--ef",
        "200",
        "--refine",
        "4",
        "--filter",
        "section=web",
    ])
    .expect("search");
    let row = &json_lines(&out)[0];
    let results = row["results"].as_array().expect("results");
    assert_eq!(results.len(), 5, "{out}");
    for hit in results {
        assert_eq!(hit["payload"]["section"], "web", "{hit}");
    }
    let snap = Snapshot::open(root).expect("open");
    let expected = hits(
        &snap,
        q,
        &SearchOptions {
            k: 5,
            filter: Some(Filter::parse(&["section=web"]).expect("filter")),
            ann: edgeshard_shared::vector::AnnParams {
                nprobes: Some(1),
                ef: Some(200),
                refine_factor: Some(4),
                ..Default::default()
            },
            ..SearchOptions::default()
        },
    );
    let got: Vec<VectorId> = results
        .iter()
        .map(|h| VectorId::Int(h["id"].as_i64().expect("int id")))
        .collect();
    assert_eq!(got, expected.into_iter().map(|h| h.0).collect::<Vec<_>>());
    // A bad knob is a usage error, not a silent default.
    assert!(run_cli(&[
        "search",
        "--root",
        root,
        "--vector",
        &vector_json(q).to_string(),
        "--nprobes",
        "0"
    ])
    .is_err());
}

/// A vector-only LanceDB snapshot as shardyfusion lays it out: no `backend` key in the
/// manifest, tables with only `id` (text, ints stringified), `vector` and `payload`. It is
/// detected as LanceDB, searched exactly, and its ids come back as the text they are.
#[test]
fn shardyfusion_style_lancedb_snapshots_are_read() {
    let dir = temp_dir();
    let d = data(dir.path(), 2_000, 9);
    let out = dir.path().join("snap");
    let mut opts = options(&d, out.to_str().unwrap(), Metric::Cosine);
    opts.fields.value_field = None;
    opts.vector_only = Some(VectorOnlyOptions {
        routing: VectorRoutingKind::Cluster,
        num_probes: 4,
        shard_field: None,
        hash_bits: None,
        spill: 0.0,
    });
    build(&opts).expect("build");

    // The manifest without custom.vector.backend.
    edit_manifest_custom(&out, |custom| {
        custom["vector"]
            .as_object_mut()
            .expect("custom.vector")
            .remove("backend");
    });

    // Tables with shardyfusion's three columns only.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let tables: Vec<PathBuf> = walk(&out)
        .into_iter()
        .filter_map(|f| {
            f.split_once("/vector_index.lance/")
                .map(|(shard, _)| out.join(shard))
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(tables.len() > 1, "{tables:?}");
    for db in &tables {
        runtime.block_on(async {
            let conn = lancedb::connect(db.to_str().unwrap())
                .execute()
                .await
                .expect("connect");
            let table = conn
                .open_table("vector_index")
                .execute()
                .await
                .expect("open");
            let schema = table.schema().await.expect("schema");
            let extra: Vec<&str> = schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .filter(|n| !["id", "vector", "payload"].contains(n))
                .collect();
            assert!(extra.contains(&"id_type"), "{extra:?}");
            table.drop_columns(&extra).await.expect("drop columns");
        });
    }

    // No backend key and no shard.db: the reader must find vector_index.lance to search at all.
    let snap = Snapshot::open(out.to_str().unwrap()).expect("open");
    let as_text: Vec<(VectorId, Vec<f32>)> = d
        .items
        .iter()
        .map(|(id, v)| match id {
            VectorId::Int(i) => (VectorId::Str(i.to_string()), v.clone()),
            other => (other.clone(), v.clone()),
        })
        .collect();
    for q in d.queries.iter().take(5) {
        let response = snap
            .search_with(
                q,
                &SearchOptions {
                    probes: Some(4),
                    ..SearchOptions::default()
                },
            )
            .expect("search");
        let got: Vec<(VectorId, f64)> = response
            .results
            .into_iter()
            .map(|h| (h.id, h.score))
            .collect();
        assert_matches_brute_force(
            "shardyfusion layout",
            Metric::Cosine,
            q,
            &as_text,
            &got,
            10,
            TOL,
        );
    }
}

/// `edgeshard serve` over a LanceDB snapshot (SQLite KV + a LanceDB table per shard), started
/// in this process on 127.0.0.1 (the thread ends with the test process): gets and searches
/// (default, `nprobes`/`refine`, filtered and projected) answer as the CLI's.
#[test]
fn the_server_answers_a_lancedb_snapshot_as_the_cli() {
    let dir = temp_dir();
    let root = dir.path().join("snap");
    let root_text = root.to_str().unwrap().to_string();
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/data/debian-sample");
    run_cli(&[
        "build",
        "--input",
        &format!("{sample}/packages.parquet"),
        "--key-field",
        "id",
        "--value-field",
        "text",
        "--vector-field",
        "embedding",
        "--payload-fields",
        "section,priority",
        "--vector-backend",
        "lancedb",
        "--shards",
        "2",
        "--out",
        &root_text,
        "--quiet",
    ])
    .expect("build");
    let port = edgeshard_tests::net::free_port();
    let listen = format!("127.0.0.1:{port}");
    {
        let (root_text, listen) = (root_text.clone(), listen.clone());
        std::thread::spawn(move || run_cli(&["serve", "--root", &root_text, "--listen", &listen]));
    }
    edgeshard_tests::net::wait_for_port(port, std::time::Duration::from_secs(60), "serve");
    let http = |method: &str, path: &str, body: &str| -> (u16, Value) {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&listen).expect("connect");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {listen}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    };
    // Ready once a snapshot is open.
    let started = std::time::Instant::now();
    while http("GET", "/readyz", "").0 != 200 {
        assert!(
            started.elapsed().as_secs() < 60,
            "the server never became ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let without_latency = |mut v: Value| {
        v.as_object_mut().unwrap().remove("latency_ms");
        v
    };
    let queries = std::fs::read_to_string(format!("{sample}/text_queries.jsonl")).unwrap();
    let file = dir.path().join("query.json");
    for line in queries.lines().take(6) {
        let vector = serde_json::from_str::<Value>(line).unwrap()["vector"].clone();
        std::fs::write(&file, vector.to_string()).unwrap();
        for (flags, mut body) in [
            (vec![], json!({})),
            (
                vec!["--nprobes", "1", "--refine", "2", "--k", "20"],
                json!({"nprobes": 1, "refine": 2, "k": 20}),
            ),
            (
                vec!["--filter", "section=utils", "--fields", "section"],
                json!({"filter": ["section=utils"], "fields": ["section"]}),
            ),
        ] {
            let mut args = vec!["search", "--root", &root_text, "--vector-file"];
            args.push(file.to_str().unwrap());
            args.extend_from_slice(&flags);
            let want = without_latency(json_lines(&run_cli(&args).expect("cli search")).remove(0));
            body["vector"] = vector.clone();
            let (status, got) = http("POST", "/v1/search", &body.to_string());
            assert_eq!(status, 200, "{got}");
            let got = without_latency(got);
            assert_eq!(got, want, "{flags:?}");
            assert!(!got["results"].as_array().unwrap().is_empty(), "{flags:?}");
        }
    }
    let (status, got) = http("POST", "/v1/get", r#"{"keys": ["surf", "vim", "nope"]}"#);
    assert_eq!(status, 200);
    let cli = run_cli(&["get", "--root", &root_text, "surf", "vim", "nope"]).expect("cli get");
    assert_eq!(got, json!({"results": json_lines(&cli)}));
}
