import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { PARTIAL_SUFFIX } from '../shared/package-archive.js';
import { deviceListing } from './helpers/tree-state.js';
import { CHANGES_A_SERVICE, InstallDevice } from './helpers/install-device.js';
import {
  buildPackage,
  buildZip,
  hashesOf,
  patchField,
  patchName,
  signedZip,
  TEST_PRODUCT_ID,
} from './helpers/packages.js';

// Each hostile package is refused with its code, and the device is exactly as it was: same
// links, same snapshots, no unit touched, nothing written outside.

const d = new InstallDevice({ TOPE_ZIP_MAX_BYTES: String(1024 * 1024), TOPE_ZIP_MAX_ENTRIES: '50' });
const ok = { name: 'a', dst: '/opt/tope/bin/a', process_name: 'a.service' };
let listing = '';

before(async () => {
  await d.seedVersion('v1.0.0', { 'bin/a': 'a 1.0.0\n' }, ['current']);
  await d.setUnits({ 'a.service': { active: true } });
  await d.start('installer', 'api-gateway');
  listing = await deviceListing(d.sysroot);
});
after(() => d.stop());

// Hostile zips are signed by the trusted key over a manifest that names their first file with its
// size and hash: what is wrong with them is the zip itself, and the device must find it.
const trustFields = { compatible: [TEST_PRODUCT_ID], security_version: 0 };
const zipOf = (files: Parameters<typeof buildZip>[0], manifest?: object) =>
  signedZip(
    manifest ?? {
      version: '2.0.0',
      ...trustFields,
      modules: [{ name: 'a', src: files[0].name, dst: '/opt/tope/bin/a', ...hashesOf(files[0].data ?? '') }],
    },
    files,
  );

