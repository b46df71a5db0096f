import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { after, before, test } from 'node:test';
import { manifestBytesOf, newKeyPair, writeSignedZip } from '../scripts/tope-pack/pack.js';
import { loadConfig } from '../shared/config.js';
import { MANIFEST_MAX_BYTES } from '../shared/package-archive.js';
import { UNSIGNED_ALLOWED_WARNING } from '../shared/trust/package-trust.js';
import { SECURITY_FLOOR_RECORD, SecurityFloor } from '../shared/trust/security-floor.js';
import { signManifest } from '../shared/trust/signature.js';
import { previousGeneration } from '../shared/state-names.js';
import { deviceListing } from './helpers/tree-state.js';
import { call } from './helpers/api.js';
import { DeviceApi } from './helpers/device-api.js';
import { InstallDevice } from './helpers/install-device.js';
import { Origin } from './helpers/origin.js';
import {
  buildPackage,
  hashesOf,
  md5,
  patchField,
  TEST_KEY_FILE,
  TEST_PRODUCT_ID,
  testKey,
  type ModuleSpec,
  type PackageOptions,
} from './helpers/packages.js';
import { waitFor } from './helpers/wait.js';

// The trust chain over real processes: every package this device must not install is refused
// by the fetcher right after its download (failed at verifying, the file removed) and again by
// the installer on its own copy (a package placed behind the fetcher's back), each with its
// code on /progress and in device-api's reports, and the device's tree byte for byte as before.

const keysDirOf = (d: InstallDevice) => path.join(d.sysroot, loadConfig({}).TOPE_TRUSTED_KEYS_DIR);
const a: ModuleSpec = { name: 'a', dst: '/opt/tope/bin/a', process_name: 'a.service' };
const otherKey = newKeyPair();
const deviceApi = new DeviceApi();
const origin = new Origin(1);
/** Downloads and installs: fetcher, installer and gateway. */
const full = new InstallDevice();
/** Installs only: packages are placed as if the fetcher had verified them. */
const bare = new InstallDevice();

before(async () => {
  await deviceApi.start();
  await origin.start();
  for (const d of [full, bare]) {
    d.env.TOPE_DEVICE_API_URL = deviceApi.url;
    await d.seedVersion('v1.0.0', { 'bin/a': 'a 1.0.0\n' }, ['current']);
    await d.setUnits({ 'a.service': { active: true } });
  }
  await full.start('fetcher', 'installer', 'api-gateway');
  await bare.start('installer', 'api-gateway');
});
after(async () => {
  await full.stop();
  await bare.stop();
  await origin.stop();
  await deviceApi.stop();
});

const jobOf = (zip: Buffer, version: string) => ({
  version,
  package_url: origin.url(`/tope-${version}.zip`),
  package_name: `tope-${version}.zip`,
  package_size: zip.length,
  package_md5: md5(zip),
});

/** Serves `zip` and asks `full` to download it; resolves with the stage it ends in. */
async function download(zip: Buffer, version: string) {
  origin.body = zip;
  assert.equal((await call(full.base, 'POST', '/api/v1.0/download', jobOf(zip, version))).body.code, 200);
  return waitFor(
    'the download to end',
    async () => {
      const p = (await full.progress()).body;
      return ['toInstall', 'failed'].includes(p.data.stage) ? p : null;
    },
    20_000,
  );
}

async function install(d: InstallDevice, version: string) {
  assert.equal((await d.update(version)).body.code, 200);
  return d.finished();
}

/** The refusal seen from every side: /progress, device-api's last report, the tree. */
async function assertRefused(d: InstallDevice, before: string, error: RegExp, reportsBefore: number) {
  const p = (await d.progress()).body;
  assert.equal(p.data.stage, 'failed');
  assert.match(p.data.error, error);
  assert.equal(p.code, 500);
  assert.equal(p.msg, `Update failed: ${p.data.error}`);
  const report = await waitFor('the failure report', () =>
    deviceApi.reports.slice(reportsBefore).find((r) => r.stage === 'failed'),
  );
  assert.match(report.error!, error);
  assert.equal(await deviceListing(d.sysroot), before, 'the device tree is byte for byte as it was');
}

