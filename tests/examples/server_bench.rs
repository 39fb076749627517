//! `edgeshard serve` under load, next to the library it wraps (docs/benchmarks.md, issue 13).
//!
//! ```text
//! cargo build --release -p edgeshard-builder
//! cargo run --release -p edgeshard-tests --example server_bench -- [DATA_DIR] [SECONDS]
//! ```
//! DATA_DIR (default the bundled sample; the Debian set is `../shared/data/debian-minilm`) is
//! built as a unified snapshot (key `id`, value `text`, vectors `embedding`, 8 shards, default
//! index), served on 127.0.0.1 by the release CLI (`$CARGO_TARGET_DIR/release/edgeshard`, or
//! `EDGESHARD_CLI`), and loaded with wrk (Debian's package, installed by scripts/setup.sh; one
//! wrk thread, keep-alive) at 1, 16 and 64 connections for SECONDS (default 10) each: single-key
//! `GET /v1/get/{key}` of random keys, and `POST /v1/search` (k = 10) of the data set's query
//! vectors. The library baseline calls `Snapshot::get` / `search_with` on the same keys and
//! vectors from as many threads as the server has workers (the machine's cores), for the same
//! time. Server, wrk and baseline share this machine's cores: the figures are what one box
//! does, not the server alone.

use edgeshard_builder::build::build;
use edgeshard_builder::input::{FieldMapping, InputFormat};
use edgeshard_native::{SearchOptions, Snapshot};
use edgeshard_shared::{Key, KeyEncoding};
use edgeshard_tests::build_options;
use edgeshard_tests::net::{free_port, wait_for_port};
use rand::Rng;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let data = PathBuf::from(
        args.first()
            .cloned()
            .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/data/debian-sample").into()),
    );
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let cli = std::env::var("EDGESHARD_CLI")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
                .join("release/edgeshard")
        });
    assert!(
        cli.is_file(),
        "{} is missing: cargo build --release -p edgeshard-builder",
        cli.display()
    );
    let wrk = Command::new("wrk").arg("--version").output();
    assert!(wrk.is_ok(), "wrk is missing: run scripts/setup.sh");

    let work = tempfile::tempdir().expect("temp dir");
    let root = work.path().join("snap");
    let mut opts = build_options(&data.join("packages.parquet"), &root);
    opts.input_format = Some(InputFormat::Parquet);
    opts.fields = FieldMapping {
        key_field: "id".into(),
        value_field: Some("text".into()),
        vector_field: Some("embedding".into()),
        payload_fields: vec!["section".into()],
    };
    opts.key_encoding = Some(KeyEncoding::Utf8);
    opts.threads = None;
    let summary = build(&opts).expect("build");
    let snap = Snapshot::open(root.to_str().unwrap()).expect("open");
    let keys = all_keys(&root);
    let queries = query_vectors(&data);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!(
        "snapshot: {} rows, 8 shards, {:.1} MB; {} query vectors; {threads} cores; {seconds} s per run",
        summary.rows,
        summary.bytes as f64 / 1e6,
        queries.len()
    );

    // Lua scripts: random keys, random query bodies.
    let keys_file = work.path().join("keys.txt");
    std::fs::write(&keys_file, keys.join("\n") + "\n").expect("keys file");
    let bodies_file = work.path().join("bodies.txt");
    let bodies: Vec<String> = queries
        .iter()
        .map(|v| serde_json::json!({"vector": v, "k": 10}).to_string())
        .collect();
    std::fs::write(&bodies_file, bodies.join("\n") + "\n").expect("bodies file");
    let get_lua = work.path().join("get.lua");
    std::fs::write(
        &get_lua,
        format!(
            "local keys = {{}}\nfor line in io.lines(\"{}\") do keys[#keys + 1] = line end\n\
             request = function()\n  return wrk.format(\"GET\", \"/v1/get/\" .. keys[math.random(#keys)])\nend\n",
            keys_file.display()
        ),
    )
    .expect("get.lua");
    let search_lua = work.path().join("search.lua");
    std::fs::write(
        &search_lua,
        format!(
            "local bodies = {{}}\nfor line in io.lines(\"{}\") do bodies[#bodies + 1] = line end\n\
             wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
             request = function()\n  return wrk.format(nil, \"/v1/search\", nil, bodies[math.random(#bodies)])\nend\n",
            bodies_file.display()
        ),
    )
    .expect("search.lua");

    let port = free_port();
    let server = Server(
        Command::new(&cli)
            .args(["serve", "--root", root.to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--max-concurrency", "256"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start edgeshard serve"),
    );
    wait_for_port(port, Duration::from_secs(30), "edgeshard serve");
    let url = format!("http://127.0.0.1:{port}");
    // Every shard opened and warm before measuring.
    for key in keys.iter().take(2000) {
        snap.get(&Key::Str(key.clone())).expect("warm get");
    }
    run_wrk(&url, &get_lua, 16, 3);
    run_wrk(&url, &search_lua, 16, 3);

    println!("| call | connections | server req/s | p50 | p99 | library calls/s ({threads} threads) | server / library |");
    println!("|---|---|---|---|---|---|---|");
    let library_gets = library_rate(threads, seconds, |rng| {
        let key = Key::Str(keys[rng.random_range(0..keys.len())].clone());
        snap.get(&key).expect("get");
    });
    let options = SearchOptions {
        k: 10,
        ..SearchOptions::default()
    };
    let library_searches = library_rate(threads, seconds, |rng| {
        let q = &queries[rng.random_range(0..queries.len())];
        snap.search_with(q, &options).expect("search");
    });
    for (call, lua, library) in [
        ("get one key", &get_lua, library_gets),
        ("search k=10", &search_lua, library_searches),
    ] {
        for connections in [1, 16, 64] {
            let (rate, p50, p99) = run_wrk(&url, lua, connections, seconds);
            println!(
                "| {call} | {connections} | {rate:.0} | {p50} | {p99} | {library:.0} | {:.2} |",
                rate / library
            );
        }
    }
    drop(server);
}

/// Stops the server when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One wrk run (one thread, keep-alive): requests per second and the p50 and p99 latencies as
/// wrk prints them. Non-2xx answers (absent keys are 404) are reported when any.
fn run_wrk(
    url: &str,
    lua: &std::path::Path,
    connections: u32,
    seconds: u64,
) -> (f64, String, String) {
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
        ])
        .arg("-s")
        .arg(lua)
        .arg(url)
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    if let Some(line) = text
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
    {
        eprintln!("wrk ({connections} connections): {line}");
    }
    let rate = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let percentile = |p: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(p).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| "?".into())
    };
    (rate, percentile("50%"), percentile("99%"))
}

