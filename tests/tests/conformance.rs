//! A snapshot built by edgeshard obeys every rule of the format spec
//! (`shared/spec/snapshot-format.md`), checked on the files with plain SQLite and JSON, not with
//! the reader under test.

use edgeshard_builder::build::build;
use edgeshard_builder::input::FieldMapping;
use edgeshard_shared::routing::shard_for_key;
use edgeshard_shared::Key;
use edgeshard_tests::{
    build_options, f32_from_le, fixtures_dir, random_vector, rng, temp_dir, vector_json,
    write_jsonl,
};
use rand::Rng;
use rusqlite::{Connection, OpenFlags};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Spec section 3, verbatim.
const SPEC_MANIFEST_DDL: &str = "CREATE TABLE build_meta (run_id TEXT NOT NULL, created_at TEXT NOT NULL, num_dbs INTEGER NOT NULL,
  s3_prefix TEXT NOT NULL, key_col TEXT NOT NULL, sharding TEXT NOT NULL, db_path_template TEXT NOT NULL,
  shard_prefix TEXT NOT NULL, format_version INTEGER NOT NULL, key_encoding TEXT NOT NULL,
  custom TEXT NOT NULL DEFAULT '{}');
CREATE TABLE shards (db_id INTEGER NOT NULL PRIMARY KEY, db_url TEXT, attempt INTEGER NOT NULL,
  row_count INTEGER NOT NULL, db_bytes INTEGER NOT NULL, min_key TEXT, max_key TEXT,
  checkpoint_id TEXT, writer_info TEXT NOT NULL DEFAULT '{}');";
/// Spec section 5, verbatim.
const SPEC_KV_DDL: &str = "CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID";
const SPEC_VEC_PAYLOADS_DDL: &str =
    "CREATE TABLE vec_payloads (rowid INTEGER PRIMARY KEY, payload TEXT NOT NULL)";
const SPEC_VEC_ID_MAP_DDL: &str =
    "CREATE TABLE vec_id_map (internal_id INTEGER PRIMARY KEY, original_id TEXT NOT NULL)";

/// A record's value, vector and payload (as Python `json.dumps` text).
type Stored = (Vec<u8>, Option<Vec<f32>>, Option<String>);

