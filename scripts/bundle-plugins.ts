import { promises as fsp } from 'node:fs';
import { createRequire, isBuiltin } from 'node:module';
import path from 'node:path';
import type { BuildOptions, Metafile, Plugin } from 'esbuild';

// What the bundles (scripts/bundle.ts) change in how their packages load Node's built-ins and
// each other: each plugin leaves out code a service never runs, whose loading alone costs resident
// memory: each of Node's modules loaded is its source and compiled code read from the node binary,
// and its functions in V8's heap. Measured on idle services (RSS, median of three), each left out
// in turn: util and crypto behind getters -0.9 MiB in the gateway, -0.5 in the workers; pino
// without transports -0.5 to -0.6; assert() alone -0.2 to -0.4; the three together -2.0
// (gateway), -0.7 (installer), -0.9 MiB (fetcher) (BENCHMARKS.md, the budget section).

// undici, pino and yauzl are CommonJS: in an ES module bundle their require() of Node's
// built-ins needs a real require
const BUNDLE_BANNER =
  "import { createRequire as topeCreateRequire } from 'node:module';\nconst require = topeCreateRequire(import.meta.url);";

// Node's built-in modules reached through require(), never through an ES import. An ES import of a
// built-in makes Node build the module's ES namespace, which reads every export, lazy getters
// included: `node:http`'s namespace loads Node's own undici, tls, http2, crypto and worker_threads
// to fill in http.WebSocket and the like, ~12 MiB of RSS that the gateway never uses (measured:
// a bundle importing node:http idles at 58 MiB, one requiring it at 46, bare node at 42).
//
// esbuild then hands the importer those exports through its __toESM, which reads each export's
// property descriptor, and on `node:util` that alone loads every lazy export (util.parseArgs,
// util.diff, util.MIMEType, the transferable abort signals: worker_threads, assert's diff, the
// colours; 15 of Node's modules; no other built-in the services import does this). And
// `node:crypto` loads its 18 modules as soon as anything requires it, which in the gateway is only
// tinyhttp's ETag and signed-cookie helpers, never called by the gateway's routes. Those two come
// as an object with one getter per export, which requires the built-in at the first read of one.
const LAZY_BUILTINS = new Set(['node:util', 'util', 'node:crypto', 'crypto']);
function facadeOf(builtin: string): string {
  const names = Object.getOwnPropertyNames(createRequire(import.meta.url)(builtin) as object);
  const getters = names.map((name) => `  get ${JSON.stringify(name)}() { return load()[${JSON.stringify(name)}]; },`);
  return [
    'let builtin;',
    `const load = () => (builtin ??= require(${JSON.stringify(builtin)}));`,
    `module.exports = {\n${getters.join('\n')}\n};`,
  ].join('\n');
}

const builtinsThroughRequire: Plugin = {
  name: 'builtins-through-require',
  setup(b) {
    b.onResolve({ filter: /^[a-z_:/0-9]+$/ }, (args) =>
      isBuiltin(args.path) && (args.kind === 'import-statement' || args.kind === 'dynamic-import')
        ? { path: args.path, namespace: 'builtin' }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'builtin' }, (args) => ({
      contents: LAZY_BUILTINS.has(args.path)
        ? facadeOf(args.path)
        : `module.exports = require(${JSON.stringify(args.path)});`,
      loader: 'js',
    }));
  },
};

// undici's HTTP/2 client (lib/dispatcher/client-h2.js) requires Node's http2 as it loads, which
// brings http2's session machinery: ~2 MiB of RSS in the fetcher, whose client offers only
// http/1.1 (services/fetcher/http-client.ts) and so never reaches it. It gets what undici itself
// falls back to on a Node built without http2 (client-h2.js reads `constants` as it loads), and a
// connect() that says why, should a connection ever be handed to it.
const undiciWithoutHttp2: Plugin = {
  name: 'undici-without-http2',
  setup(b) {
    const clientH2 = path.join('undici', 'lib', 'dispatcher', 'client-h2.js');
    b.onResolve({ filter: /^node:http2$/ }, (args) =>
      args.importer.endsWith(clientH2) ? { path: 'http2', namespace: 'undici-without-http2' } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'undici-without-http2' }, () => ({
      contents:
        "module.exports = { constants: {}, connect() { throw new Error('HTTP/2 is not built into this bundle'); } };",
      loader: 'js',
    }));
  },
};

// undici 8 carries a second HTTP/1.1 parser, Milo (lib/dispatcher/parser-h1.js, two WebAssembly
// builds of it as base64 text, ~200 KiB of the fetcher's bundle), used only where a client asks
// for it (`useMilo`, or setMiloEnabled()); Node's own copy of undici leaves it out (client-h1.js
// skips it when built by esbuild for Node). The fetcher's client never asks: client-h1.js gets a
// parser-h1.js that says Milo is off, and whose parser says why, should it ever be constructed.
// Idle fetcher RSS 62.9 -> 61.0 MiB (median of three).
const undiciWithoutMilo: Plugin = {
  name: 'undici-without-milo',
  setup(b) {
    const clientH1 = path.join('undici', 'lib', 'dispatcher', 'client-h1.js');
    b.onResolve({ filter: /^\.\/parser-h1\.js$/ }, (args) =>
      args.importer.endsWith(clientH1) ? { path: 'parser-h1', namespace: 'undici-without-milo' } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'undici-without-milo' }, () => ({
      contents: [
        'module.exports = {',
        '  getMiloEnabled: () => false,',
        "  H1Parser: class { constructor() { throw new Error('the Milo parser is not built into this bundle'); } },",
        '};',
      ].join('\n'),
      loader: 'js',
    }));
  },
};

