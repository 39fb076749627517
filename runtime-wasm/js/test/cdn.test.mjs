// The cache headers the README recommends for serving a snapshot (scripts/nginx-snapshot-cache.conf)
// in front of the wasm reader in headless Chromium: with them the browser's HTTP cache serves a
// second reader's lookups (no shard request reaches nginx), and a new publish is still seen at
// once (`_CURRENT` is revalidated). Run through scripts/test-wasm.sh (it sets EDGESHARD_CLI).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { execFileSync } from "node:child_process";
import { chromium } from "playwright-core";
import { startNginx, cli, repo, CHROMIUM_ARGS } from "./harness.mjs";

let work;
let server;
let browser;
const KEYS = Array.from({ length: 60 }, (_, i) => i * 7);

/** Publishes a KV snapshot of 500 rows whose values carry `version` into `root`. */
function publish(root, version) {
  const input = join(work, `${version}.jsonl`);
  const lines = Array.from({ length: 500 }, (_, id) => JSON.stringify({ id, value: `${version}-${id}` }));
  writeFileSync(input, lines.join("\n") + "\n");
  execFileSync(cli(), ["build", "--input", input, "--key-field", "id", "--value-field", "value",
    "--shards", "4", "--out", root], { stdio: "pipe" });
}

/** nginx's access log lines so far. */
const served = () => readFileSync(join(work, "access.log"), "utf8").split("\n").filter(Boolean);

before(async () => {
  work = mkdtempSync(join(tmpdir(), "edgeshard-wasm-cdn-"));
  symlinkSync(join(repo, "www", "pkg"), join(work, "pkg"));
  writeFileSync(join(work, "index.html"), "<!doctype html>");
  publish(join(work, "snap"), "v1");
  const headers = readFileSync(join(repo, "scripts", "nginx-snapshot-cache.conf"), "utf8");
  server = await startNginx(work, "normal", `access_log ${join(work, "access.log")}; ${headers}`);
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

const lookups = (page, keys) =>
  page.evaluate(async ([root, keys]) => {
    const pkg = await import("/pkg/edgeshard_wasm.js");
    if (!globalThis.inited) {
      await pkg.default();
      globalThis.inited = true;
    }
    const snap = await pkg.Snapshot.open(root);
    const values = [];
    for (const key of keys) {
      const value = await snap.get(key);
      values.push(value === null ? null : new TextDecoder().decode(value));
    }
    return { values, requests: snap.stats().total.requests, runId: snap.info().run_id };
  }, [`${server.url}/snap`, keys]);

test("immutable shards come from the browser's cache; a new publish is seen at once", async () => {
  const page = await (await browser.newContext()).newPage();
  await page.goto(`${server.url}/index.html`);
  const first = await lookups(page, KEYS);
  assert.deepEqual(first.values, KEYS.map((k) => `v1-${k}`));
  const shardHits = (lines) => lines.filter((l) => l.includes("/shards/")).length;
  const before = served();
  assert.ok(shardHits(before) > 0, "the first reader read shards from nginx");

  // A second reader in the same browser: only _CURRENT is asked again (revalidated).
  const second = await lookups(page, KEYS);
  assert.deepEqual(second.values, first.values);
  assert.ok(second.requests >= first.requests, "the reader still made its requests");
  const again = served().slice(before.length);
  assert.equal(shardHits(again), 0, `shard requests reached nginx:\n${again.join("\n")}`);
  assert.ok(again.some((l) => l.includes("/_CURRENT")), "_CURRENT was revalidated");
  assert.ok(!again.some((l) => l.includes("/manifests/")), "the manifest came from the cache");

  // A new build published under the same root: the next reader sees it.
  publish(join(work, "snap"), "v2");
  const third = await lookups(page, KEYS);
  assert.notEqual(third.runId, first.runId);
  assert.deepEqual(third.values, KEYS.map((k) => `v2-${k}`));
  await page.close();
});

test("the headers the README recommends are served", async () => {
  const head = async (path) => (await fetch(`${server.url}/snap/${path}`, { method: "HEAD" })).headers;
  const current = await head("_CURRENT");
  assert.equal(current.get("cache-control"), "no-cache");
  const pointer = JSON.parse(readFileSync(join(work, "snap", "_CURRENT"), "utf8"));
  const manifest = pointer.manifest_ref.split("/snap/")[1];
  assert.match((await head(manifest)).get("cache-control"), /immutable/);
  const shard = served().map((l) => /GET \/snap\/(shards\/\S+)/.exec(l)?.[1]).find(Boolean);
  assert.ok(shard, "a shard path");
  assert.match((await head(shard)).get("cache-control"), /immutable/);
  assert.equal((await head(shard)).get("access-control-expose-headers"), "ETag, Content-Range, Content-Length");
});
