//! shardyfusion compatibility: files written by shardyfusion's own code read back exactly.

use edgeshard_native::{Snapshot, VectorId};
use edgeshard_shared::current::CurrentPointer;
use edgeshard_shared::manifest::{
    BuildMeta, Manifest, ShardEntry, Sharding, VectorBackend, FORMAT_VERSION, KEY_COL_KV,
};
use edgeshard_shared::{Key, KeyEncoding, Metric};
use edgeshard_tests::{
    assert_matches_brute_force, f32_from_le, fixtures_dir, parse_original_id, random_vector, rng,
    temp_dir, Tolerance,
};
use rusqlite::{Connection, OpenFlags};
use serde_json::{json, Map, Value};
use std::path::Path;

const RUN: &str = "fixturerun0001";
const TS: &str = "2026-03-14T10:30:00.123456Z";

#[test]
fn manifest_v4_example_parses() {
    let bytes = std::fs::read(fixtures_dir().join("manifest_v4_example.sqlite"))
        .expect("fixture manifest_v4_example.sqlite");
    let m = Manifest::from_sqlite_bytes(&bytes).expect("shardyfusion manifest parses");
    assert_eq!(m.meta.num_dbs, 4);
    assert_eq!(m.meta.format_version, 4);
    assert_eq!(m.meta.key_encoding, KeyEncoding::U64Be);
    assert_eq!(m.meta.key_col, "_key");
    assert_eq!(m.meta.run_id, "0123456789abcdef0123456789abcdef");
    assert_eq!(m.meta.s3_prefix, "s3://bucket/prefix");
    assert_eq!(m.meta.sharding, Sharding::hash());

    let ids: Vec<u32> = m.shards.iter().map(|s| s.db_id).collect();
    assert_eq!(ids, [0, 2]);
    let attempts: Vec<u32> = m.shards.iter().map(|s| s.attempt).collect();
    assert_eq!(attempts, [0, 1]);
    assert_eq!(
        m.shards[0].db_url.as_deref(),
        Some(
            "s3://bucket/prefix/shards/run_id=0123456789abcdef0123456789abcdef/db=00000/attempt=00"
        )
    );
    assert_eq!(
        m.shards[1].db_url.as_deref(),
        Some(
            "s3://bucket/prefix/shards/run_id=0123456789abcdef0123456789abcdef/db=00002/attempt=01"
        )
    );
    assert_eq!(m.shards[0].min_key, Some(json!(3)));
    assert_eq!(m.shards[1].max_key, Some(json!("zz")));
    assert!(m.shard(1).is_none() && m.shard(3).is_none());

    let spec = m.vector_spec().unwrap().expect("custom.vector");
    assert_eq!(spec.dim, 8);
    assert_eq!(spec.metric, Metric::Cosine);
    assert_eq!(spec.backend, Some(VectorBackend::SqliteVec));
    assert!(spec.unified);
    let vector = &m.meta.custom["vector"];
    assert_eq!(vector["backend"], "sqlite-vec");
    assert_eq!(vector["kv_backend"], "sqlite-vec");
}

/// A snapshot root holding the fixture shard as shard 0 of 1, with a manifest written by us.
fn fixture_root(root: &Path) {
    let root_url = format!("file://{}", root.display());
    let shard_rel = format!("shards/run_id={RUN}/db=00000/attempt=00");
    let shard_dir = root.join(&shard_rel);
    std::fs::create_dir_all(&shard_dir).unwrap();
    let src = fixtures_dir().join("sqlite_vec_cosine_dim4_shard.db");
    std::fs::copy(&src, shard_dir.join("shard.db")).expect("copy fixture shard");
    let db_bytes = std::fs::metadata(&src).unwrap().len();

    let mut custom = Map::new();
    custom.insert(
        "vector".into(),
        json!({"dim": 4, "metric": "cosine", "backend": "sqlite-vec", "kv_backend": "sqlite-vec",
               "unified": true, "index_type": "flat", "quantization": null}),
    );
    let manifest = Manifest {
        meta: BuildMeta {
            run_id: RUN.into(),
            created_at: TS.into(),
            num_dbs: 1,
            s3_prefix: root_url.clone(),
            key_col: KEY_COL_KV.into(),
            sharding: Sharding::hash(),
            db_path_template: "db={db_id:05d}".into(),
            shard_prefix: "shards".into(),
            format_version: FORMAT_VERSION,
            key_encoding: KeyEncoding::U64Be,
            custom,
        },
        shards: vec![ShardEntry {
            db_id: 0,
            db_url: Some(format!("{root_url}/{shard_rel}")),
            attempt: 0,
            row_count: 2000,
            db_bytes,
            min_key: Some(json!(0)),
            max_key: Some(json!(1999)),
            checkpoint_id: Some("00".into()),
            writer_info: Map::new(),
        }],
    };
    let manifest_rel = format!("manifests/{TS}_run_id={RUN}/manifest");
    std::fs::create_dir_all(root.join(&manifest_rel).parent().unwrap()).unwrap();
    std::fs::write(
        root.join(&manifest_rel),
        manifest.to_sqlite_bytes().unwrap(),
    )
    .unwrap();
    let pointer = CurrentPointer {
        manifest_ref: format!("{root_url}/{manifest_rel}"),
        run_id: RUN.into(),
        updated_at: TS.into(),
    };
    std::fs::write(root.join("_CURRENT"), pointer.to_json_bytes()).unwrap();
}

