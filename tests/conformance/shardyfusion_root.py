#!/usr/bin/env python3
"""Assembles a one-shard snapshot root around the sqlite-vec shard shardyfusion's own code wrote
(tests/data/shardyfusion: 2,000 KV rows with u64be keys, 50 cosine dim-4 vectors, its sidecar),
for the reader conformance suite:

    python3 tests/conformance/shardyfusion_root.py OUT_DIR

The shard file and its sidecar are shardyfusion's bytes, untouched. The manifest and _CURRENT
are written here with plain sqlite3 and json, as shardyfusion lays them out (format spec
sections 1-3: s3_prefix, db_url under it, shards/run_id=R/db=00000/attempt=00), never by
edgeshard."""
import json
import os
import shutil
import sqlite3
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "data", "shardyfusion")
RUN_ID = "5f0a1c2e3d4b5a69788796a5b4c3d2e1"
PREFIX = "s3://bucket/shardyfusion-conformance"
CREATED = "2026-12-04T00:00:00.000000Z"
# Format spec section 3, verbatim.
DDL = """CREATE TABLE build_meta (run_id TEXT NOT NULL, created_at TEXT NOT NULL, num_dbs INTEGER NOT NULL,
  s3_prefix TEXT NOT NULL, key_col TEXT NOT NULL, sharding TEXT NOT NULL, db_path_template TEXT NOT NULL,
  shard_prefix TEXT NOT NULL, format_version INTEGER NOT NULL, key_encoding TEXT NOT NULL,
  custom TEXT NOT NULL DEFAULT '{}');
CREATE TABLE shards (db_id INTEGER NOT NULL PRIMARY KEY, db_url TEXT, attempt INTEGER NOT NULL,
  row_count INTEGER NOT NULL, db_bytes INTEGER NOT NULL, min_key TEXT, max_key TEXT,
  checkpoint_id TEXT, writer_info TEXT NOT NULL DEFAULT '{}');"""


def main(out):
    shard_dir = f"shards/run_id={RUN_ID}/db=00000/attempt=00"
    os.makedirs(os.path.join(out, shard_dir), exist_ok=True)
    db = os.path.join(out, shard_dir, "shard.db")
    shutil.copyfile(os.path.join(FIXTURES, "sqlite_vec_cosine_dim4_shard.db"), db)
    shutil.copyfile(os.path.join(FIXTURES, "sqlite_vec_cosine_dim4_shard.sidecar"),
                    os.path.join(out, shard_dir, "shard.sidecar"))
    manifest_dir = f"manifests/{CREATED}_run_id={RUN_ID}"
    os.makedirs(os.path.join(out, manifest_dir), exist_ok=True)
    path = os.path.join(out, manifest_dir, "manifest")
    if os.path.exists(path):
        os.remove(path)
    conn = sqlite3.connect(path)
    conn.executescript(DDL)
    sharding = {"cel_columns": None, "cel_expr": None, "hash_algorithm": "xxh3_64",
                "routing_values": None, "strategy": "hash"}
    custom = {"sqlite_sidecar": {"codec": "zstd", "filename": "shard.sidecar", "format_version": 8,
                                 "page_size": 4096},
              "vector": {"backend": "sqlite-vec", "dim": 4, "index_type": "flat",
                         "kv_backend": "sqlite-vec", "metric": "cosine", "quantization": None,
                         "unified": True}}
    conn.execute("INSERT INTO build_meta VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                 (RUN_ID, CREATED, 1, PREFIX, "_key", json.dumps(sharding, sort_keys=True),
                  "db={db_id:05d}", "shards", 4, "u64be", json.dumps(custom, sort_keys=True)))
    conn.execute("INSERT INTO shards VALUES (?,?,?,?,?,?,?,?,?)",
                 (0, f"{PREFIX}/{shard_dir}", 0, 2000, os.path.getsize(db), "0", "1999",
                  "00112233445566778899aabbccddeeff",
                  json.dumps({"attempt": 0, "duration_ms": 1, "stage_id": None,
                              "task_attempt_id": None})))
    conn.commit()
    conn.close()
    with open(os.path.join(out, "_CURRENT"), "w") as f:
        json.dump({"format_version": 1, "manifest_content_type": "application/x-sqlite3",
                   "manifest_ref": f"{PREFIX}/{manifest_dir}/manifest", "run_id": RUN_ID,
                   "updated_at": CREATED}, f, separators=(",", ":"))


if __name__ == "__main__":
    main(sys.argv[1])
