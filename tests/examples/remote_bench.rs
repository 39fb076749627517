//! Remote read costs for docs/benchmarks.md: a snapshot served by a real nginx on 127.0.0.1,
//! read in download and range mode, directly and through a proxy adding 20 ms to each request.
//!
//! ```text
//! cargo run --release -p edgeshard-tests --example remote_bench -- [DATA_DIR] [SHARDS] [flat|ivf|binary]
//! ```
//! DATA_DIR defaults to the bundled sample (tests/data/debian-sample); the last argument is the
//! snapshot's `--vector-index` (default flat), or `binary` (flat with `--quantization binary`).
//! Per mode: a cold lookup (fresh snapshot handle each time, so it includes opening the shard),
//! then warm lookups of other keys on the same handle, and a search k=10 (cold: the median of 5
//! fresh handles).

use edgeshard_builder::build::{build, BuildOptions, DuplicatePolicy};
use edgeshard_builder::input::{FieldMapping, InputFormat};
use edgeshard_native::{AccessMode, OpenOptions, Snapshot};
use edgeshard_shared::{Key, KeyEncoding, Metric};
use edgeshard_tests::http_server::{ServerMode, StaticServer};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let data = PathBuf::from(
        args.first()
            .cloned()
            .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/data/debian-sample").into()),
    );
    let shards: u32 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(8);
    use edgeshard_builder::build::Quantization;
    use edgeshard_builder::vector_index::IndexKind;
    let (vector_index, quantization) = match args.get(2).map(String::as_str) {
        Some("ivf") => (IndexKind::Ivf, Quantization::None),
        Some("binary") => (IndexKind::Flat, Quantization::Binary),
        _ => (IndexKind::Flat, Quantization::None),
    };
    let work = tempfile::tempdir().expect("temp dir");
    let root = work.path().join("snap");
    let summary = build(&BuildOptions {
        input: data.join("packages.parquet"),
        input_format: Some(InputFormat::Parquet),
        fields: FieldMapping {
            key_field: "id".into(),
            value_field: Some("text".into()),
            vector_field: Some("embedding".into()),
            payload_fields: vec!["section".into()],
        },
        shards,
        key_encoding: Some(KeyEncoding::Utf8),
        metric: Metric::Cosine,
        page_size: 4096,
        out: root.display().to_string(),
        storage_options: Vec::new(),
        on_duplicate: DuplicatePolicy::Error,
        run_id: None,
        threads: None,
        progress: false,
        sidecar: true,
        vector_only: None,
        vector_backend: Default::default(),
        vector_index,
        quantization,
    })
    .expect("build");
    let local = Snapshot::open(root.to_str().unwrap()).expect("open local");
    let keys: Vec<Key> = local_keys(&local);
    // The bundled sample's query when the data set has none (the full Debian set).
    let sample_query = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/debian-sample/query-lightweight-web-browser.json"
    );
    let query: Vec<f32> = serde_json::from_str(
        &std::fs::read_to_string(data.join("query-lightweight-web-browser.json"))
            .or_else(|_| std::fs::read_to_string(sample_query))
            .unwrap_or_else(|_| "[]".into()),
    )
    .unwrap_or_default();
    let server = StaticServer::start(&root, ServerMode::Normal);
    // Bind the sidecars to nginx's ETags, as a deployment would.
    let bind = edgeshard_tests::run_cli(&[
        "sidecar-bind",
        "--root",
        root.to_str().unwrap(),
        "--host",
        &server.base_url,
    ]);
    bind.expect("sidecar-bind");
    println!(
        "snapshot: {} rows, {shards} shards, {:.1} MB",
        summary.rows,
        summary.bytes as f64 / 1e6
    );
    println!("| link | mode | cold get: requests / bytes / ms | warm get: requests / bytes / ms | search k=10 cold: requests / MB / rounds (all shards) / ms | search warm ms |");
    println!("|---|---|---|---|---|---|");
    for (label, delay) in [
        ("loopback", Duration::ZERO),
        ("+20 ms per request", Duration::from_millis(20)),
    ] {
        let url = if delay.is_zero() {
            server.base_url.clone()
        } else {
            DelayProxy::start(&server.base_url, delay)
        };
        for mode in [AccessMode::Download, AccessMode::Range] {
            let cache = work
                .path()
                .join(format!("cache-{label}-{mode:?}").replace(' ', "_"));
            // Cold: a fresh handle per key (first read of its shard), averaged over 20 keys.
            let (mut cold_req, mut cold_bytes, mut cold_ms) = (0u64, 0u64, 0f64);
            let n = 20usize;
            for key in keys.iter().take(n) {
                let _ = std::fs::remove_dir_all(&cache);
                let snap = open(&url, mode, &cache);
                let before = snap.stats();
                let t = Instant::now();
                snap.get(key).expect("get");
                cold_ms += t.elapsed().as_secs_f64() * 1e3;
                let cost = snap.stats() - before;
                cold_req += cost.requests;
                cold_bytes += cost.bytes;
            }
            // Warm: one handle, every shard opened, then other keys.
            let snap = open(&url, mode, &cache);
            for key in keys.iter().take(200) {
                snap.get(key).expect("warm-up get");
            }
            let before = snap.stats();
            let t = Instant::now();
            let warm_keys = &keys[200..400.min(keys.len())];
            for key in warm_keys {
                snap.get(key).expect("get");
            }
            let warm_ms = t.elapsed().as_secs_f64() * 1e3 / warm_keys.len() as f64;
            let warm = snap.stats() - before;
            // Search: cold on a fresh handle (the median of 5), then warm.
            let mut cold_runs = Vec::new();
            let (mut fresh, mut search_cost) = (None, None);
            for _ in 0..5 {
                let _ = std::fs::remove_dir_all(&cache);
                let handle = open(&url, mode, &cache);
                let before = handle.stats();
                let t = Instant::now();
                handle.search(&query, 10, None).expect("search");
                cold_runs.push(t.elapsed().as_secs_f64() * 1e3);
                search_cost = Some(handle.stats() - before);
                fresh = Some(handle);
            }
            cold_runs.sort_by(f64::total_cmp);
            let search_cold_ms = cold_runs[cold_runs.len() / 2];
            let (fresh, search_cost) = (fresh.expect("ran"), search_cost.expect("ran"));
            let t = Instant::now();
            fresh.search(&query, 10, None).expect("search");
            let search_warm_ms = t.elapsed().as_secs_f64() * 1e3;
            println!(
                "| {label} | {mode:?} | {:.1} / {:.0} / {:.2} | {:.2} / {:.0} / {:.3} | {} / {:.2} / {} / {:.1} | {:.1} |",
                cold_req as f64 / n as f64,
                cold_bytes as f64 / n as f64,
                cold_ms / n as f64,
                warm.requests as f64 / warm_keys.len() as f64,
                warm.bytes as f64 / warm_keys.len() as f64,
                warm_ms,
                search_cost.requests,
                search_cost.bytes as f64 / 1e6,
                search_cost.rounds,
                search_cold_ms,
                search_warm_ms,
            );
        }
    }
}

