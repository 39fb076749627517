// The reader conformance suite (tests/conformance/cases.json) as any JS runtime runs it: Node, a
// Chromium page or worker, workerd. No Node imports: the caller loads the package and the suite
// and says where the suite's snapshots are served (`${baseUrl}/${snapshot name}`). Returns one
// line per case answered differently from the oracle (empty: the runtime conforms).

const decoder = new TextDecoder();
const text = (bytes) => (bytes == null ? null : decoder.decode(bytes));

async function answer(snap, c) {
  try {
    switch (c.op) {
      case "get":
        return { value: text(await snap.get(c.key)) };
      case "multiget":
        return { values: (await snap.getMany(c.keys)).map(text) };
      case "search": {
        const options = { k: c.k };
        for (const name of ["probes", "shards", "filter", "fields", "nprobes", "refine", "exact"]) {
          if (c[name] !== undefined) options[name] = c[name];
        }
        const { results } = await snap.search(c.vector, options);
        return { results: results.map(({ id, score, payload, shard }) => ({ id, score, payload, shard })) };
      }
      default:
        throw new Error(`unknown op ${c.op}`);
    }
  } catch (error) {
    if (!error.code) throw error;
    return { error: error.kind, message: error.message };
  }
}

function sameJson(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Whether `got` answers as `expected` says: equal, except scores within 1e-4, an error's
 *  message (only its kind is specified) and a hit's shard the oracle cannot know (absent from
 *  the expected hit: vector-routed snapshots, whose cells the builder chooses). */
function conforms(expected, got) {
  if ("error" in expected) return got.error === expected.error;
  if ("results" in expected) {
    return Array.isArray(got.results) && got.results.length === expected.results.length &&
      expected.results.every((w, i) => {
        const h = got.results[i];
        return w.id === h.id && (w.shard === undefined || w.shard === h.shard) &&
          sameJson(w.payload, h.payload) &&
          Math.abs(w.score - h.score) <= 1e-4;
      });
  }
  return sameJson(expected, got);
}

export async function runConformance(Snapshot, baseUrl, suite) {
  const snaps = {};
  for (const name of Object.keys(suite.snapshots)) {
    snaps[name] = await Snapshot.open(`${baseUrl}/${name}`);
  }
  const failures = [];
  for (const [i, c] of suite.cases.entries()) {
    const got = await answer(snaps[c.snapshot], c);
    if (!conforms(c.expect, got)) {
      failures.push(`case ${i} (${c.op} on ${c.snapshot}):\n  expected ${JSON.stringify(c.expect)}\n  got      ${JSON.stringify(got)}`);
    }
  }
  return { asked: suite.cases.length, failures };
}