const cases: Array<[string, () => Promise<Buffer>, RegExp]> = [
  [
    'not a zip at all',
    async () => Buffer.from('PK but not really a zip file'),
    /^INVALID_PACKAGE: not a readable zip file/,
  ],
  [
    'a ../ entry name',
    async () => patchName(await zipOf([{ name: 'xx/evil', data: 'x' }]), 'xx/evil', '../evil'),
    /^INVALID_PACKAGE: /,
  ],
  [
    'an absolute entry name',
    async () => patchName(await zipOf([{ name: 'xetc/passwd', data: 'x' }]), 'xetc/passwd', '/etc/passwd'),
    /^INVALID_PACKAGE: /,
  ],
  [
    'a backslash entry name',
    async () => patchName(await zipOf([{ name: 'a/b', data: 'x' }]), 'a/b', 'a\\b'),
    /^INVALID_PACKAGE: /,
  ],
  [
    'a symlink entry',
    async () => zipOf([{ name: 'bin/a', data: '/etc/shadow', mode: 0o120777 }]),
    /^INVALID_PACKAGE: entry bin\/a is not a regular file or directory \(mode 120777\)$/,
  ],
  [
    'a device entry',
    async () => zipOf([{ name: 'bin/a', data: '', mode: 0o020644 }]),
    /^INVALID_PACKAGE: entry bin\/a is not a regular file/,
  ],
  [
    'duplicate entries',
    async () =>
      patchName(
        await zipOf([
          { name: 'bin/a', data: '1' },
          { name: 'bin/b', data: '2' },
        ]),
        'bin/b',
        'bin/a',
      ),
    /^INVALID_PACKAGE: duplicate entry bin\/a$/,
  ],
  [
    'a zip bomb over the size budget',
    async () => zipOf([{ name: 'bin/a', data: Buffer.alloc(2 * 1024 * 1024) }]),
    /^INVALID_PACKAGE: unpacks to more than 1048576 bytes$/,
  ],
  [
    'too many entries',
    async () => zipOf(Array.from({ length: 60 }, (_, i) => ({ name: `f/${i}`, data: 'x' }))),
    /^INVALID_PACKAGE: more than 50 entries$/,
  ],
  // the signed manifest's size no longer matches the central directory's: refused before a byte is read
  [
    'a lying uncompressed size',
    async () => patchField(await zipOf([{ name: 'bin/a', data: 'x'.repeat(5000) }]), 'bin/a', 'uncompressed', 10),
    /^PAYLOAD_MISMATCH: module a: bin\/a is 10 bytes, the signed manifest says 5000$/,
  ],
  [
    'corrupt deflate data (zlib fails, not the disk)',
    async () => {
      const z = await zipOf([{ name: 'bin/a', data: 'x'.repeat(3000) }]);
      const header = z.indexOf('bin/a') - 30;
      const data = header + 30 + z.readUInt16LE(header + 26) + z.readUInt16LE(header + 28);
      return z.fill(0xff, data, data + 4);
    },
    /^INVALID_PACKAGE: entry bin\/a: /,
  ],
  [
    'a CRC error',
    async () => patchField(await zipOf([{ name: 'bin/a', data: 'payload', compress: false }]), 'bin/a', 'crc', 12345),
    /^INVALID_PACKAGE: CRC mismatch in bin\/a$/,
  ],
  [
    'no manifest',
    async () => buildZip([{ name: 'bin/a', data: 'x' }]),
    /^INVALID_MANIFEST: manifest\.json not found in package$/,
  ],
  [
    'a manifest that is not JSON',
    async () => signedZip('{"version":', []),
    /^INVALID_MANIFEST: manifest\.json is not valid JSON/,
  ],
  [
    'a manifest of the wrong shape',
    async () => zipOf([{ name: 'bin/a', data: 'x' }], { version: '2.0.0', ...trustFields, modules: [] }),
    /^INVALID_MANIFEST: modules: /,
  ],
  [
    'a bad manifest version',
    async () =>
      zipOf([{ name: 'bin/a', data: 'x' }], {
        version: '2.0',
        ...trustFields,
        modules: [{ name: 'a', src: 'bin/a', dst: '/opt/tope/bin/a', ...hashesOf('x') }],
      }),
    /^INVALID_MANIFEST: version: must look like 1\.2\.3$/,
  ],
  [
    'a manifest for another version',
    async () => buildPackage('9.9.9', [ok]),
    /^INVALID_MANIFEST: package claims version 9\.9\.9, expected 2\.0\.0$/,
  ],
  [
    'a src that is not in the package',
    async () => buildPackage('2.0.0', [{ ...ok, src: 'missing/file' }]),
    /^INVALID_MANIFEST: module a: src missing\/file is not a regular file in the package$/,
  ],
  [
    'a src naming a directory',
    async () => buildPackage('2.0.0', [{ ...ok, src: 'dir/' }], [{ name: 'dir/', dir: true }]),
    /^INVALID_MANIFEST: module a: src dir\/ is not a regular file/,
  ],
  [
    'a dst outside the allowed roots',
    async () => buildPackage('2.0.0', [{ ...ok, dst: '/etc/cron.d/evil' }]),
    /^INVALID_MANIFEST: module a: dst \/etc\/cron\.d\/evil is outside the allowed roots \/opt\/tope$/,
  ],
  [
    'a dst that climbs out with ..',
    async () => buildPackage('2.0.0', [{ ...ok, dst: '/opt/tope/../../etc/passwd' }]),
    /^INVALID_MANIFEST: module a: dst .* is not a normalised absolute file path$/,
  ],
  [
    'a dst that looks like the root but is not',
    async () => buildPackage('2.0.0', [{ ...ok, dst: '/opt/tope-data/x' }]),
    /^INVALID_MANIFEST: .*outside the allowed roots/,
  ],
  [
    'a dst inside the versions tree',
    async () => buildPackage('2.0.0', [{ ...ok, dst: '/opt/tope/versions/current/bin/a' }]),
    /^INVALID_MANIFEST: .*inside the versions directory$/,
  ],
  [
    'a relative dst',
    async () => buildPackage('2.0.0', [{ ...ok, dst: 'opt/tope/bin/a' }]),
    /^INVALID_MANIFEST: module a: dst opt\/tope\/bin\/a is not a normalised/,
  ],
  [
    'two modules writing one dst',
    async () => buildPackage('2.0.0', [ok, { name: 'b', dst: '/opt/tope/bin/a' }]),
    /^INVALID_MANIFEST: module b: dst \/opt\/tope\/bin\/a is written by two modules$/,
  ],
  [
    "a dst below another module's file (the file where a directory must be)",
    async () => buildPackage('2.0.0', [ok, { name: 'b', dst: '/opt/tope/bin/a/b' }]),
    /^INVALID_MANIFEST: module b: dst \/opt\/tope\/bin\/a\/b is below \/opt\/tope\/bin\/a, a file module a writes$/,
  ],
  [
    "a dst named as the installer's temp name for another file (x.tope-partial)",
    async () => buildPackage('2.0.0', [ok, { name: 'b', dst: `/opt/tope/bin/a${PARTIAL_SUFFIX}` }]),
    /^INVALID_MANIFEST: module b: dst \/opt\/tope\/bin\/a\.tope-partial ends in \.tope-partial, the name a file is written under before its rename$/,
  ],
  [
    'a unit that does not exist (systemctl cat finds no such unit)',
    async () => buildPackage('2.0.0', [ok, { name: 'b', dst: '/opt/tope/bin/b', process_name: 'ghost.service' }]),
    /^INVALID_MANIFEST: module b: unit ghost\.service not found$/,
  ],
  [
    'a unit name that is not one',
    async () => buildPackage('2.0.0', [{ ...ok, process_name: 'a.service; rm -rf /' }]),
    /^INVALID_MANIFEST: modules\.0\.process_name: must be a systemd unit name$/,
  ],
];

for (const [name, make, error] of cases) {
  test(`[systemctl stand-in] refused: ${name}`, async () => {
    await d.verified(await make(), '2.0.0');
    await d.assertInstallRefused('2.0.0', error, listing, CHANGES_A_SERVICE);
  });
}

test('[systemctl stand-in] setuid, setgid and group/other write bits from the zip are dropped', async () => {
  await d.verified(await buildPackage('2.0.0', [{ ...ok, mode: 0o106777 }]), '2.0.0');
  await d.update('2.0.0');
  assert.equal((await d.finished()).stage, 'success');
  assert.equal((await fsp.stat(path.join(d.versionsDir, 'v2.0.0/bin/a'))).mode & 0o7777, 0o755);
});
