//! The `edgeshard` command line, run in-process: output shapes and values of every read command,
//! routing golden values, history and rollback.

use edgeshard_native::VectorId;
use edgeshard_shared::routing::shard_for_key;
use edgeshard_shared::{Key, Metric};
use edgeshard_tests::{
    assert_matches_brute_force, json_lines, random_vector, rng, run_cli, run_cli_with_stdin,
    temp_dir, vector_json, write_parquet, ParquetColumns, Tolerance,
};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;

/// Spec section 4: key, how to pass it, digest, shards for num_dbs 3, 4, 8, 10, 16.
const GOLDEN: [(&str, &str, u64, [u64; 5]); 11] = [
    ("0", "int", 0xc77b3abb6f87acd9, [2, 1, 1, 7, 9]),
    ("1", "int", 0x2fbc593564db792e, [2, 2, 6, 8, 14]),
    ("-1", "int", 0x5111c7e47d784413, [2, 3, 3, 7, 3]),
    ("42", "int", 0xd5a6f8c838df27c8, [1, 0, 0, 0, 8]),
    (
        "9223372036854775807",
        "int",
        0xa233cf376558df46,
        [0, 2, 6, 2, 6],
    ),
    (
        "-9223372036854775808",
        "int",
        0x828f2476789a0e5f,
        [0, 3, 7, 5, 15],
    ),
    ("", "str", 0x2d06800538d394c2, [1, 2, 2, 8, 2]),
    ("a", "str", 0xe6c632b61e964e1f, [1, 3, 7, 9, 15]),
    ("user-1", "str", 0x7c7615c11438e5c9, [2, 1, 1, 7, 9]),
    ("00", "hex", 0xc44bdff4074eecdb, [0, 3, 3, 3, 11]),
    ("010203", "hex", 0xebce9b7632ae733b, [2, 3, 3, 7, 11]),
];