fn open(url: &str, access: AccessMode, cache: &std::path::Path) -> Snapshot {
    Snapshot::open_with(
        url,
        OpenOptions {
            access,
            cache_dir: Some(cache.to_path_buf()),
            ..OpenOptions::default()
        },
    )
    .expect("open remote snapshot")
}

/// Every stored key, read back from the local shards, in a fixed shuffled order.
fn local_keys(snap: &Snapshot) -> Vec<Key> {
    let Some(root) = snap.root().local_path("") else {
        return Vec::new();
    };
    let mut keys = Vec::new();
    for (_, relative) in snap.shard_db_paths() {
        let conn = rusqlite::Connection::open(root.join(relative)).expect("open shard");
        let mut stmt = conn.prepare("SELECT k FROM kv").expect("prepare");
        let rows = stmt
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .expect("query");
        keys.extend(rows.map(|k| Key::Str(String::from_utf8(k.expect("row")).expect("utf8"))));
    }
    // Deterministic interleaving across shards.
    keys.sort_by_key(edgeshard_shared::routing::digest);
    keys
}

/// A loopback TCP proxy that holds every client write (one HTTP request) for `delay` before
/// forwarding it: a stand-in for a distant host. Returns its base URL.
struct DelayProxy;

impl DelayProxy {
    fn start(upstream: &str, delay: Duration) -> String {
        let target = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let target = target.clone();
                std::thread::spawn(move || {
                    let Ok(server) = TcpStream::connect(&target) else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (Ok(mut c_read), Ok(mut s_write)) =
                        (client.try_clone(), server.try_clone())
                    else {
                        return;
                    };
                    let (mut s_read, mut c_write) = (server, client);
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n) = c_read.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            std::thread::sleep(delay);
                            if s_write.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    });
                    let _ = std::io::copy(&mut s_read, &mut c_write);
                });
            }
        });
        format!("http://{addr}")
    }
}
