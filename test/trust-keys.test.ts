import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { describeKeySet, loadTrustedKeys } from '../shared/trust/signature.js';
import { InstallDevice } from './helpers/install-device.js';
import { TEST_KEY_FILE } from './helpers/packages.js';
import { waitFor } from './helpers/wait.js';
import { newKeyPair } from '../scripts/tope-pack/pack.js';
import { loadConfig } from '../shared/config.js';
import { tempDir } from './helpers/temp-dir.js';

// The trusted keys directory as a vendor's image may lay it out, and what an operator hears at a
// service's start when a key there cannot be trusted (before any package comes and is refused).

function keysDir(): string {
  const dir = tempDir('tope-keys-');
  chmodSync(dir, 0o755);
  return dir;
}

test('a key linked from elsewhere (an image linking its keys from /usr/share) is trusted when the file it opens is held by root alone', async () => {
  const dir = keysDir();
  const shared = keysDir();
  const good = path.join(shared, 'vendor.pub');
  await fsp.writeFile(good, newKeyPair().publicKeyPem, { mode: 0o644 });
  await fsp.symlink(good, path.join(dir, 'vendor.pub'));
  const loose = path.join(shared, 'loose.pub');
  await fsp.writeFile(loose, newKeyPair().publicKeyPem, { mode: 0o644 });
  await fsp.chmod(loose, 0o664);
  await fsp.symlink(loose, path.join(dir, 'loose.pub'));
  await fsp.symlink(path.join(shared, 'gone.pub'), path.join(dir, 'dangling.pub'));
  execFileSync('mkfifo', [path.join(dir, 'fifo.pub')]);

  const found = await loadTrustedKeys(dir);
  assert.deepEqual(
    found.keys.map((k) => k.name),
    ['vendor.pub'],
  );
  assert.equal(found.skipped.length, 3);
  assert.match(found.skipped.join('\n'), /^dangling\.pub: ENOENT/m);
  assert.match(found.skipped.join('\n'), /^fifo\.pub: not a regular file$/m);
  assert.match(found.skipped.join('\n'), /^loose\.pub: the file is writable by group or others \(mode 664\)$/m);
  assert.match(describeKeySet(found, dir)!, /^trusted keys in \S+: vendor\.pub; not trusted: /);
});

test('a key linked from a directory others could write to, or through a link held there, is not trusted: whoever may write there may swap it', async () => {
  const dir = keysDir();
  const shared = keysDir();
  const file = path.join(shared, 'vendor.pub');
  await fsp.writeFile(file, newKeyPair().publicKeyPem, { mode: 0o644 });
  await fsp.symlink(file, path.join(dir, 'vendor.pub'));
  // a second hop, through a link in another directory
  const hop = keysDir();
  await fsp.symlink(file, path.join(hop, 'vendor.pub'));
  await fsp.symlink(path.join(hop, 'vendor.pub'), path.join(dir, 'hop.pub'));
  assert.deepEqual(
    (await loadTrustedKeys(dir)).keys.map((k) => k.name),
    ['hop.pub', 'vendor.pub'],
  );
  await fsp.chmod(shared, 0o777);
  const open = await loadTrustedKeys(dir);
  assert.deepEqual(open.keys, []);
  assert.deepEqual(open.skipped, [
    `hop.pub: it links to ${file}: ${shared} is writable by group or others (mode 777)`,
    `vendor.pub: it links to ${file}: ${shared} is writable by group or others (mode 777)`,
  ]);
  await fsp.chmod(shared, 0o755);
  await fsp.chmod(hop, 0o777);
  assert.deepEqual((await loadTrustedKeys(dir)).skipped, [
    `hop.pub: it links to ${path.join(hop, 'vendor.pub')}: ${hop} is writable by group or others (mode 777)`,
  ]);
});