#[test]
fn route_matches_the_golden_table() {
    for (key, key_type, digest, shards) in GOLDEN {
        for (num_dbs, want) in [3, 4, 8, 10, 16].into_iter().zip(shards) {
            let n = num_dbs.to_string();
            // Negative numbers must work as plain arguments.
            let out = run_cli(&["route", key, "--num-dbs", &n, "--key-type", key_type])
                .unwrap_or_else(|e| panic!("route {key:?} --num-dbs {n}: {e}"));
            let rows = json_lines(&out);
            assert_eq!(rows.len(), 1, "{out}");
            let row = &rows[0];
            assert_eq!(row["shard"], want, "{key:?} % {num_dbs}: {row}");
            assert_eq!(row["xxh3_64"], format!("0x{digest:016x}"), "{row}");
            match key_type {
                "int" => assert_eq!(row["key"], key.parse::<i64>().unwrap(), "{row}"),
                "str" => assert_eq!(row["key"], key, "{row}"),
                _ => assert!(row.get("key").is_some(), "{row}"),
            }
        }
    }
    // Negative numbers as keys, after the flags and before them.
    let row = &json_lines(&run_cli(&["route", "--num-dbs", "4", "-1"]).unwrap())[0];
    assert_eq!(row["shard"], 3);
    let row = &json_lines(&run_cli(&["route", "-1", "--num-dbs", "4"]).unwrap())[0];
    assert_eq!(row["shard"], 3);
    // Without --key-type, integers are integers and other text is a string.
    let row = &json_lines(&run_cli(&["route", "42", "--num-dbs", "16"]).unwrap())[0];
    assert_eq!(
        (row["key"].clone(), row["shard"].clone()),
        (json!(42), json!(8))
    );
    let row = &json_lines(&run_cli(&["route", "user-1", "--num-dbs", "10"]).unwrap())[0];
    assert_eq!(
        (row["key"].clone(), row["shard"].clone()),
        (json!("user-1"), json!(7))
    );
    // Integer keys 0..9 over 3 shards.
    let shards: Vec<u64> = (0..10)
        .map(|i| {
            let out = run_cli(&["route", &i.to_string(), "--num-dbs", "3"]).unwrap();
            json_lines(&out)[0]["shard"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(shards, [2, 2, 1, 1, 0, 2, 0, 2, 0, 0]);
    assert!(run_cli(&["route", "zz", "--num-dbs", "3", "--key-type", "hex"]).is_err());
    assert!(run_cli(&["route", "1", "--num-dbs", "0"]).is_err());
}

fn b64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c).expect("base64 digit") as u32;
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    out
}

struct Data {
    ids: Vec<i64>,
    values: Vec<Vec<u8>>,
    vectors: Vec<Vec<f32>>,
    tags: Vec<String>,
}

fn data(seed: u64, value_prefix: &str) -> Data {
    let mut rng = rng(seed);
    let ids: Vec<i64> = (0..300).map(|i| i * 11 + 5).collect();
    let values = ids
        .iter()
        .map(|i| {
            if i % 3 == 0 {
                vec![0xff, 0x00, (*i % 256) as u8, 0xfe] // not UTF-8
            } else {
                format!("{value_prefix}{i}").into_bytes()
            }
        })
        .collect();
    let vectors = ids.iter().map(|_| random_vector(&mut rng, 8)).collect();
    let tags = ids.iter().map(|i| format!("t{}", i % 7)).collect();
    Data {
        ids,
        values,
        vectors,
        tags,
    }
}

/// `edgeshard build` from a Parquet file; returns the summary.
fn cli_build(dir: &Path, root: &str, name: &str, d: &Data) -> Value {
    let input = dir.join(format!("{name}.parquet"));
    write_parquet(
        &input,
        &ParquetColumns {
            ids: &d.ids,
            values: &d.values,
            vectors: Some(&d.vectors),
            tags: Some(&d.tags),
        },
    );
    let out = run_cli(&[
        "build",
        "--input",
        input.to_str().unwrap(),
        "--key-field",
        "id",
        "--value-field",
        "value",
        "--vector-field",
        "emb",
        "--payload-fields",
        "tag",
        "--shards",
        "4",
        "--out",
        root,
        "--threads",
        "2",
        "--quiet",
    ])
    .expect("cli build");
    let rows = json_lines(&out);
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0]["rows"], d.ids.len());
    rows[0].clone()
}

fn get_value(root: &str, key: i64) -> Value {
    let out = run_cli(&["get", "--root", root, &key.to_string()]).unwrap();
    json_lines(&out).remove(0)
}

fn check_get_row(row: &Value, key: i64, want: Option<&[u8]>) {
    assert_eq!(row["key"], key, "{row}");
    let obj = row.as_object().unwrap();
    match want {
        None => {
            assert_eq!(row["found"], false, "{row}");
            assert_eq!(row["value"], Value::Null, "{row}");
            assert_eq!(obj.len(), 3, "{row}");
        }
        Some(bytes) => {
            assert_eq!(row["found"], true, "{row}");
            match std::str::from_utf8(bytes) {
                Ok(text) => {
                    assert_eq!(row["value"], text, "{row}");
                    assert_eq!(obj.len(), 3, "{row}");
                }
                Err(_) => {
                    assert_eq!(row["value_encoding"], "base64", "{row}");
                    assert_eq!(b64_decode(row["value"].as_str().unwrap()), bytes, "{row}");
                    assert_eq!(obj.len(), 4, "{row}");
                }
            }
        }
    }
}