/** Refused by the fetcher at verifying (the file removed), then by the installer on its own. */
async function assertRefusedEverywhere(zip: Buffer, error: RegExp, version = '2.0.0') {
  let before = await deviceListing(full.sysroot);
  let reports = deviceApi.reports.length;
  await download(zip, version);
  await assertRefused(full, before, error, reports);
  assert.ok(
    deviceApi.reports.slice(reports).some((r) => r.stage === 'verifying'),
    'refused at verifying',
  );
  assert.deepEqual(await fsp.readdir(full.packagesDir), [], 'the refused package is removed');

  before = await deviceListing(bare.sysroot);
  reports = deviceApi.reports.length;
  await bare.verified(zip, version);
  await install(bare, version);
  await assertRefused(bare, before, error, reports);
  assert.deepEqual(
    (await bare.calls()).filter((c) => /^(stop|start|restart) a\.service/.test(c)),
    [],
    'no unit touched',
  );
}

/** A valid package's manifest bytes, its payload entry and the signature text over `signed` (its own bytes by default). */
function parts(version = '2.0.0') {
  const data = Buffer.from(`a ${version}\n`);
  const manifest = {
    version,
    compatible: [TEST_PRODUCT_ID],
    security_version: 0,
    modules: [
      { name: 'a', src: 'modules/a/file', dst: '/opt/tope/bin/a', ...hashesOf(data), process_name: 'a.service' },
    ],
  };
  return { manifest, bytes: manifestBytesOf(manifest), entries: [{ name: 'modules/a/file', data, mode: 0o100755 }] };
}
const withSignature = async (text: string | null, bytes?: Buffer) => {
  const p = parts();
  return (await writeSignedZip(bytes ?? p.bytes, text === null ? null : { text }, p.entries))!;
};
const signedBy = (bytes: Buffer) => signManifest(bytes, testKey.privateKeyPem);

const signatureCases: Array<[string, () => Promise<Buffer>, RegExp]> = [
  [
    'signed by a key the device does not trust',
    () => buildPackage('2.0.0', [a], [], { privateKeyPem: otherKey.privateKeyPem }),
    /^SIGNATURE_INVALID: the signature of manifest\.json verifies under none of the 1 trusted keys in .*keys\.d \(tope-test\.pub\)$/,
  ],
  [
    'a trusted signature over other bytes',
    () => withSignature(signedBy(Buffer.from('{"version":"2.0.0"}'))),
    /^SIGNATURE_INVALID: /,
  ],
  [
    'the manifest edited after signing: one byte',
    async () => {
      const { bytes } = parts();
      const edited = Buffer.from(bytes.toString().replace('"security_version": 0', '"security_version": 9'));
      assert.notDeepEqual(edited, bytes);
      return withSignature(signedBy(bytes), edited);
    },
    /^SIGNATURE_INVALID: /,
  ],
  [
    'the manifest edited after signing: whitespace only',
    async () => {
      const { bytes } = parts();
      return withSignature(signedBy(bytes), Buffer.concat([bytes, Buffer.from(' ')]));
    },
    /^SIGNATURE_INVALID: /,
  ],
  [
    'the manifest edited after signing: the same JSON with its keys in another order',
    async () => {
      const { manifest, bytes } = parts();
      const reordered = Buffer.from(
        JSON.stringify(
          { modules: manifest.modules, security_version: 0, compatible: manifest.compatible, version: '2.0.0' },
          null,
          2,
        ) + '\n',
      );
      assert.deepEqual(JSON.parse(reordered.toString()), JSON.parse(bytes.toString()));
      return withSignature(signedBy(bytes), reordered);
    },
    /^SIGNATURE_INVALID: /,
  ],
  [
    'manifest.sig missing',
    () => withSignature(null),
    /^SIGNATURE_MISSING: manifest\.sig not found in package: unsigned packages are refused$/,
  ],
  ['manifest.sig empty', () => withSignature(''), /^SIGNATURE_MISSING: manifest\.sig is empty$/],
  [
    'manifest.sig huge',
    () => withSignature('A'.repeat(200_000)),
    /^SIGNATURE_MALFORMED: manifest\.sig is 200000 bytes; a signature is 88 characters of base64$/,
  ],
  [
    'manifest.sig not base64',
    () => withSignature(`${'*'.repeat(86)}==\n`),
    /^SIGNATURE_MALFORMED: manifest\.sig is not the base64 of a 64-byte Ed25519 signature$/,
  ],
  [
    'manifest.sig the base64 of something shorter than a signature',
    () => withSignature(Buffer.alloc(32, 7).toString('base64')),
    /^SIGNATURE_MALFORMED: /,
  ],
  [
    'a manifest that is not JSON, signed by a key the device does not trust (the signature is checked before the manifest is parsed)',
    async () => (await writeSignedZip(Buffer.from('{"version":'), { privateKeyPem: otherKey.privateKeyPem }, []))!,
    /^SIGNATURE_INVALID: the signature of manifest\.json verifies under none of the 1 trusted keys/,
  ],
  [
    'manifest.json over 1 MiB (read into memory to be verified: bounded before it is read)',
    async () => {
      const { bytes } = parts();
      const huge = Buffer.concat([bytes, Buffer.alloc(MANIFEST_MAX_BYTES, ' ')]);
      return withSignature(signedBy(huge), huge);
    },
    /^INVALID_MANIFEST: manifest\.json larger than 1048576 bytes$/,
  ],
  [
    'an entry that no module names',
    () => buildPackage('2.0.0', [a], [{ name: 'bin/extra.sh', data: '#!/bin/sh\nid\n' }]),
    /^INVALID_PACKAGE: entry bin\/extra\.sh is named by no module of the signed manifest$/,
  ],
  [
    'for another product',
    () => buildPackage('2.0.0', [a], [], { compatible: ['tope-x9', 'tope-x10'] }),
    /^INCOMPATIBLE_PACKAGE: the package is for tope-x9, tope-x10; this device is tope-test$/,
  ],
];

