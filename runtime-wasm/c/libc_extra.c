/* libc functions sqlite-vec uses that sqlite-wasm-rs's libc shim does not provide. Without
 * them the module would import them from "env", which no JS host supplies. */
int abs(int x) { return x < 0 ? -x : x; }