// undici's ProxyAgent (services/fetcher/proxy.ts, loaded where a proxy is set) requires its SOCKS5
// agent and client as it loads, for socks:// proxy URLs, which the configuration refuses
// (shared/config.ts: http:// proxies only). proxy-agent.js gets a socks5-proxy-agent.js that says
// SOCKS is not built in: ~30 KB less source text in every fetcher's heap, proxy or not.
const undiciWithoutSocks: Plugin = {
  name: 'undici-without-socks',
  setup(b) {
    const proxyAgent = path.join('undici', 'lib', 'dispatcher', 'proxy-agent.js');
    b.onResolve({ filter: /^\.\/socks5-proxy-agent$/ }, (args) =>
      args.importer.endsWith(proxyAgent)
        ? { path: 'socks5-proxy-agent', namespace: 'undici-without-socks' }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'undici-without-socks' }, () => ({
      contents:
        "module.exports = class Socks5ProxyAgent { constructor() { throw new Error('SOCKS proxies are not built into this bundle'); } };",
      loader: 'js',
    }));
  },
};

// pino's transports run a destination on a worker thread (lib/transport.js with thread-stream);
// the services log synchronously to stdout (shared/log.ts) and never ask for one, yet pino loads
// the transport code and Node's worker_threads as it loads. The
// bundle gets, in place of lib/transport.js, a transport() that says it is not built in, and, for
// lib/tools.js, which reads `isMainThread` only to flush an asynchronous destination at exit,
// the answer a service always has: its logger runs on the main thread.
const pinoWithoutTransports: Plugin = {
  name: 'pino-without-transports',
  setup(b) {
    const pinoDir = `${path.sep}pino${path.sep}`;
    b.onResolve({ filter: /^(\.\/lib\/transport|\.\/transport|worker_threads)$/ }, (args) =>
      args.importer.includes(pinoDir) ? { path: args.path, namespace: 'pino-without-transports' } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'pino-without-transports' }, (args) => ({
      contents:
        args.path === 'worker_threads'
          ? 'module.exports = { isMainThread: true };'
          : "module.exports = function transport() { throw new Error('pino transports are not built into this bundle'); };",
      loader: 'js',
    }));
  },
};

// Node's assert module loads its AssertionError, a diff of two values and colour support as it
// loads; the packages bundled here only ever call `assert(value, message)`
// to guard their own invariants. They get that function alone; the build fails should a bundled
// file use any other part of assert (assertOnlyCalled below).
const plainAssert: Plugin = {
  name: 'plain-assert',
  setup(b) {
    b.onResolve({ filter: /^(node:)?assert$/ }, (args) =>
      args.importer.includes(`${path.sep}node_modules${path.sep}`)
        ? { path: 'assert', namespace: 'plain-assert' }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'plain-assert' }, () => ({
      contents: `class AssertionError extends Error {
  constructor(message) {
    super(message === undefined ? 'assertion failed' : String(message));
    this.name = 'AssertionError';
    this.code = 'ERR_ASSERTION';
  }
}
function assert(value, message) {
  if (value) return;
  throw message instanceof Error ? message : new AssertionError(message);
}
assert.ok = assert;
assert.AssertionError = AssertionError;
module.exports = assert;`,
      loader: 'js',
    }));
  },
};

/** Fails the build where a bundled file that requires assert uses more of it than `assert()`. */
export async function assertOnlyCalled(inputs: Metafile['inputs']): Promise<void> {
  for (const [input, { imports }] of Object.entries(inputs)) {
    if (!imports.some((i) => i.path === 'plain-assert:assert')) continue;
    const source = await fsp.readFile(path.resolve(input), 'utf8');
    const other =
      /\bassert\s*\.\s*(?!ok\b)[A-Za-z_$]+/.exec(source) ??
      /require\(\s*['"](node:)?assert['"]\s*\)\s*\./.exec(source) ??
      /\{[^}]*\}\s*=\s*require\(\s*['"](node:)?assert['"]\s*\)/.exec(source);
    if (other)
      throw new Error(`${input} uses ${other[0]}: the bundle's assert (scripts/bundle-plugins.ts) is assert() alone`);
  }
}

/** Every bundle's plugins, in the order esbuild asks them. */
const BUNDLE_PLUGINS: Plugin[] = [
  builtinsThroughRequire,
  undiciWithoutHttp2,
  undiciWithoutMilo,
  pinoWithoutTransports,
  plainAssert,
  undiciWithoutSocks,
];

/** How every bundle is built (scripts/bundle.ts adds its entry, output and source map). */
export const BUNDLE_OPTIONS = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node24',
  banner: { js: BUNDLE_BANNER },
  // Whitespace only: the source text is kept in V8's heap while the service runs, and without
  // the spaces and comments it takes 0.5-0.6 MiB less (idle gateway and installer, median of three).
  // Names stay, so a stack trace in the journal still names its functions; its lines and columns
  // map back to the TypeScript through the .map installed beside each bundle (node --enable-source-maps).
  minifyWhitespace: true,
  legalComments: 'none',
  plugins: BUNDLE_PLUGINS,
} satisfies BuildOptions;