for (const [name, make, error] of signatureCases) {
  test(`[systemctl stand-in] refused by the fetcher and by the installer: ${name}`, async () => {
    await assertRefusedEverywhere(await make(), error);
  });
}

/**
 * A change to both devices' trust files (keys directory, product id) for one case, undone after
 * it: `change` gets each device's sysroot and returns what to run to put it back.
 */
async function withDeviceFiles(change: (sysroot: string) => Promise<() => Promise<void>>, run: () => Promise<void>) {
  const undo = [await change(full.sysroot), await change(bare.sysroot)];
  try {
    await run();
  } finally {
    for (const u of undo) await u();
  }
}

const trustFileCases: Array<[string, (sysroot: string) => Promise<() => Promise<void>>, RegExp]> = [
  [
    'the only key file writable by group',
    async (sysroot) => {
      const file = path.join(sysroot, loadConfig({}).TOPE_TRUSTED_KEYS_DIR, TEST_KEY_FILE);
      await fsp.chmod(file, 0o664);
      return () => fsp.chmod(file, 0o644);
    },
    /^SIGNATURE_INVALID: no trusted Ed25519 key in \S*keys\.d; not trusted: tope-test\.pub: the file is writable by group or others \(mode 664\)$/,
  ],
  [
    'the only key file owned by another user',
    async (sysroot) => {
      const file = path.join(sysroot, loadConfig({}).TOPE_TRUSTED_KEYS_DIR, TEST_KEY_FILE);
      await fsp.chown(file, 65534, 65534);
      return () => fsp.chown(file, process.getuid!(), process.getgid!());
    },
    /^SIGNATURE_INVALID: no trusted Ed25519 key in \S*; not trusted: tope-test\.pub: the file is owned by uid 65534, not root$/,
  ],
  [
    'the only key file a symbolic link to the key elsewhere, writable by group there',
    async (sysroot) => {
      const file = path.join(sysroot, loadConfig({}).TOPE_TRUSTED_KEYS_DIR, TEST_KEY_FILE);
      const elsewhere = path.join(path.dirname(sysroot), 'elsewhere.pub');
      await fsp.rename(file, elsewhere);
      await fsp.chmod(elsewhere, 0o664);
      await fsp.symlink(elsewhere, file);
      return async () => {
        await fsp.rm(file);
        await fsp.chmod(elsewhere, 0o644);
        await fsp.rename(elsewhere, file);
      };
    },
    /^SIGNATURE_INVALID: no trusted Ed25519 key in \S*; not trusted: tope-test\.pub: the file is writable by group or others \(mode 664\)$/,
  ],
  [
    'the keys directory writable by others',
    async (sysroot) => {
      const dir = path.join(sysroot, loadConfig({}).TOPE_TRUSTED_KEYS_DIR);
      await fsp.chmod(dir, 0o777);
      return () => fsp.chmod(dir, 0o755);
    },
    /^SIGNATURE_INVALID: no key in (\S*keys\.d) is trusted: \1 is writable by group or others \(mode 777\)$/,
  ],
  [
    'the keys directory owned by another user',
    async (sysroot) => {
      const dir = path.join(sysroot, loadConfig({}).TOPE_TRUSTED_KEYS_DIR);
      await fsp.chown(dir, 65534, 65534);
      return () => fsp.chown(dir, process.getuid!(), process.getgid!());
    },
    /^SIGNATURE_INVALID: no key in \S* is trusted: \S*keys\.d is owned by uid 65534, not root$/,
  ],
  [
    'no product id file',
    async (sysroot) => {
      const file = path.join(sysroot, loadConfig({}).TOPE_PRODUCT_ID_FILE);
      await fsp.rename(file, `${file}.away`);
      return () => fsp.rename(`${file}.away`, file);
    },
    /^INCOMPATIBLE_PACKAGE: the device's product id cannot be read from \S*product-id: ENOENT/,
  ],
  [
    'a product id file that holds no product id',
    async (sysroot) => {
      const file = path.join(sysroot, loadConfig({}).TOPE_PRODUCT_ID_FILE);
      await fsp.writeFile(file, 'tope x1\n');
      return () => fsp.writeFile(file, `${TEST_PRODUCT_ID}\n`);
    },
    /^INCOMPATIBLE_PACKAGE: the device's product id in \S*product-id is not one: "tope x1"$/,
  ],
];

