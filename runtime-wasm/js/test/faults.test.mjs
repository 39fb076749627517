// The wasm reader against damaged snapshots and a misbehaving host (issue 9, "never a wrong
// answer"): each case must end in a named error, never in an answer (a value, or null for
// "not found"). The same cases for runtime-native are in tests/tests/reliability.rs.
// Run through scripts/test-wasm.sh (it builds the package and the fixtures).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, writeFileSync, rmSync, readdirSync, statSync, copyFileSync, openSync, readSync, closeSync } from "node:fs";
import { createServer } from "node:http";
import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { startNginx, bindSidecars, loadPackage, cli, copySample as copySampleInto, shardFiles } from "./harness.mjs";

/** bindSidecars for a host served by this very process: the CLI must run without blocking the
 *  event loop that answers its requests. */
const bindSidecarsAsync = (root, host) => promisify(execFile)(cli(), ["sidecar-bind", "--root", root, "--host", host]);

const fixtures = process.env.WASM_FIXTURES;
if (!fixtures) throw new Error("WASM_FIXTURES is not set: run scripts/test-wasm.sh");
const expected = JSON.parse(readFileSync(join(fixtures, "expected.json"), "utf8"));

let pkg;
let work;

before(async () => {
  pkg = await loadPackage();
  work = mkdtempSync(join(tmpdir(), "edgeshard-wasm-faults-"));
});

after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

const copySample = (name) => copySampleInto(work, name);

/** Runs SQL on the current manifest of `root` (python3's sqlite3: what a tampering or buggy
 *  writer would leave). */
function editManifest(root, sql) {
  const current = JSON.parse(readFileSync(join(root, "_CURRENT"), "utf8"));
  const relative = current.manifest_ref.slice(current.manifest_ref.indexOf("manifests/"));
  execFileSync("python3", [
    "-c",
    "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()",
    join(root, relative),
    sql,
  ]);
}

/** Asserts `promise` rejects with error code `code` and a message matching `pattern`. */
async function assertFails(promise, code, pattern) {
  await assert.rejects(promise, (e) => {
    assert.equal(e.code, code, e.message);
    assert.match(e.message, pattern);
    return true;
  });
}

/** Serves `root` with nginx; sidecars are bound to its ETags unless `bind` is false (the CLI's
 *  sidecar-bind refuses a snapshot whose manifest is refused). */
async function withNginx(root, body, { bind = true } = {}) {
  const host = await startNginx(root);
  try {
    if (bind) bindSidecars(root, host.url);
    await body(host.url);
  } finally {
    await host.stop();
  }
}

test("swapped shard rows of another writer: a lookup is an error, never 'not found'", async () => {
  const root = copySample("swapped");
  // Another writer's rows (no writer_info.writer, so their key bounds are not checked at open).
  editManifest(
    root,
    `UPDATE shards SET writer_info = json_remove(writer_info, '$.writer');
     UPDATE shards SET db_id = 100 WHERE db_id = 0;
     UPDATE shards SET db_id = 0 WHERE db_id = 1;
     UPDATE shards SET db_id = 1 WHERE db_id = 100;`,
  );
  await withNginx(root, async (url) => {
    const snap = await pkg.Snapshot.open(url);
    // The rows moved with their page-checksum seeds, but checksums bind pages to a db_id too.
    await assertFails(snap.getMany(expected.keys), "CORRUPT_SHARD", /routes to shard|fails its checksum/);
  }, { bind: false });
});

test("swapped shard rows written by edgeshard are refused when the snapshot opens", async () => {
  const root = copySample("swapped-own");
  editManifest(
    root,
    `UPDATE shards SET db_id = 100 WHERE db_id = 0;
     UPDATE shards SET db_id = 0 WHERE db_id = 1;
     UPDATE shards SET db_id = 1 WHERE db_id = 100;`,
  );
  await withNginx(root, async (url) => {
    await assertFails(pkg.Snapshot.open(url), "INVALID_SNAPSHOT", /routes to shard/);
  }, { bind: false });
});

test("a db_url that climbs out of the root is refused", async () => {
  const root = copySample("escape");
  editManifest(root, `UPDATE shards SET db_url = replace(db_url, 'shards/', 'shards/../../elsewhere/shards/') WHERE db_id = 2;`);
  await withNginx(root, async (url) => {
    await assertFails(pkg.Snapshot.open(url), "INVALID_SNAPSHOT", /\.\./);
  }, { bind: false });
});

