#!/usr/bin/env python3
"""Writes the reader conformance suite: its input records and the expected answers.

    pip install xxhash && python3 tests/conformance/oracle.py   # rewrites the three files

The expected answers come from the records alone (plain Python, float64), never from a reader:
`get` answers are the stored values, `search` answers are brute-force nearest neighbours in the
score convention of shared/src/vector.rs (lower is better: cosine 1 - cos, l2 Euclidean, dot
1 - q.v), with payload filters and projection applied as the CLI documents them. Every reader
(native local / range / download over HTTP, wasm in Node) must answer every case exactly (ids,
order, shards, payloads; scores within 1e-4). See tests/tests/reader_conformance.rs and
runtime-wasm/js/test/conformance.test.mjs.
"""
import json
import math
import os
import random
import sqlite3
import struct

import xxhash  # pip install xxhash (only to regenerate the suite)

HERE = os.path.dirname(os.path.abspath(__file__))
DIM = 8
COLORS = ["red", "green", "blue"]
SHARDS = 4


def records():
    rng = random.Random(20261204)
    out = []
    for i in range(400):
        key = i * 3  # gaps: keys 1, 2, 4, ... are absent
        vector = [round(rng.gauss(0, 1), 4) for _ in range(DIM)]
        out.append({
            "id": key,
            "value": f"value-{key}" + "x" * (i % 37),
            "emb": vector,
            "color": COLORS[i % 3],
            "n": i % 10,
            # The shard of explicitly routed vector-only snapshots.
            "shard": (i * 7) % SHARDS,
        })
    return out


def score(metric, q, v):
    dot = sum(a * b for a, b in zip(q, v))
    if metric == "cosine":
        nq = math.sqrt(sum(a * a for a in q))
        nv = math.sqrt(sum(b * b for b in v))
        return 1.0 - dot / (nq * nv)
    if metric == "l2":
        return math.sqrt(sum((a - b) ** 2 for a, b in zip(q, v)))
    return 1.0 - dot


def shard_of(key, num_dbs):
    """Spec section 4: xxh3_64 of the key's canonical bytes (integers: 8 bytes little-endian,
    two's complement; strings: UTF-8), seed 0, mod num_dbs. Computed here with the `xxhash`
    package (pip), not with edgeshard's router."""
    if isinstance(key, int):
        data = key.to_bytes(8, "little", signed=True)
    else:
        data = key.encode("utf-8")
    return xxhash.xxh3_64_intdigest(data) % num_dbs


def check_golden_routing():
    """The spec's golden values, so a wrong canonical form cannot produce a wrong oracle."""
    assert shard_of(42, 4) == 0 and shard_of(-1, 8) == 3 and shard_of("user-1", 10) == 7
    assert [shard_of(k, 3) for k in range(10)] == [2, 2, 1, 1, 0, 2, 0, 2, 0, 0]


def search_case(recs, metric, q, k, flt=None, fields=None, shards=None, shard_key="_shard"):
    """Brute-force top k. `shard_key` names where a record's shard is known (None: the shard is
    the builder's choice, e.g. a k-means cell, and is not part of the expected answer)."""
    pool = recs
    if flt is not None:
        field, value = flt
        pool = [r for r in pool if r[field] == value]
    scored = sorted(
        ((score(metric, q, r["emb"]), i, r) for i, r in enumerate(pool)),
        key=lambda t: (t[0], t[1]),
    )
    hits = []
    for s, _, r in scored:
        if shards is not None and r[shard_key] not in shards:
            continue
        payload = {"color": r["color"], "n": r["n"]}
        if fields is not None:
            payload = {f: payload[f] for f in fields if f in payload}
        hit = {"id": r["id"], "score": s, "payload": payload}
        if shard_key is not None:
            hit["shard"] = r[shard_key]
        hits.append(hit)
        if len(hits) == k:
            break
    return hits


