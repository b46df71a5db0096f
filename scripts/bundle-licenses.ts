import { promises as fsp } from 'node:fs';
import path from 'node:path';

// The bundles carry their npm dependencies' code, so they carry their licences too (MIT and its
// kind ask for the notice to go with every copy): one file, dist/bundle/LICENSES, in Debian's
// machine-readable copyright format. `make install` puts it beside the bundles; the .deb also as
// /usr/share/doc/tope-updater/copyright.

const FORMAT = 'https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/';
const LICENSE_FILE = /^(licen[cs]e|copying)(\.|-|$)/i;

/** The package folders (node_modules/<name>, node_modules/@scope/<name>, nested ones too) a bundle's inputs lie in. */
export function packageDirsOf(inputs: Iterable<string>): Set<string> {
  const dirs = new Set<string>();
  for (const input of inputs) {
    // greedy: the innermost node_modules is the package the file belongs to
    const match = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input.split(path.sep).join('/'));
    if (match) dirs.add(match[1]);
  }
  return dirs;
}

interface PackageJson {
  name: string;
  version: string;
  license?: string;
  licenses?: Array<{ type: string }>;
}

/** A field's continuation lines: each indented by one space, an empty line as " .". */
const indented = (text: string) =>
  text
    .trim()
    .split('\n')
    .map((line) => (line.trim() === '' ? ' .' : ` ${line.trimEnd()}`))
    .join('\n');

async function stanzaOf(dir: string, bundles: string[]): Promise<string> {
  const pkg = JSON.parse(await fsp.readFile(path.join(dir, 'package.json'), 'utf8')) as PackageJson;
  const license = pkg.license ?? pkg.licenses?.map((l) => l.type).join(' or ') ?? 'unknown';
  const file = (await fsp.readdir(dir)).filter((f) => LICENSE_FILE.test(f)).sort()[0];
  if (!file) throw new Error(`${pkg.name}@${pkg.version}: no licence file to ship with the bundles`);
  const text = await fsp.readFile(path.join(dir, file), 'utf8');
  const holder = /^\s*(?:\(The MIT License\)\s*)?Copyright\s*(?:\(c\)|©)?\s*(.+)$/im.exec(text)?.[1];
  return [
    `Files: ${dir.slice(dir.indexOf('node_modules/'))}/*`,
    `Copyright: ${holder?.trim() ?? `the authors of ${pkg.name}`}`,
    `License: ${license}`,
    indented(text),
    `Comment: ${pkg.name} ${pkg.version}, bundled into ${bundles.join(', ')}`,
  ].join('\n');
}

/**
 * The copyright file for the bundles: the project's own stanza, then one per bundled npm package
 * (its licence text in full), in a stable order.
 * @param used each bundle's name and the package folders its inputs lie in
 */
export async function licensesOf(used: Map<string, Set<string>>, project: { name: string }): Promise<string> {
  const bundlesOf = new Map<string, string[]>();
  for (const [bundle, dirs] of used)
    for (const dir of dirs) bundlesOf.set(dir, [...(bundlesOf.get(dir) ?? []), `dist/bundle/${bundle}.js`]);
  const dirs = [...bundlesOf.keys()].sort();
  const stanzas = await Promise.all(dirs.map((dir) => stanzaOf(dir, bundlesOf.get(dir)!.sort())));
  const header = [
    `Format: ${FORMAT}`,
    `Upstream-Name: ${project.name}`,
    'Comment: each service and tope-pack is one file built by esbuild (dist/bundle); the npm',
    ' packages below are built into them, each under its own licence.',
  ].join('\n');
  const own = [
    'Files: *',
    'Copyright: TOPE firmware team',
    'License: UNLICENSED',
    ' The project\'s own code (package.json: "license": "UNLICENSED").',
  ].join('\n');
  return `${[header, own, ...stanzas].join('\n\n')}\n`;
}
