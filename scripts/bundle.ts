import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isBuiltin } from 'node:module';
import { build, type Plugin } from 'esbuild';
import { licensesOf, packageDirsOf } from './bundle-licenses.js';
import { keepSources, type SourceMap } from './bundle-map.js';

// `make build`, after tsc: each service built into one file, dist/bundle/<service>.js, which is
// what the units, `make run` and the tests start. One file instead of ~300 modules: Node resolves,
// reads and compiles one, which is most of a cold start, and keeps no per-module records.
// Built from tsc's output (dist/services/*/main.js), whose source maps esbuild follows, so the
// bundle's map points at the TypeScript sources (for a stack trace read offline, and for c8).

/** The services, by their folder under services/ (the name mainOf() and the units use). */
export const SERVICES = ['api-gateway', 'fetcher', 'installer'] as const;

/**
 * The tools installed beside them (dist/bundle/tools/<tool>.js), by their entry in tsc's output:
 * with them bundled too, an installed tree (make install-files, the .deb) holds no node_modules and
 * needs no npm. A folder of their own keeps them out of make test's coverage of the services.
 */
export const TOOLS = { 'tope-pack': 'scripts/tope-pack/main.js' } as const;

const dist = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// undici, pino and yauzl are CommonJS: in an ES module bundle their require() of Node's
// built-ins needs a real require
const banner =
  "import { createRequire as topeCreateRequire } from 'node:module';\nconst require = topeCreateRequire(import.meta.url);";

// Node's built-in modules reached through require(), never through an ES import. An ES import of a
// built-in makes Node build the module's ES namespace, which reads every export, lazy getters
// included: `node:http`'s namespace loads Node's own undici, tls, http2, crypto and worker_threads
// to fill in http.WebSocket and the like, ~12 MiB of RSS that the gateway never uses (measured:
// a bundle importing node:http idles at 58 MiB, one requiring it at 46, bare node at 42).
const builtinsThroughRequire: Plugin = {
  name: 'builtins-through-require',
  setup(b) {
    b.onResolve({ filter: /^[a-z_:/0-9]+$/ }, (args) =>
      isBuiltin(args.path) && (args.kind === 'import-statement' || args.kind === 'dynamic-import')
        ? { path: args.path, namespace: 'builtin' }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'builtin' }, (args) => ({
      contents: `module.exports = require(${JSON.stringify(args.path)});`,
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

/** Builds one bundle; returns the npm package folders built into it. */
async function bundle(outName: string, entry: string): Promise<[string, Set<string>]> {
  const outfile = path.join(dist, 'bundle', `${outName}.js`);
  const { metafile } = await build({
    entryPoints: [path.join(dist, entry)],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    banner: { js: banner },
    // not minified: a stack trace from the journal stays readable without the map
    sourcemap: 'linked',
    sourcesContent: false,
    legalComments: 'none',
    logLevel: 'warning',
    metafile: true,
    plugins: [builtinsThroughRequire, undiciWithoutHttp2],
  });
  const map = JSON.parse(await fsp.readFile(`${outfile}.map`, 'utf8')) as SourceMap;
  const ours = keepSources(map, (source) => source.split('/').includes('node_modules'));
  await fsp.writeFile(`${outfile}.map`, JSON.stringify(ours));
  // the metafile's inputs are relative to esbuild's working directory
  return [outName, packageDirsOf(Object.keys(metafile.inputs).map((input) => path.resolve(input)))];
}

await fsp.rm(path.join(dist, 'bundle'), { recursive: true, force: true });
const used = await Promise.all([
  ...SERVICES.map((service) => bundle(service, path.join('services', service, 'main.js'))),
  ...Object.entries(TOOLS).map(([tool, entry]) => bundle(path.join('tools', tool), entry)),
]);
const project = JSON.parse(await fsp.readFile(path.join(dist, '..', 'package.json'), 'utf8')) as { name: string };
await fsp.writeFile(path.join(dist, 'bundle', 'LICENSES'), await licensesOf(new Map(used), project));
