"""edgeshard's Python reader against the CLI on the bundled sample, the format spec's routing
golden table, bad inputs, and one Snapshot shared by several threads. Run by
scripts/test-python.sh (it builds the package into a venv and sets EDGESHARD_CLI)."""

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

import edgeshard

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "tests" / "data" / "debian-sample"
CLI = os.environ["EDGESHARD_CLI"]


def cli(*args):
    out = subprocess.run([CLI, *args], check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("snap") / "debian"
    subprocess.run(
        [CLI, "build", "--input", str(SAMPLE / "packages.parquet"), "--key-field", "id",
         "--value-field", "text", "--vector-field", "embedding", "--payload-fields",
         "section,priority", "--shards", "4", "--out", str(out), "--quiet"],
        check=True,
    )
    return str(out)


@pytest.fixture(scope="session")
def queries():
    lines = (SAMPLE / "text_queries.jsonl").read_text().splitlines()
    return [json.loads(line)["vector"] for line in lines if line.strip()]


def without_latency(answer):
    answer = dict(answer)
    assert isinstance(answer.pop("latency_ms"), float)
    return answer


def test_get_and_multi_get_equal_the_cli(root):
    snap = edgeshard.Snapshot.open(root)
    keys = ["surf", "vim", "chromium", "no-such-package", "emacs"]
    want = cli("get", "--root", root, *keys)
    got = [snap.get(k) for k in keys]
    assert [None if v is None else v.decode() for v in got] == [w.get("value") for w in want]
    assert snap.multi_get(keys) == got
    assert got[3] is None and got[0] is not None


@pytest.mark.parametrize("options, flags", [
    ({}, []),
    ({"k": 20}, ["--k", "20"]),
    ({"filter": ["section=web"], "fields": ["section"]},
     ["--filter", "section=web", "--fields", "section"]),
    ({"exact": True}, ["--exact"]),
])
def test_search_equals_the_cli(root, queries, tmp_path, options, flags):
    snap = edgeshard.Snapshot.open(root)
    for vector in queries[:5]:
        query = tmp_path / "q.json"
        query.write_text(json.dumps(vector))
        want = cli("search", "--root", root, "--vector-file", str(query), *flags)[0]
        got = snap.search(vector, **options)
        assert without_latency(got) == without_latency(want)
        assert got["results"]


def test_numpy_vectors_are_accepted(root, queries):
    np = pytest.importorskip("numpy")
    snap = edgeshard.Snapshot.open(root)
    as_list = snap.search(queries[0])
    as_array = snap.search(np.asarray(queries[0], dtype=np.float32))
    assert [h["id"] for h in as_array["results"]] == [h["id"] for h in as_list["results"]]


def test_info_history_and_route_equal_the_cli(root):
    snap = edgeshard.Snapshot.open(root)
    assert snap.info() == cli("info", "--root", root)[0]
    assert snap.history() == cli("history", "--root", root)
    assert snap.route("vim") == cli("route", "--root", root, "vim")[0]["shard"]


def test_route_equals_the_format_specs_golden_table():
    # ../shared/spec/snapshot-format.md section 4: shard for num_dbs 3, 4, 8, 10, 16.
    golden = [
        (0, "u64be", [2, 1, 1, 7, 9]),
        (1, "u64be", [2, 2, 6, 8, 14]),
        (42, "u64be", [1, 0, 0, 0, 8]),
        (2**63 - 1, "u64be", [0, 2, 6, 2, 6]),
        ("", "utf8", [1, 2, 2, 8, 2]),
        ("a", "utf8", [1, 3, 7, 9, 15]),
        ("user-1", "utf8", [2, 1, 1, 7, 9]),
        (b"\x00", "raw", [0, 3, 3, 3, 11]),
        (b"\x01\x02\x03", "raw", [2, 3, 3, 7, 11]),
    ]
    for key, encoding, shards in golden:
        got = [edgeshard.route([key], n, encoding)[0] for n in (3, 4, 8, 10, 16)]
        assert got == shards, key
    assert edgeshard.route(list(range(10)), 3) == [2, 2, 1, 1, 0, 2, 0, 2, 0, 0]


def test_bad_inputs_raise_errors_by_kind(root, tmp_path):
    snap = edgeshard.Snapshot.open(root)
    with pytest.raises(edgeshard.InvalidInputError) as e:
        snap.search([0.1, 0.2, 0.3])
    assert "dimension" in str(e.value) and e.value.retryable is False
    assert e.value.kind == "invalid_input"
    with pytest.raises(edgeshard.InvalidInputError):
        snap.get(42)  # this snapshot's keys are strings
    with pytest.raises(edgeshard.InvalidInputError):
        snap.get(1.5)
    with pytest.raises(edgeshard.InvalidInputError, match="bool"):
        snap.get(True)
    with pytest.raises(edgeshard.InvalidInputError, match="out of range"):
        edgeshard.route([2**70], 8)
    with pytest.raises(edgeshard.InvalidInputError, match="NaN"):
        snap.search([float("nan")] * 384)
    with pytest.raises(edgeshard.InvalidInputError):
        snap.search([0.0] * 384, exact=True, nprobes=2)
    with pytest.raises(edgeshard.InvalidInputError):
        snap.search([0.0] * 384, filter=["no operator"])
    with pytest.raises(edgeshard.InvalidInputError):
        edgeshard.Snapshot.open(root, access="sometimes")
    with pytest.raises(edgeshard.InvalidInputError):
        edgeshard.route([-1], 8)
    with pytest.raises(edgeshard.NotFoundError) as e:
        edgeshard.Snapshot.open(str(tmp_path / "nothing-here"))
    assert isinstance(e.value, edgeshard.EdgeshardError) and e.value.retryable is False


def test_one_snapshot_serves_several_threads(root, queries):
    snap = edgeshard.Snapshot.open(root)
    keys = [row["id"] for row in cli("search", "--root", root, "--vector", json.dumps(queries[0]),
                                      "--k", "50")[0]["results"]]
    want_values = snap.multi_get(keys)
    want_search = [h["id"] for h in snap.search(queries[1])["results"]]
    failures = []

    def work():
        try:
            for _ in range(20):
                assert snap.multi_get(keys) == want_values
                assert [h["id"] for h in snap.search(queries[1])["results"]] == want_search
        except Exception as e:  # reported below, with the thread's error
            failures.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