#[test]
fn read_commands_history_and_rollback() {
    let dir = temp_dir();
    let root_path = dir.path().join("snap");
    let root = root_path.to_str().unwrap();
    let old = data(1, "old-");
    let first = cli_build(dir.path(), root, "first", &old);

    // get: found text, found binary, absent.
    let text_i = old.ids.iter().position(|i| i % 3 != 0).unwrap();
    let bin_i = old.ids.iter().position(|i| i % 3 == 0).unwrap();
    let (text_key, bin_key) = (old.ids[text_i], old.ids[bin_i]);
    let out = run_cli(&[
        "get",
        "--root",
        root,
        &text_key.to_string(),
        &bin_key.to_string(),
        "6",
    ])
    .unwrap();
    let rows = json_lines(&out);
    assert_eq!(rows.len(), 3);
    check_get_row(&rows[0], text_key, Some(&old.values[text_i]));
    check_get_row(&rows[1], bin_key, Some(&old.values[bin_i]));
    check_get_row(&rows[2], 6, None);
    assert!(run_cli(&["get", "--root", root, "abc"])
        .unwrap_err()
        .contains("not an integer"));

    // multiget from stdin: input order, absent keys in place.
    let order = [old.ids[17], 4, old.ids[3], old.ids[250], 7, old.ids[0]];
    let stdin: String = order.iter().map(|k| format!("{k}\n")).collect::<String>() + "\n";
    let out = run_cli_with_stdin(&["multiget", "--root", root], stdin.as_bytes()).unwrap();
    let rows = json_lines(&out);
    assert_eq!(rows.len(), order.len());
    for (row, key) in rows.iter().zip(order) {
        let want = old
            .ids
            .iter()
            .position(|i| *i == key)
            .map(|p| &old.values[p][..]);
        check_get_row(row, key, want);
    }

    // search: shape and exact results.
    let items: Vec<(VectorId, Vec<f32>)> = old
        .ids
        .iter()
        .map(|i| VectorId::Int(*i))
        .zip(old.vectors.iter().cloned())
        .collect();
    let routed: BTreeSet<u32> = old
        .ids
        .iter()
        .map(|i| shard_for_key(&Key::Int(*i), 4).unwrap())
        .collect();
    let mut rng = rng(99);
    for q in 0..5 {
        let query = random_vector(&mut rng, 8);
        let out = run_cli(&[
            "search",
            "--root",
            root,
            "--vector",
            &vector_json(&query).to_string(),
            "--k",
            "6",
        ])
        .unwrap();
        let rows = json_lines(&out);
        assert_eq!(rows.len(), 1, "{out}");
        let obj = rows[0].as_object().unwrap();
        let keys: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["results", "shards_queried", "shards", "latency_ms"])
        );
        assert_eq!(obj["shards_queried"], routed.len());
        assert_eq!(obj["shards"].as_array().unwrap().len(), routed.len());
        assert!(obj["latency_ms"].as_f64().unwrap() >= 0.0);
        let results = obj["results"].as_array().unwrap();
        let mut got = Vec::new();
        for hit in results {
            for field in ["id", "score", "payload"] {
                assert!(hit.get(field).is_some(), "hit lacks {field}: {hit}");
            }
            let id = hit["id"].as_i64().expect("int ids are JSON numbers");
            assert_eq!(hit["payload"], json!({"tag": format!("t{}", id % 7)}));
            got.push((VectorId::Int(id), hit["score"].as_f64().unwrap()));
        }
        assert_matches_brute_force(
            &format!("cli search {q}"),
            Metric::Cosine,
            &query,
            &items,
            &got,
            6,
            Tolerance {
                tie_eps: 1e-6,
                score_tol: 1e-5,
            },
        );
    }
    assert!(run_cli(&["search", "--root", root, "--vector", "[1, 2]"]).is_err());

    // info and shards.
    let info = &json_lines(&run_cli(&["info", "--root", root]).unwrap())[0];
    assert_eq!(info["run_id"], first["run_id"]);
    assert_eq!(info["num_dbs"], 4);
    assert_eq!(info["rows"], old.ids.len());
    assert_eq!(info["non_empty_shards"], routed.len());
    assert_eq!(info["key_encoding"], "u64be");
    assert_eq!(info["vector"]["dim"], 8);
    assert_eq!(info["vector"]["metric"], "cosine");
    let shards = json_lines(&run_cli(&["shards", "--root", root]).unwrap());
    let ids: BTreeSet<u32> = shards
        .iter()
        .map(|s| s["db_id"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(ids, routed);
    let total: u64 = shards.iter().map(|s| s["rows"].as_u64().unwrap()).sum();
    assert_eq!(total, old.ids.len() as u64);
    for s in &shards {
        let db_id = s["db_id"].as_u64().unwrap() as u32;
        let want_rows = old
            .ids
            .iter()
            .filter(|i| shard_for_key(&Key::Int(**i), 4).unwrap() == db_id)
            .count();
        assert_eq!(s["rows"], want_rows, "{s}");
    }

    // route against the snapshot agrees with the routing function.
    for key in [old.ids[0], old.ids[99]] {
        let row = &json_lines(&run_cli(&["route", &key.to_string(), "--root", root]).unwrap())[0];
        assert_eq!(row["shard"], shard_for_key(&Key::Int(key), 4).unwrap());
    }

    // --format table: a header line, then rows.
    let table = run_cli(&["info", "--root", root, "--format", "table"]).unwrap();
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for column in ["run_id", "num_dbs", "rows"] {
        assert!(header.split_whitespace().any(|c| c == column), "{header}");
    }
    assert!(lines
        .next()
        .unwrap()
        .contains(first["run_id"].as_str().unwrap()));
    let table = run_cli(&[
        "get",
        "--root",
        root,
        "--format",
        "table",
        &text_key.to_string(),
    ])
    .unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert_eq!(
        lines[0].split_whitespace().collect::<BTreeSet<_>>(),
        BTreeSet::from(["key", "found", "value"])
    );
    let cells: BTreeSet<&str> = lines[1].split_whitespace().collect();
    let text_value = format!("old-{text_key}");
    assert_eq!(
        cells,
        BTreeSet::from([text_key.to_string().as_str(), "true", text_value.as_str()]),
        "{table}"
    );

    // A second build: history lists both, newest first, current flagged.
    let new = data(2, "new-");
    let second = cli_build(dir.path(), root, "second", &new);
    assert_ne!(first["run_id"], second["run_id"]);
    assert_eq!(
        get_value(root, text_key)["value"],
        format!("new-{text_key}")
    );
    let history = json_lines(&run_cli(&["history", "--root", root]).unwrap());
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["run_id"], second["run_id"]);
    assert_eq!(history[1]["run_id"], first["run_id"]);
    assert_eq!(history[0]["current"], true);
    assert_eq!(history[1]["current"], false);
    assert!(history[0]["timestamp"].as_str() > history[1]["timestamp"].as_str());

    // rollback --offset 1: the old value is served again.
    run_cli(&["rollback", "--root", root, "--offset", "1"]).unwrap();
    assert_eq!(
        get_value(root, text_key)["value"],
        format!("old-{text_key}")
    );
    let history = json_lines(&run_cli(&["history", "--root", root]).unwrap());
    assert_eq!(history[0]["current"], false);
    assert_eq!(history[1]["current"], true);
    let info = &json_lines(&run_cli(&["info", "--root", root]).unwrap())[0];
    assert_eq!(info["run_id"], first["run_id"]);
    // Nothing older than the oldest.
    assert!(run_cli(&["rollback", "--root", root, "--offset", "1"]).is_err());

    // rollback --run-id: back to the newest.
    run_cli(&[
        "rollback",
        "--root",
        root,
        "--run-id",
        second["run_id"].as_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(
        get_value(root, text_key)["value"],
        format!("new-{text_key}")
    );
    let history = json_lines(&run_cli(&["history", "--root", root]).unwrap());
    assert_eq!(history[0]["current"], true);
    assert!(run_cli(&["rollback", "--root", root, "--run-id", "nope"]).is_err());
}
