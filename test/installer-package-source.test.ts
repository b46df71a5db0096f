import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { deviceListing } from './helpers/tree-state.js';
import { CHANGES_A_SERVICE, InstallDevice } from './helpers/install-device.js';
import { buildPackage, changeStoredEntry } from './helpers/packages.js';
import type { Service } from './helpers/services.js';
import { waitFor } from './helpers/wait.js';

// The installer reads the package the fetcher verified in place, and the fetcher's record (which
// names it) is untrusted input: a record a compromised fetcher wrote must not make the installer
// read anything but a regular file directly in the fetcher's packages directory. And since the
// fetcher owns that file, it may change it during the install: every byte used is checked
// against the signed manifest, so a change fails the install with nothing changed.

const d = new InstallDevice();
const outside = path.join(d.root, 'outside');
let installer: Service;
let listing = '';

const modules = [{ name: 'a', dst: '/opt/tope/bin/a', process_name: 'a.service', data: 'a 2.0.0\n', compress: false }];

before(async () => {
  await d.seedVersion('v1.0.0', { 'bin/a': 'a 1.0.0\n' }, ['current']);
  await d.setUnits({ 'a.service': { active: true } });
  await fsp.mkdir(outside, { recursive: true });
  [installer] = await d.start('installer', 'api-gateway');
  listing = await deviceListing(d.sysroot);
});
after(() => d.stop());

/** A valid package of 2.0.0 verified for the fetcher, then its record pointed at `packageFile` (made by `place`). */
async function offer(place: (zip: Buffer, packageFile: string) => Promise<string>): Promise<void> {
  const zip = await buildPackage('2.0.0', modules);
  await d.verified(zip, '2.0.0');
  const record = (await d.fetcherStore.read())!;
  const packageFile = await place(zip, record.packageFile!);
  await d.seedFetcher({ ...record, packageFile });
}

const hostile: Array<[string, (zip: Buffer, packageFile: string) => Promise<string>, RegExp]> = [
  [
    'a symlink in the packages directory to /etc/shadow',
    async (_zip, file) => {
      await fsp.rm(file);
      await fsp.symlink('/etc/shadow', file);
      return file;
    },
    /^PACKAGE_NOT_FOUND: cannot read the verified package: .*tope-2\.0\.0\.zip is a symbolic link$/,
  ],
  [
    'a symlink in the packages directory to a valid package outside it',
    async (zip, file) => {
      await fsp.writeFile(path.join(outside, 'p.zip'), zip);
      await fsp.rm(file);
      await fsp.symlink(path.join(outside, 'p.zip'), file);
      return file;
    },
    /^PACKAGE_NOT_FOUND: cannot read the verified package: .*tope-2\.0\.0\.zip is a symbolic link$/,
  ],
  [
    'a path with .. out of the packages directory, to a valid package',
    async (zip) => {
      await fsp.writeFile(path.join(outside, 'p.zip'), zip);
      return `${d.packagesDir}/../../outside/p.zip`;
    },
    /^PACKAGE_NOT_FOUND: cannot read the verified package: ".*\/\.\.\/outside\/p\.zip" is not a file directly in the fetcher's packages directory /,
  ],
  [
    'an absolute path elsewhere, to a valid package',
    async (zip) => {
      await fsp.writeFile(path.join(outside, 'p.zip'), zip);
      return path.join(outside, 'p.zip');
    },
    /^PACKAGE_NOT_FOUND: cannot read the verified package: ".*\/outside\/p\.zip" is not a file directly in the fetcher's packages directory /,
  ],
  [
    'a relative path',
    async () => 'tope-2.0.0.zip',
    /^PACKAGE_NOT_FOUND: cannot read the verified package: "tope-2\.0\.0\.zip" is not a file directly in /,
  ],
  [
    'a FIFO (an open for reading would block forever without O_NONBLOCK)',
    async (_zip, file) => {
      await fsp.rm(file);
      execFileSync('mkfifo', [file]);
      return file;
    },
    /^PACKAGE_NOT_FOUND: cannot read the verified package: .*tope-2\.0\.0\.zip is not a regular file$/,
  ],
  [
    'a directory',
    async (_zip, file) => {
      await fsp.rm(file);
      await fsp.mkdir(file);
      return file;
    },
    /^PACKAGE_NOT_FOUND: cannot read the verified package: .*tope-2\.0\.0\.zip is not a regular file$/,
  ],
  [
    'a hard link to a valid package outside the packages directory',
    async (zip, file) => {
      await fsp.writeFile(path.join(outside, 'p.zip'), zip);
      await fsp.rm(file);
      await fsp.link(path.join(outside, 'p.zip'), file);
      return file;
    },
    /^PACKAGE_NOT_FOUND: cannot read the verified package: .*tope-2\.0\.0\.zip has 2 names/,
  ],
  [
    'the packages directory replaced by a symlink to a directory holding a valid package',
    async (zip, file) => {
      await fsp.writeFile(path.join(outside, path.basename(file)), zip);
      await fsp.rm(d.packagesDir, { recursive: true });
      await fsp.symlink(outside, d.packagesDir);
      return file;
    },
    /^PACKAGE_NOT_FOUND: cannot read the verified package: the packages directory .* is a symbolic link or not a directory$/,
  ],
];