/// What went into a build, to check the files against.
struct Expected {
    num_dbs: u32,
    key_encoding: &'static str,
    /// dim, metric
    vector: Option<(usize, &'static str)>,
    /// key -> (value, vector, payload as Python json.dumps text)
    records: BTreeMap<Key, Stored>,
}

fn open_ro(path: &Path) -> Connection {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, checked by hand.
fn is_spec_timestamp(s: &str) -> bool {
    let pattern = "dddd-dd-ddTdd:dd:dd.ddddddZ";
    s.len() == pattern.len()
        && s.chars().zip(pattern.chars()).all(|(c, p)| match p {
            'd' => c.is_ascii_digit(),
            p => c == p,
        })
}

fn table_info(conn: &Connection, table: &str) -> Vec<(String, String, bool, Option<String>, i64)> {
    let mut stmt = conn
        .prepare(&format!("PRAGMA table_info({table})"))
        .unwrap();
    stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, bool>(3)?,
            r.get::<_, Option<String>>(4)?,
            r.get::<_, i64>(5)?,
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn schema_sql(conn: &Connection, name: &str) -> Option<String> {
    conn.query_row(
        "SELECT sql FROM sqlite_master WHERE name = ?1",
        [name],
        |r| r.get(0),
    )
    .ok()
}

fn decode_key(encoding: &str, bytes: &[u8]) -> Key {
    match encoding {
        "u64be" => {
            assert_eq!(bytes.len(), 8, "u64be keys are stored as 8 bytes");
            let v = u64::from_be_bytes(bytes.try_into().unwrap());
            Key::Int(i64::try_from(v).expect("u64be key fits i64"))
        }
        "utf8" => Key::Str(String::from_utf8(bytes.to_vec()).expect("utf8 key")),
        other => panic!("unexpected encoding {other}"),
    }
}

/// Python `json.dumps` of a key (ASCII only: other characters become `\uXXXX`).
fn py_dumps(key: &Key) -> String {
    match key {
        Key::Int(i) => i.to_string(),
        Key::Str(s) => {
            let mut out = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    c if (' '..='~').contains(&c) => out.push(c),
                    c => {
                        let mut units = [0u16; 2];
                        for u in c.encode_utf16(&mut units) {
                            out.push_str(&format!("\\u{u:04x}"));
                        }
                    }
                }
            }
            out.push('"');
            out
        }
        Key::Bytes(_) => unreachable!(),
    }
}

fn python_original_id(key: &Key) -> String {
    format!(
        "{{\"v\": {}, \"t\": \"{}\"}}",
        py_dumps(key),
        if matches!(key, Key::Int(_)) {
            "int"
        } else {
            "str"
        }
    )
}

fn check_snapshot(root: &Path, want: &Expected) {
    edgeshard_native::sqlite_vec_ext::register();
    let root_url = format!("file://{}", std::path::absolute(root).unwrap().display());

    // Section 2: _CURRENT, byte-exact.
    let current_bytes = std::fs::read(root.join("_CURRENT")).expect("_CURRENT");
    let current: Value = serde_json::from_slice(&current_bytes).expect("_CURRENT is JSON");
    let keys: Vec<&str> = current
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        keys,
        [
            "format_version",
            "manifest_content_type",
            "manifest_ref",
            "run_id",
            "updated_at"
        ]
    );
    let run_id = current["run_id"].as_str().unwrap().to_string();
    let manifest_ref = current["manifest_ref"].as_str().unwrap().to_string();
    let updated_at = current["updated_at"].as_str().unwrap().to_string();
    let expected_current = format!(
        "{{\"format_version\":1,\"manifest_content_type\":\"application/x-sqlite3\",\
         \"manifest_ref\":\"{manifest_ref}\",\"run_id\":\"{run_id}\",\"updated_at\":\"{updated_at}\"}}"
    );
    assert_eq!(
        String::from_utf8(current_bytes.clone()).unwrap(),
        expected_current
    );
    assert!(is_spec_timestamp(&updated_at), "updated_at {updated_at}");
    assert!(!run_id.is_empty() && !run_id.contains('/'));

    // Section 1: the manifest's place.
    let manifest_rel = manifest_ref
        .strip_prefix(&format!("{root_url}/"))
        .unwrap_or_else(|| {
            panic!("manifest_ref {manifest_ref} is not a full URL under {root_url}")
        });
    let parts: Vec<&str> = manifest_rel.split('/').collect();
    assert_eq!(parts.len(), 3, "{manifest_rel}");
    assert_eq!(parts[0], "manifests");
    assert_eq!(parts[2], "manifest");
    let (ts, run_in_name) = parts[1].split_once("_run_id=").expect("<TS>_run_id=<RUN>");
    assert!(is_spec_timestamp(ts), "manifest folder timestamp {ts}");
    assert_eq!(run_in_name, run_id);
    let manifest_path = root.join(manifest_rel);
    assert!(manifest_path.is_file(), "{}", manifest_path.display());