def main():
    recs = records()
    with open(os.path.join(HERE, "records.jsonl"), "w") as f:
        for r in recs:
            f.write(json.dumps(r) + "\n")
    with open(os.path.join(HERE, "records-str.jsonl"), "w") as f:
        for r in recs[:200]:
            f.write(json.dumps({"id": f"key-{r['id']}", "value": r["value"]}) + "\n")
    check_golden_routing()
    for r in recs:
        r["_shard"] = shard_of(r["id"], SHARDS)

    rng = random.Random(7)
    queries = [[round(rng.gauss(0, 1), 4) for _ in range(DIM)] for _ in range(6)]
    snapshots = {
        "kv-int": {"input": "records.jsonl", "shards": SHARDS},
        "kv-str": {"input": "records-str.jsonl", "shards": 3},
    }
    for metric in ["cosine", "l2", "dot_product"]:
        snapshots[f"vec-{metric}"] = {
            "input": "records.jsonl",
            "shards": SHARDS,
            "metric": metric,
            "vector_field": "emb",
            "payload_fields": ["color", "n"],
        }
    cases = []
    present = [r["id"] for r in recs[::37]]
    absent = [1, 2, 4, 1201, 99999]
    by_key = {r["id"]: r["value"] for r in recs}
    for key in present + absent:
        cases.append({"snapshot": "kv-int", "op": "get", "key": key,
                      "expect": {"value": by_key.get(key)}})
    keys = present[:5] + absent[:2] + present[5:8]
    cases.append({"snapshot": "kv-int", "op": "multiget", "keys": keys,
                  "expect": {"values": [by_key.get(k) for k in keys]}})
    str_values = {f"key-{r['id']}": r["value"] for r in recs[:200]}
    for key in ["key-0", "key-33", "key-597", "key-1", "key-", "KEY-0"]:
        cases.append({"snapshot": "kv-str", "op": "get", "key": key,
                      "expect": {"value": str_values.get(key)}})
    for metric in ["cosine", "l2", "dot_product"]:
        name = f"vec-{metric}"
        for qi, q in enumerate(queries):
            k = [1, 5, 10, 10, 3, 20][qi]
            cases.append({"snapshot": name, "op": "search", "vector": q, "k": k,
                          "expect": {"results": search_case(recs, metric, q, k)}})
        q = queries[0]
        cases.append({"snapshot": name, "op": "search", "vector": q, "k": 7,
                      "filter": ["color=red"],
                      "expect": {"results": search_case(recs, metric, q, 7, ("color", "red"))}})
        cases.append({"snapshot": name, "op": "search", "vector": q, "k": 5,
                      "fields": ["n"],
                      "expect": {"results": search_case(recs, metric, q, 5, fields=["n"])}})
        cases.append({"snapshot": name, "op": "search", "vector": q, "k": 6,
                      "shards": [1, 3],
                      "expect": {"results": search_case(recs, metric, q, 6, shards={1, 3})}})
        cases.append({"snapshot": name, "op": "get", "key": recs[5]["id"],
                      "expect": {"value": recs[5]["value"]}})
        # Bad requests: an error of the named kind, never an answer.
        cases.append({"snapshot": name, "op": "search", "vector": q[:4], "k": 5,
                      "expect": {"error": "invalid_input"}})
        cases.append({"snapshot": name, "op": "search", "vector": q, "k": 0,
                      "expect": {"error": "invalid_input"}})
        cases.append({"snapshot": name, "op": "search", "vector": q, "k": 5, "probes": 2,
                      "expect": {"error": "invalid_input"}})
        cases.append({"snapshot": name, "op": "search", "vector": q, "k": 5, "shards": [9],
                      "expect": {"error": "invalid_input"}})
    cases.append({"snapshot": "kv-int", "op": "search", "vector": queries[0], "k": 5,
                  "expect": {"error": "invalid_input"}})
    # Vector-only snapshots. Explicit routing: each record names its shard, a search names the
    # shards it reads. Cluster and LSH routing: which shard holds a vector is the builder's
    # (k-means, random hyperplanes), so a search probing every shard is exact and its hits'
    # shards are not part of the answer.
    vo = {"input": "records.jsonl", "shards": SHARDS, "metric": "cosine", "vector_field": "emb",
          "payload_fields": ["color", "n"], "vector_only": True}
    snapshots["vo-explicit"] = dict(vo, routing="explicit", shard_field="shard")
    snapshots["vo-cluster"] = dict(vo, routing="cluster")
    snapshots["vo-lsh"] = dict(vo, routing="lsh")
    for qi, q in enumerate(queries[:3]):
        for shards in [[0, 1, 2, 3], [2], [1, 3]]:
            cases.append({"snapshot": "vo-explicit", "op": "search", "vector": q, "k": 8,
                          "shards": shards,
                          "expect": {"results": search_case(recs, "cosine", q, 8, shards=set(shards),
                                                            shard_key="shard")}})
        for name in ["vo-cluster", "vo-lsh"]:
            cases.append({"snapshot": name, "op": "search", "vector": q, "k": 10, "probes": SHARDS,
                          "expect": {"results": search_case(recs, "cosine", q, 10, shard_key=None)}})
            cases.append({"snapshot": name, "op": "search", "vector": q, "k": 6, "probes": SHARDS,
                          "filter": ["color=blue"],
                          "expect": {"results": search_case(recs, "cosine", q, 6, ("color", "blue"),
                                                            shard_key=None)}})
    cases.append({"snapshot": "vo-explicit", "op": "search", "vector": queries[0], "k": 5,
                  "probes": 2, "expect": {"error": "invalid_input"}})
    for name in ["vo-cluster", "vo-lsh"]:
        # Probes are capped at num_dbs (documented); zero probes is a bad request.
        cases.append({"snapshot": name, "op": "search", "vector": queries[1], "k": 5,
                      "probes": SHARDS + 3,
                      "expect": {"results": search_case(recs, "cosine", queries[1], 5,
                                                        shard_key=None)}})
        cases.append({"snapshot": name, "op": "search", "vector": queries[0], "k": 5,
                      "probes": 0, "expect": {"error": "invalid_input"}})
    # IVF-indexed shards (--vector-index ivf): which cell holds a vector is the builder's
    # (k-means), so the oracle asks what does not depend on it: an exact search (`exact`, or
    # every cell probed) equals brute force, a filter still returns k matches, and a stored
    # vector probing one cell finds itself first (its cell is the one nearest to it).
    for metric in ["cosine", "l2", "dot_product"]:
        name = f"ivf-{metric}"
        snapshots[name] = dict(snapshots[f"vec-{metric}"], vector_index="ivf")
        for qi, q in enumerate(queries[:3]):
            cases.append({"snapshot": name, "op": "search", "vector": q, "k": 10, "exact": True,
                          "expect": {"results": search_case(recs, metric, q, 10)}})
            cases.append({"snapshot": name, "op": "search", "vector": q, "k": 5, "nprobes": 1000,
                          "expect": {"results": search_case(recs, metric, q, 5)}})
        q = queries[3]
        cases.append({"snapshot": name, "op": "search", "vector": q, "k": 4, "exact": True,
                      "filter": ["color=green"],
                      "expect": {"results": search_case(recs, metric, q, 4, ("color", "green"))}})
        cases.append({"snapshot": name, "op": "search", "vector": q, "k": 5, "nprobes": 0,
                      "expect": {"error": "invalid_input"}})
        if metric != "dot_product":
            for r in recs[1::97]:
                cases.append({"snapshot": name, "op": "search", "vector": r["emb"], "k": 1,
                              "nprobes": 1,
                              "expect": {"results": search_case(recs, metric, r["emb"], 1)}})
    # Binary codes beside flat shards (--quantization binary): which candidates the codes
    # propose is the builder's, so the oracle asks what does not depend on them: an exact
    # search, and one that re-ranks every vector (refine x k >= the rows), equal brute force;
    # a filtered search (answered without the codes) returns its k matches.
    for metric in ["cosine", "l2", "dot_product"]:
        name = f"codes-{metric}"
        snapshots[name] = dict(snapshots[f"vec-{metric}"], quantization="binary")
        for qi, q in enumerate(queries[:3]):
            cases.append({"snapshot": name, "op": "search", "vector": q, "k": 10, "exact": True,
                          "expect": {"results": search_case(recs, metric, q, 10)}})
            cases.append({"snapshot": name, "op": "search", "vector": q, "k": 5, "refine": 1000,
                          "expect": {"results": search_case(recs, metric, q, 5)}})
        q = queries[3]
        cases.append({"snapshot": name, "op": "search", "vector": q, "k": 4,
                      "filter": ["color=green"],
                      "expect": {"results": search_case(recs, metric, q, 4, ("color", "green"))}})
        cases.append({"snapshot": name, "op": "search", "vector": q, "k": 5, "refine": 0,
                      "expect": {"error": "invalid_input"}})
    # shardyfusion's own shard (tests/data/shardyfusion, its bytes untouched) in a one-shard
    # root assembled by shardyfusion_root.py. Its answers come from the file itself, read here
    # with plain sqlite3: KV rows, and the vectors decoded from sqlite-vec's chunk blobs.
    fixture = sqlite3.connect(os.path.join(HERE, "..", "data", "shardyfusion",
                                           "sqlite_vec_cosine_dim4_shard.db"))
    sf_values = {int.from_bytes(k, "big"): v.decode() for k, v in fixture.execute("SELECT k, v FROM kv")}
    chunks = {cid: blob for cid, blob in fixture.execute(
        "SELECT rowid, vectors FROM vec_index_vector_chunks00")}
    ids = {rid: json.loads(text) for rid, text in fixture.execute(
        "SELECT internal_id, original_id FROM vec_id_map")}
    payloads = {rid: json.loads(text) for rid, text in fixture.execute(
        "SELECT rowid, payload FROM vec_payloads")}
    sf_vectors = []
    for rowid, chunk_id, offset in fixture.execute(
            "SELECT rowid, chunk_id, chunk_offset FROM vec_index_rowids ORDER BY rowid"):
        blob = chunks[chunk_id][offset * 16:(offset + 1) * 16]
        vector = list(struct.unpack("<4f", blob))
        sf_vectors.append({"id": ids[rowid]["v"], "emb": vector, "payload": payloads.get(rowid)})
    snapshots["shardyfusion"] = {"prebuilt": "shardyfusion_root.py"}
    for key in [0, 1, 999, 1999, 2000, 123456]:
        cases.append({"snapshot": "shardyfusion", "op": "get", "key": key,
                      "expect": {"value": sf_values.get(key)}})
    keys = [5, 2001, 1500, 7]
    cases.append({"snapshot": "shardyfusion", "op": "multiget", "keys": keys,
                  "expect": {"values": [sf_values.get(k) for k in keys]}})
    rng4 = random.Random(11)
    for k in [1, 5, 10, 50]:
        q = [round(rng4.gauss(0, 1), 4) for _ in range(4)]
        scored = sorted(((score("cosine", q, v["emb"]), i, v) for i, v in enumerate(sf_vectors)),
                        key=lambda t: (t[0], t[1]))
        hits = [{"id": v["id"], "score": s, "payload": v["payload"], "shard": 0}
                for s, _, v in scored[:k]]
        cases.append({"snapshot": "shardyfusion", "op": "search", "vector": q, "k": k,
                      "expect": {"results": hits}})
    cases.append({"snapshot": "shardyfusion", "op": "search", "vector": [1, 0, 0], "k": 3,
                  "expect": {"error": "invalid_input"}})
    out = {"about": "Generated by oracle.py from the records (and shardyfusion's shard file) alone; do not edit by hand.",
           "snapshots": snapshots, "cases": cases}
    with open(os.path.join(HERE, "cases.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"{len(cases)} cases over {len(snapshots)} snapshots")


if __name__ == "__main__":
    main()
