# Mutated-file campaign (tests/campaign/run.sh): usage mutate.py TRIALS SEED WORKDIR.
# Copy a built snapshot, damage one file (bit flips, random bytes over a
# range, truncation, a byte run zeroed), then read every key and run an exact search; any answer
# that differs from the truth with exit 0 is WRONG; exit 101/signals/"panicked" is a CRASH.
import json, math, os, random, shutil, subprocess, sys
W = sys.argv[3]
B = os.environ["EDGESHARD_CLI"]
recs = [json.loads(l) for l in open(f"{W}/recs.jsonl")]
truth = {r["id"]: r["value"] for r in recs}
keys = sorted(truth) + [1, 2, 4, 99999]
q = [0.3, -1.0, 0.5, 0.2, 0.0, 1.1, -0.4, 0.7]
def cos(a, b):
    d = sum(x*y for x, y in zip(a, b)); na = math.sqrt(sum(x*x for x in a)); nb = math.sqrt(sum(x*x for x in b))
    return 1 - d/(na*nb)
top = sorted(recs, key=lambda r: cos(q, r["emb"]))[:5]
top_ids = [r["id"] for r in top]
stats = {"runs": 0, "correct": 0, "error": 0, "wrong": 0, "crash": 0}
findings = []
def classify(proc, check, what):
    out, err = proc.stdout, proc.stderr
    if proc.returncode in (101, 134, 139) or proc.returncode < 0 or "panicked" in err:
        stats["crash"] += 1; findings.append(("crash", what, proc.returncode, err[-300:])); return
    if proc.returncode != 0:
        if not err.strip():
            findings.append(("silent-error", what, proc.returncode, "")); 
        stats["error"] += 1; return
    problem = check(out)
    if problem:
        stats["wrong"] += 1; findings.append(("wrong", what, problem))
    else:
        stats["correct"] += 1
def check_get(out):
    lines = [json.loads(l) for l in out.splitlines() if l.strip()]
    if len(lines) != len(keys): return f"{len(lines)} lines for {len(keys)} keys"
    for k, l in zip(keys, lines):
        if l["key"] != k or l["found"] != (k in truth) or l["value"] != truth.get(k):
            return f"key {k}: {l}"
def check_search(out):
    got = json.loads(out)["results"]
    ids = [h["id"] for h in got]
    if ids != top_ids: return f"ids {ids} want {top_ids}"
    for h, r in zip(got, top):
        if abs(h["score"] - cos(q, r["emb"])) > 1e-4: return f"score {h}"
def run(args, stdin=None):
    return subprocess.run([B] + args, input=stdin, capture_output=True, text=True, timeout=60)
rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
n = int(sys.argv[1])
for trial in range(n):
    base = rng.choice([f"{W}/base", f"{W}/baseivf", f"{W}/basebin"])
    t = f"{W}/t"
    shutil.rmtree(t, ignore_errors=True); shutil.copytree(base, t)
    files = [os.path.join(d, f) for d, _, fs in os.walk(t) for f in fs]
    path = rng.choice(files)
    data = bytearray(open(path, "rb").read())
    kind = rng.choice(["flip", "flip", "range", "truncate", "zero"])
    if not data: kind = "range"
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(data)); data[i] ^= 1 << rng.randrange(8)
    elif kind == "range":
        i = rng.randrange(max(1, len(data))); L = rng.randint(1, 64)
        data[i:i+L] = bytes(rng.randrange(256) for _ in range(L))
    elif kind == "truncate":
        data = data[:rng.randrange(len(data))]
    else:
        i = rng.randrange(len(data))
        L = rng.randint(1, 4096); data[i:i+L] = b"\0" * len(data[i:i+L])
    open(path, "wb").write(bytes(data))
    what = f"trial {trial} {os.path.basename(base)} {kind} {os.path.relpath(path, t)}"
    stdin = "\n".join(map(str, keys)) + "\n"
    for access in ["auto", "range"]:
        stats["runs"] += 1
        classify(run(["multiget", "--root", t, "--access", access], stdin), check_get, what + f" multiget {access}")
        stats["runs"] += 1
        # Binary codes: through the codes, re-ranking every vector (5 x 100 >= 300 rows), so the
        # answer must still be the exact one; elsewhere an exact search.
        exact = ["--refine", "100"] if base.endswith("basebin") else ["--exact"]
        classify(run(["search", "--root", t, "--access", access, "--vector", json.dumps(q), "--k", "5"] + exact), check_search, what + f" search {access}")
print(json.dumps(stats))
bad = stats["wrong"] + stats["crash"]
for f in findings[:40]: print(f)
sys.exit(1 if bad else 0)
