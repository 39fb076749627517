// The www/ demo in headless Chromium (playwright-core driving /usr/bin/chromium), served by nginx
// on 127.0.0.1 with the Debian snapshot scripts/serve-www.sh --prepare built (62,666 packages):
// clicks through the three features and checks what the page shows against the ground truth
// (runtime-native's answers through the CLI, and the data set's exact top 10 of each text
// query). UPDATE_SCREENSHOT=1 also writes docs/www-demo.png.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { startNginx, bindSidecars, repo, cli, CHROMIUM_ARGS } from "./harness.mjs";

const www = join(repo, "www");
const snapshotDir = join(www, "data", "debian");
let server;
let browser;
let page;

before(async () => {
  for (const needed of [join(snapshotDir, "_CURRENT"), join(www, "pkg", "edgeshard_wasm_bg.wasm")]) {
    if (!existsSync(needed)) throw new Error(`${needed} is missing: run scripts/serve-www.sh --prepare`);
  }
  server = await startNginx(www);
  bindSidecars(snapshotDir, `${server.url}/data/debian`);
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS, timeout: 60_000 });
  page = await browser.newPage({ viewport: { width: 1100, height: 1000 } });
  await page.goto(`${server.url}/index.html`);
  await page.waitForSelector("body[data-ready]", { timeout: 60_000 });
  assert.equal(await page.getAttribute("body", "data-ready"), "true", await page.textContent("#status"));
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

function native(args) {
  return execFileSync(cli(), [...args, "--root", snapshotDir], { encoding: "utf8", maxBuffer: 1 << 26 });
}

const statsPattern = /[\d.]+ ms · \d+ requests? · [\d.]+ (B|KB|MB) · \d+ round trips?/;

test("1. look up a package by name", async () => {
  for (const name of ["surf", "vim", "no-such-package-xyz"]) {
    await page.fill("#lookup-input", name);
    await page.click("#lookup-button");
    await page.waitForFunction((n) => document.querySelector("#lookup-result").textContent.includes(n), name);
    const want = JSON.parse(native(["get", name]));
    const shown = await page.textContent("#lookup-result");
    assert.equal(shown, want.found ? want.value : `No package named "${name}".`);
    assert.match(await page.textContent("#lookup-stats"), statsPattern);
  }
});

test("2. more like this: nearest packages to a chosen one", async () => {
  await page.fill("#similar-input", "vim");
  await page.click("#similar-button");
  await page.waitForFunction(() => window.lastSimilar?.name === "vim", null, { timeout: 60_000 });
  const { vector, results } = await page.evaluate(() => window.lastSimilar);
  assert.equal(results[0].id, "vim", "the package itself is its nearest neighbour");
  const want = JSON.parse(native(["search", "--k", "11", "--vector", JSON.stringify(vector)]));
  assert.deepEqual(results.map((h) => h.id), want.results.map((h) => h.id));
  const shown = await page.$$eval("#similar-results li", (lis) => lis.map((li) => li.dataset.id));
  assert.deepEqual(shown, want.results.map((h) => h.id).filter((id) => id !== "vim").slice(0, 10));
  assert.match(await page.textContent("#similar-stats"), statsPattern);
});

test("3. the example text queries: results are the exact top 10 of the data set", async () => {
  const queries = await page.evaluate(() => window.textQueries);
  assert.equal(queries.length, 20);
  for (const q of queries) {
    await page.click(`#queries button[data-query-id="${q.id}"]`);
    await page.waitForSelector(`#query-results[data-query-id="${q.id}"]`, { timeout: 60_000 });
    const hits = await page.$$eval("#query-results li", (lis) =>
      lis.map((li) => ({ id: li.dataset.id, score: Number(li.dataset.score), truth: li.classList.contains("in-truth") })),
    );
    const truth = q.top10_base;
    // Package families have near-identical texts, so close ties may swap: compare as sets, and
    // each rank's similarity with the ground truth's (4 decimals).
    assert.deepEqual(new Set(hits.map((h) => h.id)), new Set(truth.map(([id]) => id)), `query ${q.text}`);
    hits.forEach((h, i) => assert.ok(Math.abs(1 - h.score - truth[i][1]) < 1e-4, `${q.text} rank ${i}`));
    assert.ok(hits.every((h) => h.truth), "every hit marked as in the ground truth");
    assert.match(await page.textContent("#query-stats"), statsPattern);
  }
  if (process.env.UPDATE_SCREENSHOT) {
    await page.click('#queries button[data-query-id="tq00"]');
    await page.waitForSelector('#query-results[data-query-id="tq00"]');
    await page.screenshot({ path: join(repo, "docs", "www-demo.png"), fullPage: true });
  }
});
