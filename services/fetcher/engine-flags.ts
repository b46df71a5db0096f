import v8 from 'node:v8';

/**
 * The fetcher's V8 settings, set as it starts, before any of its code is hot. Node refuses these
 * flags in NODE_OPTIONS (the unit's way for the other services' `--jitless`), and set here they
 * hold wherever the fetcher runs: under systemd, `make run`, the tests and the bench alike.
 */
export function tuneEngine(): void {
  // undici parses HTTP with llhttp compiled to WebAssembly, and V8 recompiles a hot wasm function
  // with TurboFan in the background: llhttp's parser is one very large function, and compiling it
  // took ~23 MiB of V8's compiler memory at once, a few hundred milliseconds into each download:
  // the fetcher's peak RSS. Liftoff's code (V8's baseline wasm compiler) is fast enough for a
  // parser that hands over each read's body as one span: a 256 MiB loopback download through
  // undici alone took 0.24 s of CPU without the recompilation, 0.29 s with it. V8 reads them when
  // it compiles a module, at the first connection.
  v8.setFlagsFromString('--no-wasm-dynamic-tiering');
  v8.setFlagsFromString('--no-wasm-tier-up');
  // No TurboFan (`--no-opt` is V8's alias of `--no-turbofan`; Maglev, the mid-tier compiler,
  // stays): a download's work is hashing (OpenSSL) and parsing (the wasm above); the JavaScript
  // around them runs once per read, and Maglev's code does it at the same CPU. TurboFan's own code
  // and memory are what it cost: over a 1 GiB loopback download, peak RSS 73.0–73.4 → 69.3–70.1
  // MiB, CPU per GiB 3.36–3.55 → 3.29–3.54 s, in three alternating pairs (BENCHMARKS.md).
  // `--jitless` would go further, but it turns WebAssembly off, which undici's parser needs. A flag
  // set here also makes Node compile the built-ins it loads afterwards without their code cache
  // (its hash covers the flags): no RSS measurable, ~0.2 ms more to load crypto.
  v8.setFlagsFromString('--no-opt');
}
