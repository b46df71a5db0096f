import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { assertOnlyCalled, BUNDLE_OPTIONS } from './bundle-plugins.js';
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

/** Builds one bundle; returns the npm package folders built into it. */
async function bundle(outName: string, entry: string): Promise<[string, Set<string>]> {
  const outfile = path.join(dist, 'bundle', `${outName}.js`);
  const { metafile } = await build({
    ...BUNDLE_OPTIONS,
    entryPoints: [path.join(dist, entry)],
    outfile,
    sourcemap: 'linked',
    sourcesContent: false,
    logLevel: 'warning',
    metafile: true,
  });
  await assertOnlyCalled(metafile.inputs);
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
