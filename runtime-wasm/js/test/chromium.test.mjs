// The wasm package in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core):
// in a page and in a dedicated worker, reading the sample snapshot from nginx on 127.0.0.1 with
// Range requests through fetch. Answers must equal runtime-native's, and the page answers every
// case of the reader conformance suite (tests/conformance) like the oracle.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, existsSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { startNginx, bindSidecars, repo, CHROMIUM_ARGS } from "./harness.mjs";
import { chromium } from "playwright-core";

const fixtures = process.env.WASM_FIXTURES;
if (!fixtures) throw new Error("WASM_FIXTURES is not set: run scripts/test-wasm.sh");
const expected = JSON.parse(readFileSync(join(fixtures, "expected.json"), "utf8"));
const CHROMIUM = "/usr/bin/chromium";
const suite = JSON.parse(readFileSync(join(repo, "tests", "conformance", "cases.json"), "utf8"));

let work;
let server;
let browser;
// Every key and query native answered (1,000 keys, 100 queries), as in the Node suite.
const KEYS = expected.keys;
const QUERIES = expected.queries;

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run scripts/setup.sh`);
  work = mkdtempSync(join(tmpdir(), "edgeshard-wasm-chromium-"));
  symlinkSync(join(repo, "www", "pkg"), join(work, "pkg"));
  symlinkSync(join(repo, "runtime-wasm", "js", "test", "browser"), join(work, "browser"));
  cpSync(join(fixtures, "sample"), join(work, "snap"), { recursive: true });
  cpSync(join(fixtures, "conformance"), join(work, "conformance"), { recursive: true });
  cpSync(join(repo, "tests", "conformance", "cases.json"), join(work, "conformance", "cases.json"));
  server = await startNginx(work);
  bindSidecars(join(work, "snap"), `${server.url}/snap`);
  for (const name of Object.keys(suite.snapshots)) {
    bindSidecars(join(work, "conformance", name), `${server.url}/conformance/${name}`);
  }
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 60_000 });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

function check(result, label) {
  assert.ok(result.open.requests <= 3, `${label}: open took ${result.open.requests} requests`);
  assert.deepEqual(result.values, expected.values.slice(0, KEYS.length), `${label}: getMany`);
  assert.equal(result.single, expected.values[0], `${label}: get`);
  result.searches.forEach((got, i) => {
    const want = QUERIES[i].results;
    assert.deepEqual(got.results.map((h) => h.id), want.map((h) => h.id), `${label} query ${i}: ids`);
    got.results.forEach((h, r) => {
      assert.ok(Math.abs(h.score - want[r].score) < 1e-6, `${label} query ${i} rank ${r}: score`);
      assert.deepEqual(h.payload, want[r].payload);
      assert.equal(h.shard, want[r].shard);
    });
  });
  assert.deepEqual(result.error, { isError: true, code: "INVALID_ARGUMENT", message: result.error.message });
  assert.match(result.error.message, /dimension 3/);
  assert.deepEqual(result.stats.sidecarShards, [0, 1, 2, 3], `${label}: sidecars used`);
}

async function openPage() {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${server.url}/browser/index.html`);
  await page.waitForFunction(() => window.ready === true, null, { timeout: 30_000 });
  return { page, errors };
}

test("in a Chromium page: answers equal runtime-native's", async () => {
  const { page, errors } = await openPage();
  const result = await page.evaluate(
    ([url, keys, queries]) => window.runInPage(url, keys, queries),
    [`${server.url}/snap`, KEYS, QUERIES.map((q) => q.vector)],
  );
  check(result, "page");
  assert.deepEqual(errors, []);
  await page.close();
});

test("in a Chromium dedicated worker: answers equal runtime-native's", async () => {
  const { page, errors } = await openPage();
  const result = await page.evaluate(
    ([url, keys, queries]) => window.runInWorker(url, keys, queries),
    [`${server.url}/snap`, KEYS, QUERIES.map((q) => q.vector)],
  );
  check(result, "worker");
  assert.deepEqual(errors, []);
  await page.close();
});

test("in a Chromium page: every reader conformance case answered like the oracle", async () => {
  const { page, errors } = await openPage();
  const { asked, failures } = await page.evaluate(async (base) => {
    const pkg = await import("/pkg/edgeshard_wasm.js");
    await pkg.default();
    const { runConformance } = await import("/browser/conformance.js");
    const suite = await (await fetch(`${base}/cases.json`)).json();
    return runConformance(pkg.Snapshot, base, suite);
  }, `${server.url}/conformance`);
  assert.equal(asked, suite.cases.length);
  assert.equal(failures.length, 0, `${failures.length} of ${asked} answers differ:\n${failures.join("\n")}`);
  assert.deepEqual(errors, []);
  await page.close();
});