for (const [name, change, error] of trustFileCases) {
  test(`[systemctl stand-in] a correctly signed package refused by the fetcher and by the installer: ${name}`, async () => {
    const zip = await buildPackage('2.0.0', [a]);
    await withDeviceFiles(change, () => assertRefusedEverywhere(zip, error));
  });
}

test("[systemctl stand-in] a security floor that cannot be read refuses every package (the fetcher reads the installer's)", async () => {
  const floorFiles = [full, bare].map((d) => path.join(d.env.TOPE_INSTALLER_STATE_DIR, SECURITY_FLOOR_RECORD));
  for (const file of floorFiles) await fsp.mkdir(file); // read() fails with EISDIR, as it would with EACCES or EIO
  try {
    await assertRefusedEverywhere(
      await buildPackage('2.0.0', [a]),
      /^DOWNGRADE_REFUSED: the security floor in \S*security-floor\.json cannot be read, so no package can be shown to be at or above it: EISDIR/,
    );
  } finally {
    for (const file of floorFiles) await fsp.rmdir(file);
  }
});

test('[systemctl stand-in] both generations of the security floor there and neither valid: every package refused, as an unreadable floor', async () => {
  const floorFiles = [full, bare].map((d) => path.join(d.env.TOPE_INSTALLER_STATE_DIR, SECURITY_FLOOR_RECORD));
  const removeFloor = (file: string) =>
    Promise.all([file, previousGeneration(file)].map((f) => fsp.rm(f, { force: true })));
  for (const file of floorFiles) {
    await fsp.writeFile(file, '{"security_version": 7, "vers'); // torn
    await fsp.writeFile(previousGeneration(file), '{"security_version": -1}\n'); // not a floor
  }
  try {
    await assertRefusedEverywhere(
      await buildPackage('2.0.0', [a]),
      /^DOWNGRADE_REFUSED: the security floor in \S*security-floor\.json cannot be read, so no package can be shown to be at or above it: neither it nor security-floor\.json\.prev holds a valid floor$/,
    );
  } finally {
    for (const file of floorFiles) await removeFloor(file);
  }
  // one good generation is enough: the newest torn, the one before it read
  const floor = new SecurityFloor(bare.env.TOPE_INSTALLER_STATE_DIR);
  await floor.raise(1, '1.0.0');
  await floor.raise(2, '2.0.0');
  await fsp.writeFile(floorFiles[1]!, '{"security_version": 9');
  assert.equal(await floor.current(), 1);
  await removeFloor(floorFiles[1]!);
});