#[test]
fn fixture_shard_kv_reads_back() {
    let dir = temp_dir();
    fixture_root(dir.path());
    let snap = Snapshot::open(dir.path().to_str().unwrap()).expect("open fixture snapshot");

    let keys: Vec<Key> = (0..2000).map(Key::Int).collect();
    let values = snap.multi_get(&keys).unwrap();
    for (i, value) in values.iter().enumerate() {
        assert_eq!(
            value.as_deref(),
            Some(format!("v{i}").as_bytes()),
            "multi_get key {i}"
        );
    }
    for i in (0..2000).step_by(7).chain([1999]) {
        assert_eq!(
            snap.get(&Key::Int(i)).unwrap(),
            Some(format!("v{i}").into_bytes()),
            "get key {i}"
        );
    }
    assert_eq!(snap.get(&Key::Int(2000)).unwrap(), None);
    assert_eq!(
        snap.multi_get(&[Key::Int(2000), Key::Int(5), Key::Int(1 << 40)])
            .unwrap(),
        vec![None, Some(b"v5".to_vec()), None]
    );
}

/// Everything in the fixture's vector tables, read with plain SQL (plus sqlite-vec for vec0).
struct FixtureVectors {
    items: Vec<(VectorId, Vec<f32>)>,
    payloads: std::collections::HashMap<i64, Value>,
    rowid_of: std::collections::HashMap<VectorId, i64>,
}

fn read_fixture_vectors() -> FixtureVectors {
    edgeshard_native::sqlite_vec_ext::register();
    let conn = Connection::open_with_flags(
        fixtures_dir().join("sqlite_vec_cosine_dim4_shard.db"),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let ids: std::collections::HashMap<i64, VectorId> = conn
        .prepare("SELECT internal_id, original_id FROM vec_id_map")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(|r| {
            let (rowid, text) = r.unwrap();
            (rowid, parse_original_id(&text))
        })
        .collect();
    let mut items = Vec::new();
    let mut rowid_of = std::collections::HashMap::new();
    let mut stmt = conn
        .prepare("SELECT rowid, embedding FROM vec_index ORDER BY rowid")
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .unwrap();
    for row in rows {
        let (rowid, blob) = row.unwrap();
        let id = ids[&rowid].clone();
        rowid_of.insert(id.clone(), rowid);
        items.push((id, f32_from_le(&blob)));
    }
    let payloads = conn
        .prepare("SELECT rowid, payload FROM vec_payloads")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(|r| {
            let (rowid, text) = r.unwrap();
            (rowid, serde_json::from_str(&text).unwrap())
        })
        .collect();
    FixtureVectors {
        items,
        payloads,
        rowid_of,
    }
}

fn id_number(id: &VectorId) -> i64 {
    match id {
        VectorId::Int(n) => *n,
        VectorId::Str(s) => s
            .strip_prefix("id-")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("string id {s:?} is not id-N")),
    }
}

#[test]
fn fixture_shard_search_matches_brute_force() {
    let fixture = read_fixture_vectors();
    assert_eq!(fixture.items.len(), 50, "the fixture holds 50 vectors");
    assert!(fixture.items.iter().all(|(_, v)| v.len() == 4));

    let dir = temp_dir();
    fixture_root(dir.path());
    let snap = Snapshot::open(dir.path().to_str().unwrap()).unwrap();
    let mut rng = rng(0x5eed_f1c5);
    let mut checked_hits = 0;
    for q in 0..20 {
        let query = random_vector(&mut rng, 4);
        let response = snap.search(&query, 10, None).expect("search");
        assert_eq!(response.shards_queried, 1);
        let got: Vec<(VectorId, f64)> = response
            .results
            .iter()
            .map(|h| (h.id.clone(), h.score))
            .collect();
        assert_matches_brute_force(
            &format!("query {q}"),
            Metric::Cosine,
            &query,
            &fixture.items,
            &got,
            10,
            Tolerance {
                tie_eps: 1e-6,
                score_tol: 1e-5,
            },
        );
        for hit in &response.results {
            let n = id_number(&hit.id);
            if n % 2 == 0 {
                assert_eq!(hit.id, VectorId::Int(n), "even ids are integers");
            } else {
                assert_eq!(
                    hit.id,
                    VectorId::Str(format!("id-{n}")),
                    "odd ids are strings"
                );
            }
            let rowid = fixture.rowid_of[&hit.id];
            assert_eq!(hit.payload, fixture.payloads.get(&rowid).cloned());
            if n % 3 == 0 {
                assert_eq!(hit.payload, Some(json!({"i": n})), "payload of {n}");
            } else {
                assert_eq!(hit.payload, None, "no payload for {n}");
            }
            checked_hits += 1;
        }
    }
    assert_eq!(checked_hits, 200);
    // Every vector is reachable with k = 50 (all of them), both id types included.
    let all = snap.search(&[0.1, -0.2, 0.3, 0.4], 50, None).unwrap();
    assert_eq!(all.results.len(), 50);
    assert!(all.results.iter().any(|h| matches!(h.id, VectorId::Str(_))));
    assert!(all.results.iter().any(|h| matches!(h.id, VectorId::Int(_))));
}