    // Section 3: the manifest file.
    let manifest_bytes = std::fs::read(&manifest_path).unwrap();
    assert_eq!(&manifest_bytes[..16], b"SQLite format 3\0");
    assert_eq!(
        u16::from_be_bytes([manifest_bytes[16], manifest_bytes[17]]),
        4096
    );
    let m = open_ro(&manifest_path);
    let spec = Connection::open_in_memory().unwrap();
    spec.execute_batch(SPEC_MANIFEST_DDL).unwrap();
    let tables: BTreeSet<String> = m
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        tables,
        BTreeSet::from(["build_meta".to_string(), "shards".to_string()])
    );
    for table in ["build_meta", "shards"] {
        assert_eq!(
            table_info(&m, table),
            table_info(&spec, table),
            "columns of {table}"
        );
    }
    assert_eq!(
        m.query_row("SELECT count(*) FROM build_meta", [], |r| r
            .get::<_, i64>(0))
            .unwrap(),
        1
    );
    let (
        meta_run,
        created_at,
        num_dbs,
        s3_prefix,
        key_col,
        sharding,
        template,
        prefix,
        fv,
        enc,
        custom,
    ): (
        String,
        String,
        i64,
        String,
        String,
        String,
        String,
        String,
        i64,
        String,
        String,
    ) = m
        .query_row("SELECT * FROM build_meta", [], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
            ))
        })
        .unwrap();
    assert_eq!(meta_run, run_id);
    assert!(is_spec_timestamp(&created_at), "created_at {created_at}");
    assert_eq!(num_dbs, want.num_dbs as i64);
    assert_eq!(s3_prefix, root_url);
    assert_eq!(key_col, "_key");
    assert_eq!(template, "db={db_id:05d}");
    assert_eq!(prefix, "shards");
    assert_eq!(fv, 4);
    assert_eq!(enc, want.key_encoding);
    let sharding_json: Value = serde_json::from_str(&sharding).unwrap();
    let sharding_keys: BTreeSet<&str> = sharding_json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        sharding_keys,
        BTreeSet::from([
            "strategy",
            "hash_algorithm",
            "routing_values",
            "cel_expr",
            "cel_columns"
        ])
    );
    assert_eq!(sharding_json["strategy"], "hash");
    assert_eq!(sharding_json["hash_algorithm"], "xxh3_64");
    // Byte-identical to what shardyfusion writes for hash sharding.
    let fixture = open_ro(&fixtures_dir().join("manifest_v4_example.sqlite"));
    let fixture_sharding: String = fixture
        .query_row("SELECT sharding FROM build_meta", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sharding, fixture_sharding);
    let custom: Value = serde_json::from_str(&custom).unwrap();
    match want.vector {
        Some((dim, metric)) => {
            let v = &custom["vector"];
            assert_eq!(v["dim"], dim);
            assert_eq!(v["metric"], metric);
            assert_eq!(v["unified"], true);
            assert_eq!(v["backend"], "sqlite-vec");
            assert_eq!(v["kv_backend"], "sqlite-vec");
            assert!(v.get("index_type").is_some() && v.get("quantization").is_some());
        }
        None => assert!(custom.get("vector").is_none(), "KV-only: {custom}"),
    }

    // Which shards must exist, computed from the input with the routing function.
    let mut by_shard: BTreeMap<u32, Vec<&Key>> = BTreeMap::new();
    for key in want.records.keys() {
        by_shard
            .entry(shard_for_key(key, want.num_dbs).unwrap())
            .or_default()
            .push(key);
    }

    #[allow(clippy::type_complexity)]
    let rows: Vec<(
        i64,
        Option<String>,
        i64,
        i64,
        i64,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
    )> = m
        .prepare("SELECT * FROM shards ORDER BY db_id")
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let row_ids: Vec<u32> = rows.iter().map(|r| r.0 as u32).collect();
    let want_ids: Vec<u32> = by_shard.keys().copied().collect();
    assert_eq!(row_ids, want_ids, "exactly the non-empty shards have rows");
    let shard_dirs: BTreeSet<String> =
        std::fs::read_dir(root.join(format!("shards/run_id={run_id}")))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
    let want_dirs: BTreeSet<String> = want_ids.iter().map(|id| format!("db={id:05}")).collect();
    assert_eq!(shard_dirs, want_dirs, "empty shards have no folder");

    let mut seen = 0usize;
    for (db_id, db_url, attempt, row_count, db_bytes, min_key, max_key, checkpoint, writer_info) in
        &rows
    {
        let db_id = *db_id as u32;
        let rel = format!("shards/run_id={run_id}/db={db_id:05}/attempt=00");
        assert_eq!(
            db_url.as_deref(),
            Some(format!("{root_url}/{rel}").as_str())
        );
        assert_eq!(*attempt, 0);
        let shard_path = root.join(&rel).join("shard.db");
        let size = std::fs::metadata(&shard_path)
            .unwrap_or_else(|_| panic!("{} exists", shard_path.display()))
            .len();
        assert_eq!(*db_bytes as u64, size, "db_bytes of shard {db_id}");
        assert!(checkpoint.as_deref().is_some_and(|c| !c.is_empty()));
        assert!(serde_json::from_str::<Value>(writer_info)
            .unwrap()
            .is_object());
        let keys_here = &by_shard[&db_id];
        assert_eq!(
            min_key.as_deref(),
            Some(py_dumps(keys_here.iter().min().unwrap()).as_str())
        );
        assert_eq!(
            max_key.as_deref(),
            Some(py_dumps(keys_here.iter().max().unwrap()).as_str())
        );

        // Section 5: the shard.
        let conn = open_ro(&shard_path);
        assert_eq!(schema_sql(&conn, "kv").as_deref(), Some(SPEC_KV_DDL));
        let count: i64 = conn
            .query_row("SELECT count(*) FROM kv", [], |r| r.get(0))
            .unwrap();
        assert_eq!(*row_count, count, "row_count of shard {db_id}");
        assert_eq!(count as usize, keys_here.len());
        let mut stmt = conn.prepare("SELECT k, v FROM kv").unwrap();
        let kv: Vec<(Vec<u8>, Vec<u8>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for (k, v) in &kv {
            let key = decode_key(want.key_encoding, k);
            assert_eq!(
                shard_for_key(&key, want.num_dbs).unwrap(),
                db_id,
                "key {key} is stored in the shard xxh3 routes it to"
            );
            let (value, _, _) = want.records.get(&key).expect("stored key was in the input");
            assert_eq!(v, value, "value of {key}");
            seen += 1;
        }
        match want.vector {
            None => {
                for t in ["vec_index", "vec_payloads", "vec_id_map"] {
                    assert_eq!(schema_sql(&conn, t), None, "KV-only shard has no {t}");
                }
            }
            Some((dim, metric)) => {
                assert_eq!(
                    schema_sql(&conn, "vec_index").as_deref(),
                    Some(
                        format!(
                            "CREATE VIRTUAL TABLE vec_index USING vec0(embedding float[{dim}] distance_metric={metric})"
                        )
                        .as_str()
                    )
                );
                assert_eq!(
                    schema_sql(&conn, "vec_payloads").as_deref(),
                    Some(SPEC_VEC_PAYLOADS_DDL)
                );
                assert_eq!(
                    schema_sql(&conn, "vec_id_map").as_deref(),
                    Some(SPEC_VEC_ID_MAP_DDL)
                );
                let vecs: Vec<(i64, Vec<u8>)> = conn
                    .prepare("SELECT rowid, embedding FROM vec_index ORDER BY rowid")
                    .unwrap()
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                let rowids: Vec<i64> = vecs.iter().map(|v| v.0).collect();
                assert_eq!(
                    rowids,
                    (0..count).collect::<Vec<_>>(),
                    "vector rowids 0..n-1"
                );
                let id_map: BTreeMap<i64, String> = conn
                    .prepare("SELECT internal_id, original_id FROM vec_id_map")
                    .unwrap()
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                let payloads: BTreeMap<i64, String> = conn
                    .prepare("SELECT rowid, payload FROM vec_payloads")
                    .unwrap()
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                assert_eq!(id_map.len(), count as usize);
                let mut ids_here = BTreeSet::new();
                for (rowid, blob) in &vecs {
                    let original = &id_map[rowid];
                    let parsed: Value = serde_json::from_str(original).unwrap();
                    let key = match parsed["t"].as_str() {
                        Some("int") => Key::Int(parsed["v"].as_i64().unwrap()),
                        Some("str") => Key::Str(parsed["v"].as_str().unwrap().into()),
                        other => panic!("id type {other:?}"),
                    };
                    assert_eq!(original, &python_original_id(&key), "json.dumps form");
                    let (_, vector, payload) = &want.records[&key];
                    let stored = f32_from_le(blob);
                    assert_eq!(stored.len(), dim);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&stored),
                        bits(vector.as_ref().unwrap()),
                        "vector of {key}"
                    );
                    assert_eq!(payloads.get(rowid), payload.as_ref(), "payload of {key}");
                    assert!(ids_here.insert(key));
                }
                let kv_keys: BTreeSet<Key> = kv
                    .iter()
                    .map(|(k, _)| decode_key(want.key_encoding, k))
                    .collect();
                assert_eq!(ids_here, kv_keys, "vector ids are the record keys");
            }
        }
    }
    assert_eq!(seen, want.records.len(), "every record stored once");
}