for (const [name, place, error] of hostile) {
  test(`[systemctl stand-in] a fetcher record naming ${name}: refused, nothing changed`, async () => {
    await fsp.rm(d.packagesDir, { recursive: true, force: true });
    await fsp.rm(outside, { recursive: true, force: true });
    await fsp.mkdir(outside);
    await offer(place);
    await d.assertInstallRefused('2.0.0', error, listing, CHANGES_A_SERVICE);
  });
}

/** The installer's process state letter in /proc ("T": stopped). */
const stateOf = (s: Service) => {
  const stat = readFileSync(`/proc/${s.child.pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2)[0];
};

/** An install paused (SIGSTOP) at a failpoint while `change` runs on the package under it, then continued. */
async function installChangedUnderway(failpoint: string, change: (file: string, zip: Buffer) => Promise<void>) {
  await d.stop();
  await fsp.rm(d.packagesDir, { recursive: true, force: true });
  const zip = await buildPackage('2.0.0', modules);
  await d.verified(zip, '2.0.0');
  const file = (await d.fetcherStore.read())!.packageFile!;
  d.env.TOPE_FAILPOINT_STOP = failpoint;
  try {
    [installer] = await d.start('installer', 'api-gateway');
  } finally {
    delete d.env.TOPE_FAILPOINT_STOP;
  }
  assert.equal((await d.update('2.0.0')).body.code, 200);
  await waitFor(`the installer stopped at ${failpoint}`, () => stateOf(installer) === 'T', 20_000);
  await change(file, zip);
  installer.child.kill('SIGCONT');
  return d.finished();
}

test('[systemctl stand-in] a module changed in the package after its manifest was checked (same CRC-32): PAYLOAD_MISMATCH, nothing changed', async () => {
  const end = await installChangedUnderway('installer.package-trusted', (file, zip) =>
    changeStoredEntry(file, zip, 'modules/a/file'),
  );
  assert.equal(end.stage, 'failed');
  assert.match(
    end.error!,
    /^PAYLOAD_MISMATCH: module a: modules\/a\/file has SHA-256 [a-f0-9]{64}, the signed manifest/,
  );
  assert.equal(await deviceListing(d.sysroot), listing, 'the device is exactly as it was');
});

test('[systemctl stand-in] the package removed and replaced by another file after it was opened: the install reads the file it opened', async () => {
  const end = await installChangedUnderway('installer.package-opened', async (file) => {
    await fsp.rm(file); // as the fetcher does when a new download starts
    await fsp.writeFile(file, 'not the package');
  });
  assert.equal(end.stage, 'success', end.error ?? '');
  assert.equal(await d.link('current'), 'v2.0.0');
  assert.equal(await fsp.readFile(path.join(d.versionsDir, 'v2.0.0/bin/a'), 'utf8'), 'a 2.0.0\n');
});
