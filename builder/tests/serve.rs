//! `edgeshard serve` as users run it: the real binary on 127.0.0.1 (a port it picks), asked by a
//! real HTTP client. Every answer is compared with the CLI's for the same query on the same
//! snapshot (never with hard-coded values); bad inputs, auth, CORS, readiness, refresh under
//! load, pins, SIGTERM under load, metrics and the OpenAPI document's shapes.
// Integration tests stop where they fail: unwrap, expect and panic are how they assert.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_edgeshard");
const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/debian-sample");

// ---------------------------------------------------------------------------------------------
// The CLI and the server process

/// Runs the CLI; its JSON lines on success, panics with stderr otherwise.
fn cli(args: &[&str]) -> Vec<Value> {
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run edgeshard");
    assert!(
        out.status.success(),
        "edgeshard {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs the CLI expecting failure; its stderr.
fn cli_error(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run edgeshard");
    assert!(!out.status.success(), "edgeshard {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A running `edgeshard serve`, killed when dropped (also when a test panics).
struct Server {
    child: Child,
    base: String,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `edgeshard serve --listen 127.0.0.1:0 <args>` and waits for its address.
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start edgeshard serve");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        {
            let log = log.clone();
            // Drains stderr for the whole life of the process (a full pipe would block it).
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line.split("listening on http://").nth(1) {
                        let address = rest.split_whitespace().next().unwrap_or("").to_string();
                        let _ = tx.send(address);
                    }
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let mut server = Server {
            child,
            base: String::new(),
            stderr: log,
        };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(address) => server.base = format!("http://{address}"),
            Err(_) => panic!("the server printed no address: {}", server.log()),
        }
        server
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Waits until `/readyz` answers 200.
    fn wait_ready(&self) {
        let started = Instant::now();
        loop {
            if let Ok(r) = client().get(self.url("/readyz")).send() {
                if r.status().as_u16() == 200 {
                    return;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "not ready after 60 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn get(&self, path: &str) -> (u16, Value) {
        answer(client().get(self.url(path)).send())
    }

    fn post(&self, path: &str, body: &str) -> (u16, Value) {
        answer(
            client()
                .post(self.url(path))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send(),
        )
    }

    fn get_text(&self, path: &str) -> String {
        let response = client().get(self.url(path)).send().unwrap();
        assert_eq!(response.status().as_u16(), 200);
        response.text().unwrap()
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit (bounded); its exit code.
    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                started.elapsed() < timeout,
                "still running {timeout:?} after SIGTERM: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> &'static reqwest::blocking::Client {
    static CLIENT: OnceLock<reqwest::blocking::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
    })
}

fn answer(sent: reqwest::Result<reqwest::blocking::Response>) -> (u16, Value) {
    let response = sent.expect("an HTTP answer");
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, value)
}

// ---------------------------------------------------------------------------------------------
// Snapshots

/// The demo's snapshot of the bundled sample (scripts/demo.sh): 2,000 packages, 4 shards,
/// key-routed, unified KV + vectors. Built once per test process.
fn debian_unified() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = scratch("serve-debian-unified");
        let root_text = root.to_str().unwrap();
        cli(&[
            "build",
            "--input",
            &format!("{SAMPLE}/packages.parquet"),
            "--key-field",
            "id",
            "--value-field",
            "text",
            "--vector-field",
            "embedding",
            "--payload-fields",
            "section,priority",
            "--shards",
            "4",
            "--metric",
            "cosine",
            "--out",
            root_text,
            "--quiet",
        ]);
        root
    })
}

/// The sample as a vector-only snapshot, 8 shards routed by k-means centroids, 2 probes.
fn debian_cluster() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = scratch("serve-debian-cluster");
        let root_text = root.to_str().unwrap();
        cli(&[
            "build",
            "--input",
            &format!("{SAMPLE}/packages.parquet"),
            "--key-field",
            "id",
            "--vector-field",
            "embedding",
            "--payload-fields",
            "section",
            "--vector-only",
            "--routing",
            "cluster",
            "--shards",
            "8",
            "--probes",
            "2",
            "--out",
            root_text,
            "--quiet",
        ]);
        root
    })
}

/// A fresh folder under the cargo target's test scratch space (one per name, emptied first:
/// a run leaves at most one copy of each behind, never one per run).
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The sample's text queries (id, vector).
fn text_queries() -> Vec<(String, Vec<f64>)> {
    std::fs::read_to_string(format!("{SAMPLE}/text_queries.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let vector = v["vector"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            (v["id"].as_str().unwrap().to_string(), vector)
        })
        .collect()
}

/// A search object without its latency (the only field that differs run to run).
fn without_latency(mut v: Value) -> Value {
    let latency = v.as_object_mut().unwrap().remove("latency_ms");
    assert!(latency.is_some_and(|l| l.is_number()), "no latency_ms");
    v
}