#[test]
fn unified_snapshot_follows_the_spec() {
    let dir = temp_dir();
    let input = dir.path().join("in.jsonl");
    let out = dir.path().join("snap");
    let mut rng = rng(0xc0f0);
    let mut keys = BTreeSet::new();
    keys.extend([0i64, 1, 42, i64::MAX]);
    while keys.len() < 400 {
        keys.insert(rng.random_range(0..1_000_000_000i64));
    }
    let mut records = BTreeMap::new();
    let mut rows = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let vector = random_vector(&mut rng, 64);
        let value = format!("value-{key}-é");
        let mut row = json!({"id": key, "value": value, "emb": vector_json(&vector)});
        // Payload fields present on most records; a record without any has no payload row.
        let payload = if i % 5 == 4 {
            None
        } else {
            row["cat"] = json!(format!("c{}", i % 3));
            row["n"] = json!(i);
            Some(format!("{{\"cat\": \"c{}\", \"n\": {i}}}", i % 3))
        };
        rows.push(row);
        records.insert(Key::Int(*key), (value.into_bytes(), Some(vector), payload));
    }
    write_jsonl(&input, rows);
    let mut opts = build_options(&input, &out);
    opts.fields = FieldMapping {
        key_field: "id".into(),
        value_field: Some("value".into()),
        vector_field: Some("emb".into()),
        payload_fields: vec!["cat".into(), "n".into()],
    };
    opts.shards = 8;
    let summary = build(&opts).expect("build");
    assert_eq!(summary.rows, 400);
    check_snapshot(
        &out,
        &Expected {
            num_dbs: 8,
            key_encoding: "u64be",
            vector: Some((64, "cosine")),
            records,
        },
    );
    assert!(
        edgeshard_tests::walk(&out.join(".edgeshard-staging")).is_empty(),
        "no staging left after success"
    );
}

#[test]
fn kv_only_snapshot_follows_the_spec() {
    let dir = temp_dir();
    let input = dir.path().join("in.jsonl");
    let out = dir.path().join("snap");
    let keys = ["user-1", "user-2", "a", "", "é-ü", "z\"quote", "tab\there"];
    let num_dbs = 16;
    let routed: BTreeSet<u32> = keys
        .iter()
        .map(|k| shard_for_key(&Key::Str(k.to_string()), num_dbs).unwrap())
        .collect();
    assert!(
        routed.len() < num_dbs as usize,
        "some shards must stay empty"
    );
    let mut records = BTreeMap::new();
    let mut rows = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let value = format!("v{i}");
        rows.push(json!({"id": key, "value": value}));
        records.insert(Key::Str(key.to_string()), (value.into_bytes(), None, None));
    }
    write_jsonl(&input, rows);
    let mut opts = build_options(&input, &out);
    opts.shards = num_dbs;
    build(&opts).expect("build");
    check_snapshot(
        &out,
        &Expected {
            num_dbs,
            key_encoding: "utf8",
            vector: None,
            records,
        },
    );
}