/// Calls per second of `call` from `threads` threads for `seconds`.
fn library_rate(
    threads: usize,
    seconds: u64,
    call: impl Fn(&mut rand::rngs::StdRng) + Sync,
) -> f64 {
    let end = Instant::now() + Duration::from_secs(seconds);
    let total: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let call = &call;
                scope.spawn(move || {
                    let mut rng = edgeshard_tests::rng(t as u64);
                    let mut n = 0u64;
                    while Instant::now() < end {
                        call(&mut rng);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    total as f64 / seconds as f64
}

/// Every key of the local snapshot at `dir`, read from its shard files.
fn all_keys(dir: &std::path::Path) -> Vec<String> {
    let mut keys = Vec::new();
    for entry in edgeshard_tests::walk(dir) {
        if !entry.ends_with("shard.db") {
            continue;
        }
        let conn = rusqlite::Connection::open(dir.join(&entry)).expect("open shard");
        let mut stmt = conn.prepare("SELECT k FROM kv").expect("prepare");
        let rows = stmt
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .expect("keys");
        keys.extend(rows.map(|k| String::from_utf8(k.expect("key")).expect("utf-8 key")));
    }
    keys
}

/// The data set's query vectors: `text_queries.jsonl` when present (the Debian set), else the
/// sample's query.
fn query_vectors(data: &std::path::Path) -> Vec<Vec<f32>> {
    if let Ok(text) = std::fs::read_to_string(data.join("text_queries.jsonl")) {
        return text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| serde_json::from_value(v["vector"].clone()).ok())
            .collect();
    }
    let sample = std::fs::read_to_string(data.join("query-lightweight-web-browser.json"))
        .expect("a query vector");
    vec![serde_json::from_str(&sample).expect("query vector JSON")]
}