/// The CLI's search for `vector` with `flags`, and the server's for `body` (which gets the
/// vector added): both answers, latency removed.
fn both_searches(
    server: &Server,
    root: &Path,
    dir: &Path,
    vector: &[f64],
    flags: &[&str],
    mut body: Value,
) -> (Value, Value) {
    let file = dir.join("query.json");
    std::fs::write(&file, serde_json::to_string(vector).unwrap()).unwrap();
    let mut args = vec![
        "search",
        "--root",
        root.to_str().unwrap(),
        "--vector-file",
        file.to_str().unwrap(),
    ];
    args.extend_from_slice(flags);
    let cli_answer = cli(&args).remove(0);
    body["vector"] = json!(vector);
    let (status, served) = server.post("/v1/search", &body.to_string());
    assert_eq!(status, 200, "{body}: {served}");
    (without_latency(cli_answer), without_latency(served))
}

// ---------------------------------------------------------------------------------------------
// Answers equal the CLI's

#[test]
fn every_endpoint_answers_as_the_cli_on_the_debian_sample() {
    let root = debian_unified();
    let root_text = root.to_str().unwrap();
    let dir = scratch("serve-unified-queries");
    let server = Server::start(&["--root", root_text]);
    server.wait_ready();

    let (status, info) = server.get("/v1/info");
    assert_eq!(status, 200);
    assert_eq!(info, cli(&["info", "--root", root_text])[0]);
    let (status, shards) = server.get("/v1/shards");
    assert_eq!(status, 200);
    assert_eq!(
        shards,
        json!({"shards": cli(&["shards", "--root", root_text])})
    );
    let (status, history) = server.get("/v1/history");
    assert_eq!(status, 200);
    assert_eq!(
        history,
        json!({"history": cli(&["history", "--root", root_text])})
    );

    // Keys: found ones (taken from a search, so they exist whatever the sample holds), a
    // missing one, and text that needs escaping in a URL.
    let queries = text_queries();
    let (_, first) = server.post(
        "/v1/search",
        &json!({"vector": queries[0].1, "k": 40}).to_string(),
    );
    let mut keys: Vec<String> = first["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| hit["id"].as_str().unwrap().to_string())
        .collect();
    keys.push("no-such-package".into());
    keys.push("a key/with ?odd# chars".into());
    let mut args = vec!["get", "--root", root_text];
    args.extend(keys.iter().map(String::as_str));
    let cli_rows = cli(&args);
    let (status, served) = server.post("/v1/get", &json!({ "keys": keys }).to_string());
    assert_eq!(status, 200);
    assert_eq!(served, json!({ "results": cli_rows }));
    for (key, row) in keys.iter().zip(&cli_rows) {
        let path = format!("/v1/get/{}", encode_path_segment(key));
        let (status, one) = server.get(&path);
        let expected = if row["found"] == json!(true) {
            200
        } else {
            404
        };
        assert_eq!(status, expected, "{path}: {one}");
        assert_eq!(&one, row, "{path}");
        let (status, route) = server.get(&format!("/v1/route/{}", encode_path_segment(key)));
        assert_eq!(status, 200);
        assert_eq!(route, cli(&["route", key, "--root", root_text])[0], "{key}");
    }

    // Searches: every text query plain, and some with options, against the CLI.
    for (id, vector) in &queries {
        let (want, got) = both_searches(&server, root, &dir, vector, &[], json!({}));
        assert_eq!(got, want, "query {id}");
    }
    let vector = &queries[1].1;
    for (flags, body) in [
        (vec!["--k", "7"], json!({"k": 7})),
        (
            vec!["--k", "5", "--filter", "section=web", "--fields", "section"],
            json!({"k": 5, "filter": ["section=web"], "fields": ["section"]}),
        ),
        (
            vec!["--filter", "section!=web", "--filter", "priority=optional"],
            json!({"filter": ["section!=web", "priority=optional"]}),
        ),
        (vec!["--shards", "0,2"], json!({"shards": [0, 2]})),
        (vec!["--k", "3", "--exact"], json!({"k": 3, "exact": true})),
        (vec!["--fields", ""], json!({"fields": []})),
    ] {
        let (want, got) = both_searches(&server, root, &dir, vector, &flags, body.clone());
        assert_eq!(got, want, "{flags:?} / {body}");
    }
    // One condition may be given as a plain string.
    let (want, got) = both_searches(
        &server,
        root,
        &dir,
        vector,
        &["--filter", "section=web"],
        json!({"filter": "section=web"}),
    );
    assert_eq!(got, want);
}

#[test]
fn a_vector_only_cluster_routed_snapshot_answers_as_the_cli() {
    let root = debian_cluster();
    let root_text = root.to_str().unwrap();
    let dir = scratch("serve-cluster-queries");
    let server = Server::start(&["--root", root_text]);
    server.wait_ready();
    assert_eq!(
        server.get("/v1/info").1,
        cli(&["info", "--root", root_text])[0]
    );
    assert_eq!(
        server.get("/v1/shards").1,
        json!({"shards": cli(&["shards", "--root", root_text])})
    );
    for (id, vector) in text_queries().iter().take(8) {
        for (flags, body) in [
            (vec![], json!({})),
            (
                vec!["--probes", "3", "--k", "20"],
                json!({"probes": 3, "k": 20}),
            ),
            (vec!["--shards", "1,5"], json!({"shards": [1, 5]})),
            (
                vec!["--filter", "section=utils", "--probes", "8"],
                json!({"filter": ["section=utils"], "probes": 8}),
            ),
        ] {
            let (want, got) = both_searches(&server, root, &dir, vector, &flags, body.clone());
            assert_eq!(got, want, "query {id}, {flags:?}");
        }
    }
    // A vector-only snapshot has no KV rows: gets answer as the CLI's do.
    let (status, served) = server.post("/v1/get", r#"{"keys": ["surf", "vim"]}"#);
    assert_eq!(status, 200);
    assert_eq!(
        served,
        json!({"results": cli(&["get", "--root", root_text, "surf", "vim"])})
    );
}

/// Asserts an error answer: `status`, the one error body, a message containing `needle`.
fn assert_error(answer: &(u16, Value), status: u16, code: &str, needle: &str) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(error.len(), 3, "{body}");
    assert_eq!(error["code"], json!(code), "{body}");
    assert_eq!(
        error["retryable"],
        json!(code == "unavailable"),
        "retryable follows the kind: {body}"
    );
    let message = error["message"].as_str().unwrap();
    assert!(message.contains(needle), "{needle:?} not in {message:?}");
}

#[test]
fn bad_inputs_are_400s_naming_the_problem() {
    let root = debian_unified();
    let root_text = root.to_str().unwrap();
    let dir = scratch("serve-bad-inputs");
    let server = Server::start(&[
        "--root",
        root_text,
        "--max-keys",
        "5",
        "--max-body-bytes",
        "20000",
    ]);
    server.wait_ready();
    let dim = text_queries()[0].1.len();
    let good: Vec<f64> = text_queries()[0].1.clone();
    let with = |extra: Value| {
        let mut body = json!({"vector": good});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body.to_string()
    };
    let search = |body: &str| server.post("/v1/search", body);
    let cases: Vec<(String, u16, &str)> = vec![
        (
            json!({"vector": [1.0, 2.0]}).to_string(),
            400,
            "dimension 2",
        ),
        (
            format!("{{\"vector\": [NaN{}]}}", ", 0.5".repeat(dim - 1)),
            400,
            "NaN",
        ),
        (
            format!("{{\"vector\": [1e39{}]}}", ", 0.5".repeat(dim - 1)),
            400,
            "query vector",
        ),
        (with(json!({"k": 0})), 400, "k must be between 1 and 4096"),
        (
            with(json!({"k": 4097})),
            400,
            "k must be between 1 and 4096",
        ),
        (with(json!({"k": -1})), 400, "expected usize"),
        (with(json!({"k": "ten"})), 400, "invalid type: string"),
        (
            with(json!({"filter": ["nonsense"]})),
            400,
            "filter \"nonsense\"",
        ),
        (with(json!({"filter": 5})), 400, "a filter condition"),
        (with(json!({"kk": 3})), 400, "unknown field `kk`"),
        (with(json!({"nprobes": 0})), 400, "nprobes must be"),
        (with(json!({"exact": true, "nprobes": 2})), 400, "exact"),
        (json!({"k": 3}).to_string(), 400, "missing field `vector`"),
        ("{\"vector\": [1, 2".to_string(), 400, "not JSON"),
        (
            json!({"vector": vec![0.5; 6000]}).to_string(),
            413,
            "--max-body-bytes",
        ),
    ];
    for (body, status, needle) in &cases {
        assert_error(&search(body), *status, "invalid_input", needle);
    }
    // Errors the reader raises are the CLI's, word for word.
    let file = dir.join("query.json");
    std::fs::write(&file, serde_json::to_string(&good).unwrap()).unwrap();
    for (extra, flags) in [
        (json!({"probes": 2}), vec!["--probes", "2"]),
        (json!({"shards": [99]}), vec!["--shards", "99"]),
        (json!({"k": 5000}), vec!["--k", "5000"]),
    ] {
        let (status, body) = search(&with(extra.clone()));
        assert_eq!(status, 400, "{extra}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        let mut args = vec!["search", "--root", root_text, "--vector-file"];
        args.push(file.to_str().unwrap());
        args.extend(flags);
        let stderr = cli_error(&args);
        assert!(stderr.contains(message), "{message:?} vs CLI {stderr:?}");
    }
    let get = |body: &str| server.post("/v1/get", body);
    assert_error(&get(r#"{"keys": [3]}"#), 400, "invalid_input", "keys[0]");
    assert_error(
        &get(r#"{"keys": ["a", null]}"#),
        400,
        "invalid_input",
        "keys[1]",
    );
    assert_error(
        &get(r#"{"keys": ["a", ["b"]]}"#),
        400,
        "invalid_input",
        "(strings)",
    );
    assert_error(
        &get(r#"{"keys": "a"}"#),
        400,
        "invalid_input",
        "expected a sequence",
    );
    assert_error(&get(r#"{}"#), 400, "invalid_input", "missing field `keys`");
    assert_error(
        &get(r#"{"keys": ["a"], "key": 1}"#),
        400,
        "invalid_input",
        "unknown field `key`",
    );
    assert_error(
        &get(r#"{"keys": ["a", "b", "c", "d", "e", "f"]}"#),
        400,
        "invalid_input",
        "--max-keys",
    );
    assert_error(&server.get("/v1/nothing"), 404, "not_found", "/v1/nothing");
    assert_error(&server.post("/v1/info", "{}"), 405, "invalid_input", "POST");
    // The server still answers after all of that.
    let (status, body) = get(r#"{"keys": ["surf"]}"#);
    assert_eq!((status, &body["results"][0]["found"]), (200, &json!(true)));
}

#[test]
fn integer_keys_must_be_json_integers_in_range() {
    let dir = scratch("serve-int-keys");
    let root = build_small(&dir, "v1", None);
    let root_text = root.to_str().unwrap();
    let server = Server::start(&["--root", root_text]);
    server.wait_ready();
    let get = |body: &str| server.post("/v1/get", body);
    let (status, body) = get(r#"{"keys": [3, 49, 50]}"#);
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"results": cli(&["get", "--root", root_text, "3", "49", "50"])})
    );
    assert_error(
        &get(r#"{"keys": ["3"]}"#),
        400,
        "invalid_input",
        "(integers)",
    );
    assert_error(&get(r#"{"keys": [1.5]}"#), 400, "invalid_input", "keys[0]");
    assert_error(&get(r#"{"keys": [-1]}"#), 400, "invalid_input", "u64be");
    assert_error(
        &server.get("/v1/get/abc"),
        400,
        "invalid_input",
        "not an integer",
    );
    assert_error(
        &server.get("/v1/route/abc"),
        400,
        "invalid_input",
        "not an integer",
    );
    let (status, row) = server.get("/v1/get/7");
    assert_eq!(
        (status, row),
        (200, cli(&["get", "--root", root_text, "7"])[0].clone())
    );
}

#[test]
fn bearer_token_and_cors() {
    let root = debian_unified();
    let root_text = root.to_str().unwrap();
    let dir = scratch("serve-auth");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let server = Server::start(&[
        "--root",
        root_text,
        "--auth-token-file",
        token_file.to_str().unwrap(),
        "--cors-origin",
        "https://app.example",
    ]);
    server.wait_ready();
    let with_token = |token: Option<&str>| {
        let mut request = client().get(server.url("/v1/info"));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        answer(request.send())
    };
    assert_error(&with_token(None), 401, "permission_denied", "bearer token");
    assert_error(
        &with_token(Some("s3cret")),
        401,
        "permission_denied",
        "bearer token",
    );
    assert_error(
        &with_token(Some("s3cret-token2")),
        401,
        "permission_denied",
        "bearer",
    );
    let (status, info) = with_token(Some("s3cret-token"));
    assert_eq!(status, 200);
    assert_eq!(info, cli(&["info", "--root", root_text])[0]);
    // Probes need no token.
    assert_eq!(server.get("/healthz").0, 200);
    assert_eq!(server.get("/readyz").0, 200);
    // CORS: the allowed origin is echoed, another is not.
    let cors = |origin: &str| {
        client()
            .get(server.url("/healthz"))
            .header("origin", origin)
            .send()
            .unwrap()
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(
        cors("https://app.example").as_deref(),
        Some("https://app.example")
    );
    assert_eq!(cors("https://evil.example"), None);

    // Without --cors-origin no CORS header is ever sent.
    let plain = Server::start(&["--root", root_text]);
    plain.wait_ready();
    let header = client()
        .get(plain.url("/v1/info"))
        .header("origin", "https://app.example")
        .send()
        .unwrap()
        .headers()
        .get("access-control-allow-origin")
        .cloned();
    assert_eq!(header, None);
}

#[test]
fn without_a_snapshot_it_answers_503_until_one_is_published() {
    let dir = scratch("serve-not-ready");
    let root = dir.join("snap");
    std::fs::create_dir_all(&root).unwrap();
    let root_text = root.to_str().unwrap();
    let server = Server::start(&["--root", root_text, "--refresh-interval", "0"]);
    assert_eq!(server.get("/healthz").0, 200);
    let not_ready = server.get("/readyz");
    assert_error(
        &not_ready,
        503,
        "unavailable",
        "no snapshot version is open",
    );
    assert_eq!(not_ready.1["ready"], json!(false));
    assert_error(
        &server.get("/v1/info"),
        503,
        "unavailable",
        "no snapshot version",
    );
    assert_error(
        &server.post("/v1/get", r#"{"keys": [1]}"#),
        503,
        "unavailable",
        "no snapshot version",
    );
    build_small(&dir, "v1", Some(&root));
    let (status, done) = server.post("/v1/admin/refresh", "");
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["outcome"], json!("swapped"));
    server.wait_ready();
    let (status, body) = server.post("/v1/get", r#"{"keys": [1, 2]}"#);
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"results": cli(&["get", "--root", root_text, "1", "2"])})
    );
}

/// Waits until `/readyz` says run `run_id` is served.
fn wait_serving(server: &Server, run_id: &str) {
    let started = Instant::now();
    loop {
        let (_, ready) = server.get("/readyz");
        if ready["run_id"] == json!(run_id) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "run {run_id} not served after 60 s: {ready}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The version tag of a get answer whose values must all come from one version.
fn one_version(answer: &Value) -> String {
    let rows = answer["results"].as_array().unwrap();
    let tags: std::collections::BTreeSet<&str> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            assert_eq!(row["key"], json!(i), "{answer}");
            let value = row["value"].as_str().unwrap_or_else(|| panic!("{answer}"));
            let (tag, number) = value.split_once('-').unwrap();
            assert_eq!(number, i.to_string(), "{answer}");
            tag
        })
        .collect();
    assert_eq!(tags.len(), 1, "an answer mixed versions: {tags:?}");
    tags.into_iter().next().unwrap().to_string()
}

#[test]
fn refresh_under_load_gives_no_failed_or_mixed_answers() {
    let dir = scratch("serve-refresh-load");
    let root = build_small(&dir, "v1", None);
    let server = Server::start(&[
        "--root",
        root.to_str().unwrap(),
        "--refresh-interval",
        "100ms",
    ]);
    server.wait_ready();
    let all_keys = json!({"keys": (0..50).collect::<Vec<_>>()}).to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, url, body) = (stop.clone(), server.url("/v1/get"), all_keys.clone());
            std::thread::spawn(move || {
                let mut seen: Vec<String> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let (status, answer) = answer(
                        client()
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(body.clone())
                            .send(),
                    );
                    assert_eq!(status, 200, "{answer}");
                    let tag = one_version(&answer);
                    if seen.last() != Some(&tag) {
                        seen.push(tag);
                    }
                }
                seen
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for tag in ["v2", "v3", "v4"] {
        build_small(&dir, tag, Some(&root));
        wait_serving(&server, tag);
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let seen = worker.join().expect("a client thread failed");
        // Versions only move forward, and every client ends on the last one.
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted, "a client saw versions go back: {seen:?}");
        assert_eq!(seen.last().map(String::as_str), Some("v4"), "{seen:?}");
    }
    let (_, ready) = server.get("/readyz");
    assert_eq!(ready["last_refresh"]["ok"], json!(true), "{ready}");
    assert!(
        ready["last_refresh"]["swaps"].as_u64().unwrap() >= 4,
        "{ready}"
    );
}

#[test]
fn a_broken_new_version_keeps_the_old_one_serving() {
    let dir = scratch("serve-broken-version");
    let root = build_small(&dir, "v1", None);
    let root_text = root.to_str().unwrap();
    let server = Server::start(&["--root", root_text, "--refresh-interval", "0"]);
    server.wait_ready();
    build_small(&dir, "v2", Some(&root));
    let (status, done) = server.post("/v1/admin/refresh", "");
    assert_eq!(
        (status, &done["outcome"]),
        (200, &json!("swapped")),
        "{done}"
    );
    assert_eq!(
        done["previous"].as_str().map(|m| m.contains("v1")),
        Some(true)
    );
    let (status, done) = server.post("/v1/admin/refresh", "");
    assert_eq!(
        (status, &done["outcome"]),
        (200, &json!("unchanged")),
        "{done}"
    );

    // v3 is published with a shard file missing: the server must not switch to it.
    build_small(&dir, "v3", Some(&root));
    let shard = std::fs::read_dir(root.join("shards/run_id=v3"))
        .unwrap()
        .map(|e| e.unwrap().path().join("attempt=00/shard.db"))
        .find(|p| p.exists())
        .expect("a shard file of v3");
    std::fs::remove_file(&shard).unwrap();
    let failed = server.post("/v1/admin/refresh", "");
    assert_error(&failed, 503, "not_found", "shard");
    let (status, ready) = server.get("/readyz");
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["run_id"], json!("v2"));
    assert_eq!(ready["last_refresh"]["ok"], json!(false));
    assert_eq!(ready["last_refresh"]["kind"], json!("not_found"));
    assert_eq!(ready["last_refresh"]["failures"], json!(1));
    let (status, answer) = server.post(
        "/v1/get",
        &json!({"keys": (0..50).collect::<Vec<_>>()}).to_string(),
    );
    assert_eq!(status, 200);
    assert_eq!(one_version(&answer), "v2");
    let metrics = server.get_text("/metrics");
    for line in [
        "edgeshard_refresh_failures_total 1",
        "edgeshard_refresh_last_ok 0",
        "edgeshard_ready 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in\n{metrics}"
        );
    }
    assert!(
        metrics.contains("edgeshard_snapshot_info{run_id=\"v2\""),
        "{metrics}"
    );

    // A manifest that is not SQLite at all: refused the same way.
    build_small(&dir, "v4", Some(&root));
    let manifest = std::fs::read_dir(root.join("manifests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_str().unwrap().ends_with("run_id=v4"))
        .expect("v4's manifest folder")
        .join("manifest");
    std::fs::write(&manifest, b"not a manifest").unwrap();
    let (status, failed) = server.post("/v1/admin/refresh", "");
    assert_eq!(status, 503, "{failed}");
    assert_eq!(failed["error"]["code"], json!("corrupt"));
    assert_eq!(server.get("/readyz").1["run_id"], json!("v2"));
}

#[test]
fn run_id_and_ref_pin_a_version() {
    let dir = scratch("serve-pins");
    let root = build_small(&dir, "v1", None);
    build_small(&dir, "v2", Some(&root));
    let root_text = root.to_str().unwrap();
    let all_keys = json!({"keys": (0..50).collect::<Vec<_>>()}).to_string();
    let history = cli(&["history", "--root", root_text]);
    let v1_manifest = history
        .iter()
        .find(|row| row["run_id"] == json!("v1"))
        .unwrap()["manifest"]
        .as_str()
        .unwrap()
        .to_string();
    for pin in [["--run-id", "v1"], ["--ref", v1_manifest.as_str()]] {
        let server = Server::start(&[
            "--root",
            root_text,
            pin[0],
            pin[1],
            "--refresh-interval",
            "100ms",
        ]);
        server.wait_ready();
        let (_, ready) = server.get("/readyz");
        assert_eq!(
            (&ready["run_id"], &ready["pinned"]),
            (&json!("v1"), &json!(true))
        );
        let (_, answer) = server.post("/v1/get", &all_keys);
        assert_eq!(one_version(&answer), "v1", "{pin:?}");
        let (status, done) = server.post("/v1/admin/refresh", "");
        assert_eq!(
            (status, &done["outcome"]),
            (200, &json!("unchanged")),
            "{done}"
        );
        assert_eq!(server.get("/v1/info").1["run_id"], json!("v1"));
    }
    let server = Server::start(&["--root", root_text, "--run-id", "nope"]);
    let started = Instant::now();
    while server.get("/readyz").1["last_refresh"]["attempts"] == json!(0) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no open attempted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_error(
        &server.get("/readyz"),
        503,
        "unavailable",
        "no manifest with run id",
    );
}

/// What one client request of the SIGTERM test saw.
struct Sent {
    started: Instant,
    ended: Instant,
    /// The answer without its latency, or the client error.
    outcome: Result<(u16, Value), String>,
}

#[test]
fn sigterm_under_load_drains_requests_in_flight_and_exits_0() {
    let root = debian_unified();
    let root_text = root.to_str().unwrap();
    let dir = scratch("serve-sigterm");
    let queries = text_queries();
    // Searches that scan every shard exactly (a filter nothing matches), so several are in
    // flight when the signal comes; the CLI's answers are what each must equal.
    let bodies: Vec<(String, Value)> = queries
        .iter()
        .take(4)
        .map(|(_, vector)| {
            let file = dir.join("query.json");
            std::fs::write(&file, serde_json::to_string(vector).unwrap()).unwrap();
            let expected = without_latency(
                cli(&[
                    "search",
                    "--root",
                    root_text,
                    "--vector-file",
                    file.to_str().unwrap(),
                    "--k",
                    "20",
                    "--filter",
                    "section=web",
                ])
                .remove(0),
            );
            let body = json!({"vector": vector, "k": 20, "filter": ["section=web"]});
            (body.to_string(), expected)
        })
        .collect();
    let mut server = Server::start(&["--root", root_text]);
    server.wait_ready();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = bodies
        .into_iter()
        .map(|(body, expected)| {
            let (stop, url) = (stop.clone(), server.url("/v1/search"));
            std::thread::spawn(move || {
                let mut sent = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let outcome = client()
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .and_then(|r| Ok((r.status().as_u16(), r.text()?)))
                        .map_err(|e| e.to_string())
                        .map(|(status, text)| {
                            let value: Value = serde_json::from_str(&text).unwrap();
                            match status {
                                200 => (status, without_latency(value)),
                                _ => (status, value),
                            }
                        });
                    let failed = outcome.is_err();
                    sent.push(Sent {
                        started,
                        ended: Instant::now(),
                        outcome,
                    });
                    if failed {
                        // The server is gone (or going): nothing more to send.
                        break;
                    }
                }
                (sent, expected)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let signalled = Instant::now();
    server.sigterm();
    let code = server.wait_exit(Duration::from_secs(60));
    stop.store(true, Ordering::Relaxed);
    assert_eq!(code, Some(0), "{}", server.log());
    assert!(server.log().contains("stopped"), "{}", server.log());
    let mut drained = 0;
    let mut answered = 0;
    for worker in workers {
        let (sent, expected) = worker.join().expect("a client thread failed");
        for request in sent {
            match &request.outcome {
                // Every answer, during the drain too, is a correct one.
                Ok((status, value)) => {
                    assert_eq!(*status, 200, "{value}");
                    assert_eq!(value, &expected);
                    answered += 1;
                    if request.started < signalled && request.ended > signalled {
                        drained += 1;
                    }
                }
                // A request sent well before the signal reached the server: it must have
                // been answered. (One sent at the very moment of the signal may meet a
                // closing connection: the race every HTTP server has.)
                Err(e) => assert!(
                    request.started + Duration::from_millis(50) > signalled,
                    "a request sent {:?} before SIGTERM failed: {e}",
                    signalled - request.started
                ),
            }
        }
    }
    assert!(answered > 0, "no request was answered");
    assert!(
        drained > 0,
        "no request was in flight at SIGTERM (searches too fast?)"
    );
}

#[test]
fn a_request_over_the_timeout_is_a_retryable_503() {
    let root = debian_unified();
    let server = Server::start(&["--root", root.to_str().unwrap(), "--request-timeout", "1ms"]);
    let started = Instant::now();
    while !server.log().contains("now serving") {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let body = json!({"vector": text_queries()[0].1, "k": 50, "filter": "section=web"});
    let answer = server.post("/v1/search", &body.to_string());
    assert_error(&answer, 503, "unavailable", "--request-timeout");
}

/// Checks `value` against an OpenAPI 3.0 schema of `doc` (the subset the document uses:
/// $ref, type, nullable, required, properties, additionalProperties: false, items, oneOf,
/// enum, minimum).
fn check_schema(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let pointer = reference.trim_start_matches('#');
        let target = doc
            .pointer(pointer)
            .ok_or(format!("{at}: no {reference}"))?;
        return check_schema(doc, target, value, at);
    }
    if value.is_null() {
        return match schema["nullable"] == json!(true) {
            true => Ok(()),
            false => Err(format!("{at}: null where {schema} is not nullable")),
        };
    }
    if let Some(options) = schema["oneOf"].as_array() {
        let fits = options
            .iter()
            .filter(|o| check_schema(doc, o, value, at).is_ok())
            .count();
        return match fits {
            1 => Ok(()),
            n => Err(format!("{at}: {value} fits {n} of oneOf {schema}")),
        };
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            return Err(format!("{at}: {value} not in {allowed:?}"));
        }
    }
    let fits_type = match schema["type"].as_str() {
        None => true,
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some(other) => return Err(format!("{at}: unknown type {other}")),
    };
    if !fits_type {
        return Err(format!("{at}: {value} is not of type {}", schema["type"]));
    }
    if let (Some(min), Some(n)) = (schema["minimum"].as_f64(), value.as_f64()) {
        if n < min {
            return Err(format!("{at}: {n} below the minimum {min}"));
        }
    }
    if let Some(object) = value.as_object() {
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap();
            if !object.contains_key(name) {
                return Err(format!("{at}: required {name:?} missing from {value}"));
            }
        }
        let properties = schema["properties"].as_object();
        for (name, field) in object {
            match properties.and_then(|p| p.get(name)) {
                Some(sub) => check_schema(doc, sub, field, &format!("{at}.{name}"))?,
                None if schema["additionalProperties"] == json!(false) => {
                    return Err(format!("{at}: {name:?} is not in the schema"))
                }
                None => {}
            }
        }
    }
    if let Some(items) = value.as_array() {
        if let Some(item) = schema.get("items") {
            for (i, v) in items.iter().enumerate() {
                check_schema(doc, item, v, &format!("{at}[{i}]"))?;
            }
        }
    }
    Ok(())
}

#[test]
fn openapi_describes_every_answer_and_metrics_count_them() {
    let root = debian_unified();
    let root_text = root.to_str().unwrap();
    let server = Server::start(&["--root", root_text]);
    server.wait_ready();
    let (status, doc) = server.get("/openapi.json");
    assert_eq!(status, 200);
    let vector = text_queries()[0].1.clone();
    let search = json!({"vector": vector, "k": 3, "fields": ["section"]}).to_string();
    // (method, the route as the document names it, path asked, body)
    let asked: Vec<(&str, &str, &str, String)> = vec![
        ("get", "/v1/info", "/v1/info", String::new()),
        ("get", "/v1/shards", "/v1/shards", String::new()),
        ("get", "/v1/history", "/v1/history", String::new()),
        ("get", "/v1/route/{key}", "/v1/route/surf", String::new()),
        ("get", "/v1/get/{key}", "/v1/get/surf", String::new()),
        (
            "get",
            "/v1/get/{key}",
            "/v1/get/no-such-package",
            String::new(),
        ),
        (
            "post",
            "/v1/get",
            "/v1/get",
            r#"{"keys": ["surf", "nope"]}"#.into(),
        ),
        ("post", "/v1/get", "/v1/get", r#"{"keys": [1]}"#.into()),
        ("post", "/v1/search", "/v1/search", search.clone()),
        ("post", "/v1/search", "/v1/search", search.clone()),
        (
            "post",
            "/v1/search",
            "/v1/search",
            r#"{"vector": [1]}"#.into(),
        ),
        (
            "post",
            "/v1/admin/refresh",
            "/v1/admin/refresh",
            String::new(),
        ),
        ("get", "/healthz", "/healthz", String::new()),
        ("get", "/readyz", "/readyz", String::new()),
    ];
    let mut described = std::collections::BTreeSet::new();
    let mut statuses: Vec<(String, u16)> = Vec::new();
    for (method, route, path, body) in &asked {
        let (status, value) = match *method {
            "get" => server.get(path),
            _ => server.post(path, body),
        };
        let operation = &doc["paths"][*route][*method];
        assert!(
            operation.is_object(),
            "{method} {route} is not in the document"
        );
        let response = &operation["responses"][status.to_string()];
        assert!(
            response.is_object(),
            "{method} {path}: status {status} undocumented"
        );
        let response = match response["$ref"].as_str() {
            Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap(),
            None => response,
        };
        let schema = &response["content"]["application/json"]["schema"];
        check_schema(&doc, schema, &value, &format!("{method} {path} {status}"))
            .unwrap_or_else(|e| panic!("{e}"));
        described.insert(*route);
        statuses.push((route.to_string(), status));
    }
    // Every JSON endpoint of the document was asked.
    for route in doc["paths"].as_object().unwrap().keys() {
        if route != "/metrics" && route != "/openapi.json" {
            assert!(
                described.contains(route.as_str()),
                "{route} was not checked"
            );
        }
    }

    // /metrics counts exactly what was asked.
    let metrics = server.get_text("/metrics");
    let counted = |line_start: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0, |n| n.parse().unwrap())
    };
    let mut expected: std::collections::BTreeMap<(String, u16), u64> = Default::default();
    for key in statuses {
        *expected.entry(key).or_default() += 1;
    }
    for ((route, status), n) in &expected {
        let series =
            format!("edgeshard_http_requests_total{{endpoint=\"{route}\",status=\"{status}\"}} ");
        // wait_ready asked /readyz too, as often as it took.
        match route.as_str() {
            "/readyz" => assert!(counted(&series) > *n, "{series}\n{metrics}"),
            _ => assert_eq!(counted(&series), *n, "{series}\n{metrics}"),
        }
    }
    let searches = expected
        .iter()
        .filter(|((route, _), _)| route == "/v1/search")
        .map(|(_, n)| n)
        .sum::<u64>();
    assert_eq!(
        counted("edgeshard_http_request_duration_seconds_count{endpoint=\"/v1/search\"} "),
        searches
    );
    let invalid = expected
        .iter()
        .filter(|((_, status), _)| *status == 400)
        .map(|(_, n)| n)
        .sum::<u64>();
    assert_eq!(
        counted("edgeshard_errors_total{kind=\"invalid_input\"} "),
        invalid
    );
    let run_id = cli(&["info", "--root", root_text])[0]["run_id"].clone();
    let info_line = format!("edgeshard_snapshot_info{{run_id={run_id},");
    assert!(metrics.contains(&info_line), "no {info_line} in\n{metrics}");
    assert_eq!(counted("edgeshard_ready "), 1);
    // Local shards are read in place: no store requests, but the series is there.
    assert!(
        metrics.contains("\nedgeshard_store_requests_total "),
        "{metrics}"
    );
}

/// A small snapshot (keys 0..50, value `<tag>-<i>`, 4-d vectors) published at `root` (default:
/// `dir/snap`), with run id `tag` when it is one not used yet; returns the root.
fn build_small(dir: &Path, tag: &str, root: Option<&Path>) -> PathBuf {
    let root = root.map_or_else(|| dir.join("snap"), Path::to_path_buf);
    let input = dir.join(format!("{tag}.jsonl"));
    let mut text = String::new();
    for i in 0..50 {
        text.push_str(&format!(
            "{{\"id\": {i}, \"value\": \"{tag}-{i}\", \"emb\": [1.0, {i}.0, 0.5, -1.0]}}\n"
        ));
    }
    std::fs::write(&input, text).unwrap();
    cli(&[
        "build",
        "--input",
        input.to_str().unwrap(),
        "--key-field",
        "id",
        "--value-field",
        "value",
        "--vector-field",
        "emb",
        "--shards",
        "4",
        "--out",
        root.to_str().unwrap(),
        "--run-id",
        tag,
        "--quiet",
    ]);
    root
}

/// Percent-encodes a URL path segment (everything but unreserved characters).
fn encode_path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