test('[systemctl stand-in] manifest.sig without its trailing newline verifies (the newline is optional)', async () => {
  const { bytes } = parts();
  const text = signedBy(bytes);
  assert.ok(text.endsWith('\n'));
  const zip = await withSignature(text.trimEnd());
  assert.equal((await download(zip, '2.0.0')).data.stage, 'toInstall');
});

test('[systemctl stand-in] a payload byte flipped under an intact signed manifest (CRC fixed up): PAYLOAD_MISMATCH while extracting, nothing live changed', async () => {
  const data = Buffer.from('a 2.0.0 payload\n');
  let zip = await buildPackage('2.0.0', [{ ...a, data, compress: false }]);
  const at = zip.indexOf(data);
  zip[at] ^= 0x01;
  zip = patchField(zip, 'modules/a/file', 'crc', zlib.crc32(zip.subarray(at, at + data.length)));
  const before = await deviceListing(bare.sysroot);
  const reports = deviceApi.reports.length;
  await bare.verified(zip, '2.0.0');
  await install(bare, '2.0.0');
  await assertRefused(
    bare,
    before,
    /^PAYLOAD_MISMATCH: module a: modules\/a\/file has SHA-256 [0-9a-f]{64}, the signed manifest says [0-9a-f]{64}$/,
    reports,
  );
  // refused while staging, with the services running: no unit stopped (the undo's start of a running unit is a no-op)
  assert.deepEqual(
    (await bare.calls()).filter((c) => /^(stop|restart) a\.service/.test(c)),
    [],
    'no unit stopped',
  );
});

test('[systemctl stand-in] an in-place file whose bytes do not match is refused before any unit stops', async () => {
  const d = new InstallDevice({ TOPE_DEVICE_API_URL: deviceApi.url, TOPE_ALLOWED_ROOTS: '/opt/tope:/etc/tope' });
  try {
    await d.seedVersion('v1.0.0', { 'bin/a': 'a 1.0.0\n' }, ['current']);
    await fsp.mkdir(path.join(d.sysroot, 'etc/tope'), { recursive: true });
    await fsp.writeFile(path.join(d.sysroot, 'etc/tope/c.conf'), 'c 1.0.0\n');
    await d.setUnits({ 'a.service': { active: true } });
    await d.start('installer', 'api-gateway');
    const data = Buffer.from('c 2.0.0 conf\n');
    let zip = await buildPackage('2.0.0', [a, { name: 'c', dst: '/etc/tope/c.conf', data, compress: false }]);
    const at = zip.indexOf(data);
    zip[at] ^= 0x20;
    zip = patchField(zip, 'modules/c/file', 'crc', zlib.crc32(zip.subarray(at, at + data.length)));
    const before = await deviceListing(d.sysroot);
    const reports = deviceApi.reports.length;
    await d.verified(zip, '2.0.0');
    await install(d, '2.0.0');
    await assertRefused(d, before, /^PAYLOAD_MISMATCH: module c: /, reports);
    assert.deepEqual(
      (await d.calls()).filter((c) => /^(stop|restart) a\.service/.test(c)),
      [],
      'no unit stopped',
    );
  } finally {
    await d.stop();
  }
});

