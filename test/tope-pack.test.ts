import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { PackageArchive } from '../shared/package-archive.js';
import { distDir } from './helpers/services.js';
import { tempDir } from './helpers/temp-dir.js';

// tope-pack, the packaging tool, as a vendor runs it: real processes, real files, and the
// device's own checks behind its verify.

// the bundle `make install` and the .deb ship as /usr/bin/tope-pack
const tool = path.join(distDir, 'bundle/tools/tope-pack.js');
const run = (...args: string[]) => spawnSync(process.execPath, [tool, ...args], { encoding: 'utf8' });

test("keygen, build from a directory, verify; verify refuses with the device's codes; bad input is exit 2", async () => {
  const dir = tempDir('tope-pack-');
  const keys = path.join(dir, 'keys.d');
  const otherKeys = path.join(dir, 'other.d');
  assert.equal(run('keygen', path.join(dir, 'vendor.pem'), path.join(keys, 'vendor.pub')).status, 0);
  assert.equal(run('keygen', path.join(dir, 'other.pem'), path.join(otherKeys, 'other.pub')).status, 0);
  assert.equal((await fsp.stat(path.join(dir, 'vendor.pem'))).mode & 0o777, 0o600, 'the private key is private');
  assert.match(await fsp.readFile(path.join(dir, 'vendor.pem'), 'utf8'), /^-----BEGIN PRIVATE KEY-----/);
  assert.equal(
    run('keygen', path.join(dir, 'vendor.pem'), path.join(dir, 'x.pub')).status,
    2,
    'never overwrites a private key',
  );

  const src = path.join(dir, 'src');
  await fsp.mkdir(path.join(src, 'bin'), { recursive: true });
  await fsp.writeFile(path.join(src, 'bin/printerd'), '#!/bin/sh\necho printerd\n', { mode: 0o755 });
  const description = path.join(dir, 'description.json');
  await fsp.writeFile(
    description,
    JSON.stringify({
      version: '0.0.0',
      compatible: ['tope-x1'],
      security_version: 4,
      modules: [
        { name: 'printerd', src: 'bin/printerd', dst: '/opt/tope/bin/printerd', process_name: 'printerd.service' },
      ],
    }),
  );
  const out = path.join(dir, 'tope-1.2.3.zip');
  const built = run(
    'build',
    description,
    src,
    '--key',
    path.join(dir, 'vendor.pem'),
    '--out',
    out,
    '--version',
    '1.2.3',
  );
  assert.equal(built.status, 0, built.stderr);
  const printed = JSON.parse(built.stdout);
  assert.equal(printed.package_size, (await fsp.stat(out)).size);
  assert.match(printed.package_md5, /^[0-9a-f]{32}$/);

  // what it wrote: manifest.json with the size and hash, manifest.sig, the payload, nothing else
  const archive = await PackageArchive.open(out, { maxBytes: 1e6, maxEntries: 10 });
  const manifest = JSON.parse((await archive.readManifestBytes()).toString());
  assert.deepEqual([...archive.files.keys()], ['manifest.json', 'manifest.sig', 'bin/printerd']);
  archive.close();
  assert.equal(manifest.version, '1.2.3');
  assert.equal(manifest.modules[0].size, Buffer.byteLength('#!/bin/sh\necho printerd\n'));
  assert.match(manifest.modules[0].sha256, /^[0-9a-f]{64}$/);

  const ok = run('verify', out, '--keys', keys, '--product', 'tope-x1', '--floor', '4');
  assert.equal(ok.status, 0, ok.stderr);
  assert.deepEqual(JSON.parse(ok.stdout), {
    ok: true,
    version: '1.2.3',
    security_version: 4,
    compatible: ['tope-x1'],
    signed_by: 'vendor.pub',
  });
  const refusals: Array<[string[], RegExp]> = [
    [['--keys', otherKeys], /^SIGNATURE_INVALID: .*\(other\.pub\)\n$/],
    [
      ['--keys', keys, '--product', 'tope-x2'],
      /^INCOMPATIBLE_PACKAGE: the package is for tope-x1; this device is tope-x2\n$/,
    ],
    [
      ['--keys', keys, '--floor', '5'],
      /^DOWNGRADE_REFUSED: version 1\.2\.3 has security_version 4, below this device's security floor 5\n$/,
    ],
  ];
  for (const [args, error] of refusals) {
    const r = run('verify', out, ...args);
    assert.equal(r.status, 1);
    assert.match(r.stderr, error);
  }

  // a description that gives a size and sha256 (an earlier release's manifest.json): they must be the file's
  const described = {
    version: '1.2.4',
    compatible: ['tope-x1'],
    security_version: 4,
    modules: [{ ...manifest.modules[0] }],
  };
  await fsp.writeFile(description, JSON.stringify(described));
  const same = run('build', description, src, '--key', path.join(dir, 'vendor.pem'), '--out', path.join(dir, 'ok.zip'));
  assert.equal(same.status, 0, same.stderr);
  await fsp.writeFile(path.join(src, 'bin/printerd'), '#!/bin/sh\necho printerd 1.2.4\n');
  const stale = run(
    'build',
    description,
    src,
    '--key',
    path.join(dir, 'vendor.pem'),
    '--out',
    path.join(dir, 'st.zip'),
  );
  assert.equal(stale.status, 2);
  assert.match(
    stale.stderr,
    /^module printerd: .*description\.json gives size 24 sha256 [0-9a-f]{64} but bin\/printerd is 30 bytes with sha256 [0-9a-f]{64}; leave size and sha256 out \(build computes them\)\n$/,
  );
  await assert.rejects(fsp.stat(path.join(dir, 'st.zip')), { code: 'ENOENT' }, 'nothing written');

  await fsp.writeFile(description, JSON.stringify({ version: '1.0.0', modules: [] }));
  const bad = run('build', description, src, '--key', path.join(dir, 'vendor.pem'), '--out', path.join(dir, 'bad.zip'));
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /description\.json: compatible: .*security_version: .*modules: /);
  assert.equal(run('frobnicate').status, 2);
});