test("another build's shard (another size) under a shard's path is an error", async () => {
  const root = copySample("replaced");
  const [first, second] = shardFiles(root);
  copyFileSync(second, first);
  await withNginx(root, async (url) => {
    const snap = await pkg.Snapshot.open(url);
    await assertFails(snap.getMany(expected.keys), "OBJECT_CHANGED", /the manifest says/);
  });
});

/** A static host on 127.0.0.1 whose 206 bodies of shard.db files pass through `damage(body,
 *  count, start)` (count: bodies damaged so far; start: the range's first byte), which returns
 *  the body to send or null to send it intact; whole-object GETs are served intact. */
async function startDamagingHost(root, damage) {
  let count = 0;
  const server = createServer((req, res) => {
    const path = join(root, decodeURIComponent(new URL(req.url, "http://x").pathname));
    let size;
    try {
      size = statSync(path).size;
    } catch {
      res.writeHead(404).end();
      return;
    }
    const etag = `"${size}-fixed"`;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range || "");
    if (req.method === "HEAD" || !range) {
      res.writeHead(200, { "Content-Length": size, ETag: etag, "Accept-Ranges": "bytes" });
      res.end(req.method === "HEAD" ? undefined : readFileSync(path));
      return;
    }
    const start = Number(range[1]);
    const end = Math.min(range[2] ? Number(range[2]) : size - 1, size - 1);
    const full = Buffer.alloc(end - start + 1);
    const fd = openSync(path, "r");
    readSync(fd, full, 0, full.length, start);
    closeSync(fd);
    let body = full;
    if (path.endsWith("shard.db")) {
      const damaged = damage(Buffer.from(full), count, start);
      if (damaged) {
        body = damaged;
        count++;
      }
    }
    res.writeHead(206, {
      "Content-Length": body.length,
      "Content-Range": `bytes ${start}-${end}/${size}`,
      ETag: etag,
    });
    res.end(body);
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  const url = `http://127.0.0.1:${server.address().port}`;
  return { url, damaged: () => count, stop: () => new Promise((ok) => server.close(ok)) };
}

/** A proxy that cut the stream: bodies half the range they claim. */
const halfBody = (body) => (body.length > 1 ? body.subarray(0, body.length >> 1) : null);
/** Damage no TCP checksum caught: one bit flipped in the middle of the body. */
const flipBit = (body) => {
  body[body.length >> 1] ^= 0x10;
  return body;
};
const text = (bytes) => (bytes === null ? null : new TextDecoder().decode(bytes));

test("a 206 body shorter than its range is BAD_RANGE_RESPONSE, never pages of zeros", async () => {
  const root = copySample("truncated");
  const host = await startDamagingHost(root, halfBody);
  try {
    const snap = await pkg.Snapshot.open(host.url);
    await assertFails(snap.getMany(expected.keys.slice(0, 50)), "BAD_RANGE_RESPONSE", /body has/);
  } finally {
    await host.stop();
  }
});

test("a bit flipped in every range body is CORRUPT_SHARD naming the page, never an answer", async () => {
  const root = copySample("flipped");
  const host = await startDamagingHost(root, flipBit);
  try {
    await bindSidecarsAsync(root, host.url);
    const snap = await pkg.Snapshot.open(host.url);
    await assertFails(snap.getMany(expected.keys), "CORRUPT_SHARD", /page \d+ fails its checksum/);
    assert.ok(host.damaged() > 0);
  } finally {
    await host.stop();
  }
});

test("a bit flipped in one range body is read again and every answer is right", async () => {
  const root = copySample("flipped-once");
  // The open's probe (from byte 0) is left alone: the first body a lookup fetches is damaged.
  const host = await startDamagingHost(root, (body, count, start) => (count === 0 && start > 0 ? flipBit(body) : null));
  try {
    await bindSidecarsAsync(root, host.url);
    const snap = await pkg.Snapshot.open(host.url);
    assert.deepEqual((await snap.getMany(expected.keys)).map(text), expected.values);
    assert.equal(host.damaged(), 1);
  } finally {
    await host.stop();
  }
});

test("a page damaged at rest (same size, same ETag scheme) is CORRUPT_SHARD", async () => {
  const root = copySample("rotten");
  const files = shardFiles(root);
  for (const file of files) {
    // A byte in the middle of every page but the first: whichever leaf a lookup reads is
    // damaged (the sidecar still holds the intact interior pages it was built from).
    const bytes = readFileSync(file);
    for (let at = 4096 + 2048; at < bytes.length; at += 4096) bytes[at] ^= 0x01;
    writeFileSync(file, bytes);
  }
  await withNginx(root, async (url) => {
    const snap = await pkg.Snapshot.open(url);
    await assertFails(snap.getMany(expected.keys), "CORRUPT_SHARD", /fails its checksum/);
  });
});