test('[systemctl stand-in] the security floor: a failed install leaves it, a probation that succeeds raises it, an older signed package is refused below it', async () => {
  const floorOf = (d: InstallDevice) => new SecurityFloor(d.env.TOPE_INSTALLER_STATE_DIR).current();
  const pkg = (version: string, security_version: number) =>
    buildPackage(version, [a], [], { security_version } satisfies PackageOptions);
  const older = await pkg('1.5.0', 2);

  // an older package is fine while the floor is below it (it reaches toInstall), then replaced
  assert.equal((await download(older, '1.5.0')).data.stage, 'toInstall');

  await full.behave({ 'a.service': { unhealthy: ['3.0.0'] } });
  assert.equal((await download(await pkg('3.0.0', 3), '3.0.0')).data.stage, 'toInstall');
  const failed = await install(full, '3.0.0');
  assert.match(failed.error!, /ROLLBACK_LEVEL_1_SUCCESS: 1\.0\.0$/);
  assert.equal(await floorOf(full), 0, 'a package that failed its probation does not raise the floor');

  await full.behave({});
  assert.equal((await download(await pkg('3.0.0', 3), '3.0.0')).data.stage, 'toInstall');
  assert.equal((await install(full, '3.0.0')).stage, 'success');
  assert.equal(await floorOf(full), 3, 'raised once the probation succeeded');

  // the replay of an older, correctly signed package: refused by the fetcher, the file removed
  let before = await deviceListing(full.sysroot);
  let reports = deviceApi.reports.length;
  await download(older, '1.5.0');
  const downgrade = /^DOWNGRADE_REFUSED: version 1\.5\.0 has security_version 2, below this device's security floor 3$/;
  await assertRefused(full, before, downgrade, reports);
  assert.deepEqual(await fsp.readdir(full.packagesDir), []);

  // and by the installer, whatever the fetcher said
  await new SecurityFloor(bare.env.TOPE_INSTALLER_STATE_DIR).raise(3, '3.0.0');
  before = await deviceListing(bare.sysroot);
  reports = deviceApi.reports.length;
  await bare.verified(older, '1.5.0');
  await install(bare, '1.5.0');
  await assertRefused(bare, before, downgrade, reports);

  // an equal security_version installs
  assert.equal((await download(await pkg('3.1.0', 3), '3.1.0')).data.stage, 'toInstall');
  assert.equal((await install(full, '3.1.0')).stage, 'success');
  assert.equal(await floorOf(full), 3);
});