test('a directory above the keys directory that others could write to trusts no key; a sticky one (/tmp) is fine', async () => {
  const parent = keysDir();
  const dir = path.join(parent, 'keys.d');
  await fsp.mkdir(dir, { mode: 0o755 });
  await fsp.writeFile(path.join(dir, 'vendor.pub'), newKeyPair().publicKeyPem, { mode: 0o644 });
  assert.deepEqual(
    (await loadTrustedKeys(dir)).keys.map((k) => k.name),
    ['vendor.pub'],
  );
  // whoever may write to the parent may rename keys.d away and put their own in its place
  await fsp.chmod(parent, 0o777);
  const open = await loadTrustedKeys(dir);
  assert.deepEqual(open.keys, []);
  const parentReal = await fsp.realpath(parent);
  assert.equal(open.refused, `${parentReal} is writable by group or others (mode 777)`);
  assert.match(
    describeKeySet(open, dir)!,
    /^no key in \S+ is trusted: \S+ is writable by group or others \(mode 777\); every signed package will be refused$/,
  );
  // sticky, as /tmp is: only an entry's owner may rename it
  await fsp.chmod(parent, 0o1777);
  assert.equal((await loadTrustedKeys(dir)).keys.length, 1);
  if (process.geteuid?.() === 0) {
    await fsp.chmod(parent, 0o755);
    await fsp.chown(parent, 12345, 12345);
    assert.equal((await loadTrustedKeys(dir)).refused, `${parentReal} is owned by uid 12345, not root`);
  }
});

test("the checks above the keys go up to the device's root (TOPE_ROOT_PREFIX), and through a symbolic link on the way", async () => {
  const outside = keysDir();
  await fsp.chmod(outside, 0o777); // a developer's checkout under umask 002, say
  const deviceRoot = path.join(outside, 'root');
  const dir = path.join(deviceRoot, 'etc/tope-updater/keys.d');
  await fsp.mkdir(dir, { recursive: true, mode: 0o755 });
  await fsp.writeFile(path.join(dir, 'vendor.pub'), newKeyPair().publicKeyPem, { mode: 0o644 });
  assert.equal((await loadTrustedKeys(dir, deviceRoot)).keys.length, 1);
  // on a device (/ as its root) the same directory open to all above it trusts nothing
  assert.match((await loadTrustedKeys(dir)).refused ?? '', /is writable by group or others \(mode 777\)$/);
  // /etc/tope-updater a link into a directory held by root alone: whoever may write the
  // directory holding the link may point it elsewhere
  const held = path.join(deviceRoot, 'usr/share/tope');
  await fsp.mkdir(held, { recursive: true, mode: 0o755 });
  await fsp.rename(path.join(deviceRoot, 'etc/tope-updater'), path.join(held, 'tope-updater'));
  await fsp.symlink(path.join(held, 'tope-updater'), path.join(deviceRoot, 'etc/tope-updater'));
  assert.equal((await loadTrustedKeys(dir, deviceRoot)).keys.length, 1);
  await fsp.chmod(path.join(deviceRoot, 'etc'), 0o775);
  assert.equal(
    (await loadTrustedKeys(dir, deviceRoot)).refused,
    `${path.join(deviceRoot, 'etc')} is writable by group or others (mode 775)`,
  );
});

test('[systemctl stand-in] a worker whose only trusted key cannot be trusted says so in its journal at start', async () => {
  const d = new InstallDevice({});
  try {
    const keyFile = path.join(d.sysroot, loadConfig({}).TOPE_TRUSTED_KEYS_DIR, TEST_KEY_FILE);
    await fsp.chmod(keyFile, 0o664);
    const [fetcher] = await d.start('fetcher');
    const line = await waitFor(
      'the warning',
      () => fetcher.lines.find((l) => /^no trusted Ed25519 key in /.test(String(l.msg))),
      10_000,
    );
    assert.equal(line.level, 40, 'a warning');
    assert.match(
      String(line.msg),
      /not trusted: tope-test\.pub: the file is writable by group or others \(mode 664\); every signed package will be refused$/,
    );
  } finally {
    await d.stop();
    await fsp.rm(d.root, { recursive: true, force: true });
  }
});
