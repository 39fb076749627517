// Runs the same checks in a page and in a dedicated worker: opens the snapshot served beside this
// file, looks up keys and runs searches, and returns what it got (the Node side compares it with
// runtime-native's answers). Also used by the workerd test.
import init, { Snapshot } from "../pkg/edgeshard_wasm.js";

const decoder = new TextDecoder();

export async function runChecks(snapshotUrl, keys, queries, initArg) {
  await init(initArg);
  const snap = await Snapshot.open(snapshotUrl, {});
  const open = snap.stats().last;
  const values = (await snap.getMany(keys)).map((v) => (v === null ? null : decoder.decode(v)));
  const single = await snap.get(keys[0]);
  const searches = [];
  for (const q of queries) {
    searches.push(await snap.search(new Float32Array(q), { k: 10 }));
  }
  let error = null;
  try {
    await snap.search([1, 2, 3]);
  } catch (e) {
    error = { isError: e instanceof Error, code: e.code, message: e.message };
  }
  return {
    open,
    values,
    single: single === null ? null : decoder.decode(single),
    searches,
    error,
    stats: snap.stats(),
  };
}