test('[systemctl stand-in] key rotation by a signed package: the new key is trusted, the old one no longer verifies; two keys trusted at once', async () => {
  const d = new InstallDevice({ TOPE_DEVICE_API_URL: deviceApi.url });
  const keysDir = keysDirOf(d);
  const next = newKeyPair();
  try {
    await d.seedVersion('v1.0.0', { 'bin/a': 'a 1.0.0\n' }, ['current']);
    await d.setUnits({ 'a.service': { active: true } });
    await d.start('installer', 'api-gateway');
    const keyModule = (data: string): ModuleSpec => ({
      name: 'vendor-key-2027',
      dst: `${loadConfig({}).TOPE_TRUSTED_KEYS_DIR}/vendor-2027.pub`,
      data,
      mode: 0o100644,
    });

    // what a rotation package may not do: leave no key, install something that is not a key, run a command from there
    const refusals: Array<[Buffer, RegExp]> = [
      [
        await buildPackage('2.0.0', [a], [], { remove_keys: [TEST_KEY_FILE] }),
        /^INVALID_MANIFEST: remove_keys would leave no trusted key in /,
      ],
      [
        await buildPackage('2.0.0', [a, keyModule('not a key\n')]),
        /^INVALID_PACKAGE: module vendor-key-2027: .* is not a usable trusted key: not a PEM public key/,
      ],
      [
        await buildPackage('2.0.0', [a, { ...keyModule(next.publicKeyPem), post_cmds: ['id'] }]),
        /^INVALID_MANIFEST: module vendor-key-2027: a trusted key file takes no process_name or post_cmds$/,
      ],
      [
        await buildPackage('2.0.0', [
          a,
          { ...keyModule(next.publicKeyPem), dst: `${loadConfig({}).TOPE_TRUSTED_KEYS_DIR}/sub/x.pub` },
        ]),
        /^INVALID_MANIFEST: .* is in the trusted keys directory but is not a <name>\.pub directly in it$/,
      ],
    ];
    for (const [zip, error] of refusals) {
      const before = await deviceListing(d.sysroot);
      const reports = deviceApi.reports.length;
      await d.verified(zip, '2.0.0');
      await install(d, '2.0.0');
      await assertRefused(d, before, error, reports);
    }

    // a rotation whose install fails its probation is undone with the rest: the old key stays, the new one goes
    await d.behave({ 'a.service': { unhealthy: ['2.0.0'] } });
    const rotation = await buildPackage('2.0.0', [a, keyModule(next.publicKeyPem)], [], {
      remove_keys: [TEST_KEY_FILE],
    });
    await d.verified(rotation, '2.0.0');
    assert.match((await install(d, '2.0.0')).error!, /ROLLBACK_LEVEL_1_SUCCESS/);
    assert.deepEqual(await fsp.readdir(keysDir), [TEST_KEY_FILE]);

    await d.behave({});
    await d.verified(rotation, '2.0.0');
    assert.equal((await install(d, '2.0.0')).stage, 'success');
    assert.deepEqual(await fsp.readdir(keysDir), ['vendor-2027.pub']);
    assert.equal(await fsp.readFile(path.join(keysDir, 'vendor-2027.pub'), 'utf8'), next.publicKeyPem);

    // the old key no longer verifies
    let before = await deviceListing(d.sysroot);
    let reports = deviceApi.reports.length;
    await d.verified(await buildPackage('2.1.0', [a]), '2.1.0');
    await install(d, '2.1.0');
    await assertRefused(d, before, /^SIGNATURE_INVALID: .*\(vendor-2027\.pub\)$/, reports);
    // the new one does
    await d.verified(await buildPackage('2.1.0', [a], [], { privateKeyPem: next.privateKeyPem }), '2.1.0');
    assert.equal((await install(d, '2.1.0')).stage, 'success');

    // two keys trusted at once (the overlap of a rotation): either one verifies
    await fsp.writeFile(path.join(keysDir, TEST_KEY_FILE), testKey.publicKeyPem);
    await d.verified(await buildPackage('2.2.0', [a]), '2.2.0');
    assert.equal((await install(d, '2.2.0')).stage, 'success');
    await d.verified(await buildPackage('2.3.0', [a], [], { privateKeyPem: next.privateKeyPem }), '2.3.0');
    assert.equal((await install(d, '2.3.0')).stage, 'success');
    // and a third key still does not
    before = await deviceListing(d.sysroot);
    reports = deviceApi.reports.length;
    await d.verified(await buildPackage('2.4.0', [a], [], { privateKeyPem: otherKey.privateKeyPem }), '2.4.0');
    await install(d, '2.4.0');
    await assertRefused(d, before, /^SIGNATURE_INVALID: .* none of the 2 trusted keys/, reports);
  } finally {
    await d.stop();
  }
});

test('[systemctl stand-in] key rotation over the whole path: the fetcher refuses the old key once the installer rotated it', async () => {
  const keysDir = keysDirOf(full);
  const next = newKeyPair();
  const rotation = await buildPackage(
    '4.0.0',
    [a, { name: 'key', dst: `${loadConfig({}).TOPE_TRUSTED_KEYS_DIR}/next.pub`, data: next.publicKeyPem }],
    [],
    { remove_keys: [TEST_KEY_FILE], security_version: 3 },
  );
  try {
    assert.equal((await download(rotation, '4.0.0')).data.stage, 'toInstall');
    assert.equal((await install(full, '4.0.0')).stage, 'success');
    const before = await deviceListing(full.sysroot);
    const reports = deviceApi.reports.length;
    await download(await buildPackage('4.1.0', [a], [], { security_version: 3 }), '4.1.0');
    await assertRefused(full, before, /^SIGNATURE_INVALID: .*\(next\.pub\)$/, reports);
    assert.equal(
      (
        await download(
          await buildPackage('4.1.0', [a], [], { security_version: 3, privateKeyPem: next.privateKeyPem }),
          '4.1.0',
        )
      ).data.stage,
      'toInstall',
    );
  } finally {
    // the device trusts the tests' key again for whatever runs after
    await fsp.writeFile(path.join(keysDir, TEST_KEY_FILE), testKey.publicKeyPem);
  }
});

