import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { distDir, freePort, mainOf, Service } from './helpers/services.js';
import { tempDir } from './helpers/temp-dir.js';

const repo = path.resolve(distDir, '..');
const unitsDir = path.join(repo, 'units');
const unitFiles = readdirSync(unitsDir)
  .filter((f) => /\.(service|socket|path|target)$/.test(f))
  .map((f) => path.join(unitsDir, f));

test('systemd-analyze verify is clean for every unit (any output fails)', () => {
  const r = spawnSync('systemd-analyze', ['verify', '--man=no', ...unitFiles], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(`${r.stdout}${r.stderr}`.trim(), '');
});

const ceilings: Record<string, number> = {
  'tope-api-gateway.service': 1.0,
  'tope-fetcher.service': 1.5,
  'tope-installer.service': 3.0,
};
for (const [unit, ceiling] of Object.entries(ceilings)) {
  test(`systemd-analyze security: ${unit} exposure at most ${ceiling}`, () => {
    const r = spawnSync(
      'systemd-analyze',
      [
        'security',
        '--offline=true',
        '--no-pager',
        `--threshold=${Math.round(ceiling * 10)}`,
        path.join(unitsDir, unit),
      ],
      { encoding: 'utf8' },
    );
    const level = Number(/Overall exposure level for \S+: (\d+\.\d)/.exec(r.stdout)?.[1]);
    assert.ok(
      level <= ceiling,
      `${unit}: ${level}\n${r.stdout
        .split('\n')
        .filter((l) => l.startsWith('✗'))
        .join('\n')}`,
    );
    assert.equal(r.status, 0);
  });
}

test('the units tell the deployment: who runs as whom, which sockets, which paths', () => {
  const read = (f: string) => readFileSync(path.join(unitsDir, f), 'utf8');
  assert.match(read('tope-api-gateway.socket'), /^ListenStream=127\.0\.0\.1:12315$/m);
  assert.match(read('tope-api-gateway.service'), /^User=tope-gateway$/m);
  assert.match(read('tope-fetcher.service'), /^User=tope-fetcher$/m);
  assert.match(read('tope-installer.service'), /^User=root$/m);
  for (const w of ['fetcher', 'installer']) {
    assert.match(read(`tope-${w}.socket`), new RegExp(`^ListenStream=/run/tope-updater/${w}\\.sock$`, 'm'));
    assert.match(read(`tope-${w}.socket`), /^SocketGroup=tope-gateway$/m);
    assert.match(read(`tope-${w}.socket`), /^SocketMode=0660$/m);
  }
  const users = read('tope-updater.sysusers');
  assert.match(users, /^u tope-gateway /m);
  assert.match(users, /^u tope-fetcher /m);
  for (const svc of ['tope-api-gateway', 'tope-fetcher', 'tope-installer'])
    assert.match(read(`${svc}.service`), /^SystemCallFilter=@system-service @pkey$/m);
  // the trust chain: only the installer may write the keys (rotation); the fetcher reads the floor in the installer's state
  assert.match(read('tope-installer.service'), /^ReadWritePaths=\/opt\/tope -\/etc\/tope-updater\/keys\.d$/m);
  assert.match(read('tope-fetcher.service'), /^SupplementaryGroups=tope-installer$/m);
  assert.match(users, /^m tope-fetcher +tope-installer$/m);
  assert.match(read('tope-updater.tmpfiles'), /^d \/etc\/tope-updater\/keys\.d +0755 root root -$/m);
  // a hung event loop is restarted: each process pings (shared/notify.ts) and systemd watches
  for (const svc of ['tope-api-gateway', 'tope-fetcher', 'tope-installer']) {
    assert.match(read(`${svc}.service`), /^WatchdogSec=30$/m);
  }
  // journalctl -t <name> finds each service's lines
  for (const svc of ['tope-api-gateway', 'tope-fetcher', 'tope-installer'])
    assert.match(read(`${svc}.service`), new RegExp(`^SyslogIdentifier=${svc}$`, 'm'));
});

test(
  'make install puts the code (bundled: no node_modules, no npm) and the units under DESTDIR',
  { timeout: 300_000 },
  async () => {
    const dest = tempDir('destdir-');
    execFileSync('make', ['-s', '-C', repo, 'install-files', `DESTDIR=${dest}`], {
      stdio: 'pipe',
      env: { ...process.env, MAKEFLAGS: '' },
    });
    const lib = path.join(dest, 'usr/lib/tope-updater');
    for (const f of [
      'dist/bundle/api-gateway.js',
      'dist/bundle/fetcher.js',
      'dist/bundle/installer.js',
      'dist/bundle/tools/tope-pack.js',
      'package.json',
    ]) {
      assert.ok(readdirSync(path.dirname(path.join(lib, f))).includes(path.basename(f)), f);
    }
    // each bundle carries its dependencies: nothing for npm to fetch on the device or into an image
    assert.deepEqual(readdirSync(lib).sort(), ['README.md', 'dist', 'package.json']);
    assert.ok(!readdirSync(path.join(lib, 'dist')).includes('test'), 'no tests');
    // the services run from their bundles, as the units say: not tsc's tree of modules
    assert.ok(!readdirSync(path.join(lib, 'dist')).includes('services'), 'no unbundled services');
    for (const service of ['api-gateway', 'fetcher', 'installer']) {
      const unit = readFileSync(path.join(dest, `usr/lib/systemd/system/tope-${service}.service`), 'utf8');
      const installed = path.join('/usr/lib/tope-updater', path.relative(path.dirname(distDir), mainOf(service)));
      assert.match(unit, new RegExp(`^ExecStart=/usr/bin/node ${installed}$`, 'm'), service);
    }
    assert.deepEqual(
      readdirSync(path.join(dest, 'usr/lib/systemd/system')).sort(),
      unitFiles.map((f) => path.basename(f)).sort(),
    );
    assert.ok(readdirSync(path.join(dest, 'usr/lib/sysusers.d')).includes('tope-updater.conf'));
    assert.ok(readdirSync(path.join(dest, 'usr/lib/tmpfiles.d')).includes('tope-updater.conf'));
    // the packaging tool, its dependencies (yazl, zod) inside its bundle: it runs from there
    assert.match(
      readFileSync(path.join(dest, 'usr/bin/tope-pack'), 'utf8'),
      /^exec \/usr\/bin\/node \/usr\/lib\/tope-updater\/dist\/bundle\/tools\/tope-pack\.js "\$@"$/m,
    );
    const installedPack = path.join(lib, 'dist/bundle/tools/tope-pack.js');
    const pack = spawnSync(process.execPath, [installedPack], { encoding: 'utf8' });
    assert.equal(pack.status, 2);
    assert.match(pack.stderr, /^usage:\n  tope-pack keygen/);
    const keys = tempDir('keys-');
    const keygen = spawnSync(
      process.execPath,
      [installedPack, 'keygen', path.join(keys, 'k.pem'), path.join(keys, 'k.pub')],
      { encoding: 'utf8' },
    );
    assert.equal(keygen.status, 0, keygen.stderr);
    // a build: zod reads the description, yazl writes the zip, both from inside the bundle
    writeFileSync(path.join(keys, 'printerd'), 'printerd\n');
    writeFileSync(
      path.join(keys, 'description.json'),
      JSON.stringify({
        version: '1.0.0',
        compatible: ['tope-x1'],
        security_version: 1,
        modules: [
          { name: 'printerd', src: 'printerd', dst: '/opt/tope/bin/printerd', process_name: 'printerd.service' },
        ],
      }),
    );
    const built = spawnSync(
      process.execPath,
      [
        installedPack,
        'build',
        path.join(keys, 'description.json'),
        keys,
        '--key',
        path.join(keys, 'k.pem'),
        '--out',
        path.join(keys, 'p.zip'),
      ],
      { encoding: 'utf8', cwd: keys },
    );
    assert.equal(built.status, 0, built.stderr);
    assert.match(JSON.parse(built.stdout).package_md5, /^[0-9a-f]{32}$/);
    // the installed gateway runs from there: it loads, validates its configuration and says what is wrong
    const gw = new Service(
      'api-gateway',
      { TOPE_LISTEN_PORT: String(await freePort()), TOPE_RETRY_ATTEMPTS: 'x' },
      { file: process.execPath, args: [path.join(lib, 'dist/bundle/api-gateway.js')] },
    );
    try {
      assert.deepEqual((await gw.waitLog('configuration invalid')).variables, ['TOPE_RETRY_ATTEMPTS']);
    } finally {
      await gw.kill();
    }
  },
);

test(
  'systemd-tmpfiles (the real tool, over a temp root) makes the trusted keys root-held as the trust check requires, and leaves a linked key’s target alone',
  {
    skip: process.getuid?.() === 0 ? false : 'needs root (it gives a key file to another owner)',
  },
  () => {
    const root = tempDir('tmpfiles-root-');
    const keys = path.join(root, 'etc/tope-updater/keys.d');
    mkdirSync(keys, { recursive: true });
    writeFileSync(path.join(keys, 'vendor.pub'), 'key\n', { mode: 0o664 });
    chmodSync(path.join(keys, 'vendor.pub'), 0o664);
    chownSync(path.join(keys, 'vendor.pub'), 65534, 65534);
    writeFileSync(path.join(root, 'elsewhere.pub'), 'key\n');
    chmodSync(path.join(root, 'elsewhere.pub'), 0o666);
    symlinkSync('/elsewhere.pub', path.join(keys, 'linked.pub'));
    execFileSync('systemd-tmpfiles', ['--create', `--root=${root}`, path.join(unitsDir, 'tope-updater.tmpfiles')]);
    const vendor = statSync(path.join(keys, 'vendor.pub'));
    assert.deepEqual([vendor.mode & 0o7777, vendor.uid, vendor.gid], [0o644, 0, 0]);
    assert.equal(statSync(path.join(root, 'elsewhere.pub')).mode & 0o7777, 0o666, 'not followed');
    assert.equal(statSync(keys).mode & 0o7777, 0o755);
  },
);
