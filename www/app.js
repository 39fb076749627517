// The demo: opens the Debian snapshot served beside this page (data/debian/, built by
// scripts/serve-www.sh) with the edgeshard wasm package (pkg/, scripts/build-wasm-pkg.sh).
import init, { Snapshot } from "./pkg/edgeshard_wasm.js";

const $ = (id) => document.getElementById(id);
const decoder = new TextDecoder();
// The whole vector set is about 100 MB: a budget that holds it keeps every search after the
// first one free of requests.
const CACHE_BYTES = 256 * 1024 * 1024;

function formatBytes(n) {
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${n} B`;
}

/** "12.3 ms · 3 requests · 12.0 KB · 2 round trips" for counters added over calls. */
function describe(ms, counters) {
  const sum = (name) => counters.reduce((s, c) => s + c[name], 0);
  const requests = sum("requests");
  return `${ms.toFixed(1)} ms · ${requests} request${requests === 1 ? "" : "s"} · ` +
    `${formatBytes(sum("bytes"))} · ${sum("rounds")} round trip${sum("rounds") === 1 ? "" : "s"}`;
}

function showError(where, e) {
  where.textContent = `${e.code ?? "ERROR"}: ${e.message}`;
  where.classList.add("error");
}

function renderHits(list, hits, truth) {
  list.replaceChildren(
    ...hits.map((hit) => {
      const li = document.createElement("li");
      li.dataset.id = hit.id;
      li.dataset.score = String(hit.score);
      li.textContent = hit.id;
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = (1 - hit.score).toFixed(4);
      const section = document.createElement("span");
      section.className = "section";
      section.textContent = hit.payload?.section ?? "";
      li.append(score, section);
      if (truth?.has(hit.id)) li.classList.add("in-truth");
      return li;
    }),
  );
}

async function main() {
  await init();
  const started = performance.now();
  const snapshot = await Snapshot.open(new URL("data/debian/", location.href).href, { cacheBytes: CACHE_BYTES });
  const info = snapshot.info();
  $("status").textContent =
    `Opened ${info.rows.toLocaleString()} packages in ${info.non_empty_shards} shards ` +
    `(${formatBytes(info.bytes)} on the host) — ${describe(performance.now() - started, [snapshot.stats().last])}`;
  window.snapshot = snapshot;

  $("lookup-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const out = $("lookup-result");
    out.classList.remove("error");
    const name = $("lookup-input").value.trim();
    try {
      const t = performance.now();
      const value = await snapshot.get(name);
      $("lookup-stats").textContent = describe(performance.now() - t, [snapshot.stats().last]);
      out.textContent = value === null ? `No package named "${name}".` : decoder.decode(value);
      out.dataset.found = String(value !== null);
    } catch (e) {
      showError(out, e);
    }
  });

  $("similar-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const list = $("similar-results");
    const stats = $("similar-stats");
    stats.classList.remove("error");
    const name = $("similar-input").value.trim();
    try {
      const t = performance.now();
      const vector = await snapshot.getVector(name);
      const first = snapshot.stats().last;
      if (vector === null) {
        stats.textContent = `No package named "${name}".`;
        list.replaceChildren();
        return;
      }
      // k + 1: the package itself comes first (distance 0).
      const found = await snapshot.search(vector, { k: 11 });
      stats.textContent = describe(performance.now() - t, [first, snapshot.stats().last]);
      window.lastSimilar = { name, vector: Array.from(vector), results: found.results };
      renderHits(list, found.results.filter((h) => h.id !== name).slice(0, 10));
    } catch (e) {
      showError(stats, e);
    }
  });

  const queries = (await (await fetch("data/text_queries.jsonl")).text())
    .split("\n").filter(Boolean).map((line) => JSON.parse(line));
  window.textQueries = queries;
  $("queries").replaceChildren(
    ...queries.map((q) => {
      const button = document.createElement("button");
      button.textContent = q.text;
      button.dataset.queryId = q.id;
      button.addEventListener("click", async () => {
        document.querySelectorAll("#queries button").forEach((b) => b.classList.remove("active"));
        button.classList.add("active");
        const stats = $("query-stats");
        stats.classList.remove("error");
        try {
          const t = performance.now();
          const found = await snapshot.search(new Float32Array(q.vector), { k: 10 });
          stats.textContent = `“${q.text}”: ${describe(performance.now() - t, [snapshot.stats().last])}`;
          renderHits($("query-results"), found.results, new Set(q.top10_base.map(([id]) => id)));
          $("query-results").dataset.queryId = q.id;
        } catch (e) {
          showError(stats, e);
        }
      });
      return button;
    }),
  );
  document.body.dataset.ready = "true";
}

main().catch((e) => {
  showError($("status"), e);
  document.body.dataset.ready = "error";
});