test('[systemctl stand-in] TOPE_ALLOW_UNSIGNED (development): an unsigned package installs; a bad signature is still refused', async () => {
  const d = new InstallDevice({ TOPE_DEVICE_API_URL: deviceApi.url, TOPE_ALLOW_UNSIGNED: '1' });
  try {
    await d.seedVersion('v1.0.0', { 'bin/a': 'a 1.0.0\n' }, ['current']);
    await d.setUnits({ 'a.service': { active: true } });
    const [installer] = await d.start('installer', 'api-gateway');
    assert.equal((await installer.waitLog(UNSIGNED_ALLOWED_WARNING)).level, 40, 'a warning in the journal');
    await d.verified(await withSignature(null), '2.0.0');
    assert.equal((await install(d, '2.0.0')).stage, 'success');
    await d.verified(await buildPackage('2.1.0', [a], [], { privateKeyPem: otherKey.privateKeyPem }), '2.1.0');
    assert.match((await install(d, '2.1.0')).error!, /^SIGNATURE_INVALID: /);
  } finally {
    await d.stop();
  }
});

test('[systemctl stand-in] a rotated key arrives readable by all whatever its mode in the zip (the unprivileged fetcher reads it too)', async () => {
  const d = new InstallDevice({ TOPE_DEVICE_API_URL: deviceApi.url });
  const next = newKeyPair();
  try {
    await d.seedVersion('v1.0.0', { 'bin/a': 'a 1.0.0\n' }, ['current']);
    await d.setUnits({ 'a.service': { active: true } });
    await d.start('installer', 'api-gateway');
    const key: ModuleSpec = {
      name: 'key',
      dst: `${loadConfig({}).TOPE_TRUSTED_KEYS_DIR}/next.pub`,
      data: next.publicKeyPem,
      mode: 0o100600,
    };
    await d.verified(await buildPackage('2.0.0', [a, key]), '2.0.0');
    assert.equal((await install(d, '2.0.0')).stage, 'success');
    const st = await fsp.stat(path.join(keysDirOf(d), 'next.pub'));
    assert.equal(st.mode & 0o7777, 0o644);
  } finally {
    await d.stop();
  }
});

test("[systemctl stand-in] the installer's own rollbacks are not installs: a two-level rollback to a factory version below the floor is allowed", async () => {
  const d = new InstallDevice({ TOPE_DEVICE_API_URL: deviceApi.url });
  try {
    await d.seedVersion('v0.9.0', { 'bin/a': 'factory\n' }, ['factory']);
    await d.seedVersion('v1.0.0', { 'bin/a': 'a 1.0.0\n' }, ['current']);
    await d.setUnits({ 'a.service': { active: true } });
    await d.start('installer', 'api-gateway');
    await d.verified(await buildPackage('1.5.0', [a], [], { security_version: 5 }), '1.5.0');
    assert.equal((await install(d, '1.5.0')).stage, 'success');
    const floor = new SecurityFloor(d.env.TOPE_INSTALLER_STATE_DIR);
    assert.equal(await floor.current(), 5);

    // 2.0.0 and 1.5.0 (its previous) fail to start: level 1 fails, level 2 goes to 0.9.0, which no package of security_version 5 ever was
    await d.behave({ 'a.service': { failStart: ['2.0.0', '1.5.0'] } });
    await d.verified(await buildPackage('2.0.0', [a], [], { security_version: 5 }), '2.0.0');
    const end = await install(d, '2.0.0');
    assert.match(end.error!, /; ROLLBACK_LEVEL_1_FAILED: .*; ROLLBACK_LEVEL_2_SUCCESS: 0\.9\.0$/);
    assert.equal(await d.link('current'), 'v0.9.0');
    assert.equal(await floor.current(), 5, 'a rollback leaves the floor where it was');
  } finally {
    await d.stop();
  }
});
