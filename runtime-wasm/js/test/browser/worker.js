// Dedicated worker: the reader runs here exactly as in a page (fetch is global in workers too).
import { runChecks } from "./run.js";

self.onmessage = async (event) => {
  const { snapshotUrl, keys, queries } = event.data;
  try {
    self.postMessage({ ok: true, result: await runChecks(snapshotUrl, keys, queries) });
  } catch (e) {
    self.postMessage({ ok: false, error: `${e && e.code} ${e && e.message}` });
  }
};
