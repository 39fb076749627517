// Test harness shared by the wasm package's tests: a real nginx serving a folder on 127.0.0.1
// (Range, ETags, as a static host or CDN serves), started on a free port and stopped after.
// Modes mirror tests/src/http_server.rs: "normal", "ignores-range" (max_ranges 0: every GET
// answered 200 with the whole body), "gzip" (every answer labelled Content-Encoding: gzip),
// plus "unavailable" (every answer 503, for retries).
import { spawn, execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, writeFileSync, existsSync, readFileSync, rmSync, readdirSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

export function freePort() {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.unref();
    server.on("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => ok(port));
    });
  });
}

async function waitForPort(port, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try {
      await fetch(`http://127.0.0.1:${port}/`);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`nginx did not listen on 127.0.0.1:${port} within ${ms} ms`);
}

/** Starts nginx serving `root` on 127.0.0.1; resolves to { url, stop() }. */
export async function startNginx(rootDir, mode = "normal", extraHeaders = "") {
  // nginx resolves a relative root against its prefix (the state folder), not the cwd.
  const root = resolve(rootDir);
  const nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"].find((p) => existsSync(p));
  if (!nginx) throw new Error("nginx is not installed: run scripts/setup.sh (nginx-light)");
  const state = mkdtempSync(join(tmpdir(), "edgeshard-wasm-nginx-"));
  const port = await freePort();
  const extra = {
    normal: "",
    "ignores-range": "max_ranges 0;",
    gzip: "add_header Content-Encoding gzip always;",
    unavailable: "location / { return 503; }",
  }[mode];
  if (extra === undefined) throw new Error(`unknown nginx mode ${mode}`);
  const s = state;
  writeFileSync(
    join(state, "nginx.conf"),
    `daemon off; master_process off; worker_processes 1;
     error_log ${s}/error.log warn; pid ${s}/nginx.pid;
     events { worker_connections 256; }
     http {
       access_log off; sendfile on; default_type application/octet-stream;
       types { text/html html; application/javascript js mjs; application/wasm wasm;
               application/json json jsonl; text/css css; image/png png; }
       client_body_temp_path ${s}/body; proxy_temp_path ${s}/proxy;
       fastcgi_temp_path ${s}/fastcgi; uwsgi_temp_path ${s}/uwsgi; scgi_temp_path ${s}/scgi;
       server { listen 127.0.0.1:${port}; root ${root}; ${extraHeaders} ${extra} }
     }`,
  );
  const child = spawn(nginx, ["-c", join(state, "nginx.conf"), "-p", state], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  let exited = false;
  child.on("exit", () => (exited = true));
  // nginx must not outlive this process, however it ends (a failed assertion, a crash).
  const killOnExit = () => {
    if (!exited) child.kill("SIGKILL");
  };
  process.once("exit", killOnExit);
  try {
    await waitForPort(port, 10_000);
  } catch (e) {
    child.kill("SIGKILL");
    const log = existsSync(join(s, "error.log")) ? readFileSync(join(s, "error.log"), "utf8") : "";
    throw new Error(`${e.message}\n${log}`);
  }
  return {
    url: `http://127.0.0.1:${port}`,
    async stop() {
      process.off("exit", killOnExit);
      if (!exited) {
        const gone = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await Promise.race([gone, new Promise((r) => setTimeout(r, 3000))]);
        if (!exited) child.kill("SIGKILL");
      }
      rmSync(state, { recursive: true, force: true });
    },
  };
}

/** The edgeshard CLI the fixtures were built with (scripts/wasm-fixtures.sh exports it). */
export function cli() {
  const path = process.env.EDGESHARD_CLI;
  if (!path || !existsSync(path)) {
    throw new Error("EDGESHARD_CLI is not set: run the tests through scripts/test-wasm.sh");
  }
  return path;
}

/** Binds the snapshot's sidecars to the ETags `host` reports (edgeshard sidecar-bind). */
export function bindSidecars(root, host) {
  execFileSync(cli(), ["sidecar-bind", "--root", root, "--host", host], { stdio: "pipe" });
}

/** Loads the package built by scripts/build-wasm-pkg.sh (WASM_PKG_DIR overrides www/pkg). */
export async function loadPackage() {
  const dir = resolve(process.env.WASM_PKG_DIR || join(repo, "www", "pkg"));
  const js = join(dir, "edgeshard_wasm.js");
  if (!existsSync(js)) throw new Error(`${js} is missing: run scripts/build-wasm-pkg.sh`);
  const pkg = await import(js);
  await pkg.default({ module_or_path: readFileSync(join(dir, "edgeshard_wasm_bg.wasm")) });
  return pkg;
}

/** Flags for Debian's headless Chromium in a container (no sandbox, no GPU, no phoning home). */
export const CHROMIUM_ARGS = [
  "--headless=new",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-dev-shm-usage",
  "--disable-background-networking",
  "--disable-component-update",
  "--no-first-run",
  "--disable-sync",
];

/** A private copy of the bundled sample fixture (`$WASM_FIXTURES/sample`) at `work/name`, for a
 *  test that changes files. */
export function copySample(work, name) {
  const dir = join(work, name);
  cpSync(join(process.env.WASM_FIXTURES, "sample"), dir, { recursive: true });
  return dir;
}

/** Every `shard.db` under `root`, sorted. */
export function shardFiles(root) {
  const out = [];
  const walk = (d) => {
    for (const e of readdirSync(d)) {
      const p = join(d, e);
      if (statSync(p).isDirectory()) walk(p);
      else if (e === "shard.db") out.push(p);
    }
  };
  walk(root);
  return out.sort();
}
