import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterEach, test } from 'node:test';
import { call } from './helpers/api.js';
import { DeviceApi } from './helpers/device-api.js';
import { InstallDevice } from './helpers/install-device.js';
import { Origin } from './helpers/origin.js';
import { buildPackage, md5 } from './helpers/packages.js';
import { waitFor } from './helpers/wait.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function setUp(extra: Record<string, string> = {}) {
  const deviceApi = await new DeviceApi().start();
  const origin = await new Origin(1).start();
  const d = new InstallDevice({ TOPE_DEVICE_API_URL: deviceApi.url, ...extra });
  cleanups.push(
    () => origin.stop(),
    () => deviceApi.stop(),
    () => d.stop(),
  );
  return { d, origin, deviceApi };
}

test('[systemctl stand-in] device-api downloads then installs; ota-gui polls the whole way; every report arrives in order', async () => {
  const { d, origin, deviceApi } = await setUp();
  await d.seedVersion('v1.0.0', { 'bin/printerd': 'old\n' }, ['current']);
  await d.setUnits({ 'printerd.service': { active: true } });
  origin.body = await buildPackage('1.1.0', [
    { name: 'printerd', dst: '/opt/tope/bin/printerd', process_name: 'printerd.service', data: 'new\n' },
  ]);
  await d.start('fetcher', 'installer', 'api-gateway');

  const seen: string[] = [];
  let polling = true;
  const gui = (async () => {
    while (polling) {
      const p = await d.progress();
      const s = `${p.body.data.stage}`;
      if (seen.at(-1) !== s) seen.push(s);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();

  const job = {
    version: '1.1.0',
    package_url: origin.url(),
    package_name: 'tope-1.1.0.zip',
    package_size: origin.body.length,
    package_md5: md5(origin.body),
  };
  assert.equal((await call(d.base, 'POST', '/api/v1.0/download', job)).body.code, 200);
  await d.waitStage('toInstall');
  assert.equal((await d.update('1.1.0')).body.code, 200);
  const end = await d.finished();
  polling = false;
  await gui;
  seen.push((await d.progress()).body.data.stage);
  assert.equal(end.stage, 'success');
  assert.equal(await d.file('/opt/tope/versions/current/bin/printerd'), 'new\n');
  assert.equal(seen.at(-1), 'success');
  assert.ok(seen.indexOf('toInstall') < seen.indexOf('success'));
  await waitFor('the success report', () => deviceApi.reports.at(-1)?.stage === 'success');
  const stages = deviceApi.stages().filter((s, i, a) => s !== a[i - 1]);
  assert.deepEqual(stages, ['downloading', 'verifying', 'toInstall', 'installing', 'success']);
  // a new download after success is accepted and outranks the install record
  assert.equal((await call(d.base, 'POST', '/api/v1.0/download', job)).body.code, 200);
  assert.notEqual((await d.progress()).body.data.stage, 'success');
});

test('[systemctl stand-in] the verified package vanishing before the install is PACKAGE_NOT_FOUND, nothing changed', async () => {
  const { d } = await setUp();
  await d.seedVersion('v1.0.0', { 'bin/x': 'old\n' }, ['current']);
  await d.start('installer', 'api-gateway');
  await d.verified(await buildPackage('1.1.0', [{ name: 'x', dst: '/opt/tope/bin/x' }]), '1.1.0');
  await fsp.rm(path.join(d.packagesDir, 'tope-1.1.0.zip'));
  await d.update('1.1.0');
  const end = await d.finished();
  assert.match(end.error!, /^PACKAGE_NOT_FOUND: cannot read the verified package: ENOENT/);
  assert.equal(await d.link('current'), 'v1.0.0');
});

test('[systemctl stand-in] a dst whose directory cannot be made is DEPLOYMENT_FAILED before the switch', async () => {
  const { d } = await setUp({ TOPE_ALLOWED_ROOTS: '/opt/tope:/etc/tope' });
  await d.seedVersion('v1.0.0', { 'bin/x': 'old\n' }, ['current']);
  await fsp.mkdir(path.join(d.sysroot, 'etc'), { recursive: true });
  await fsp.writeFile(path.join(d.sysroot, 'etc/tope'), 'a file where a directory should be');
  await d.start('installer', 'api-gateway');
  await d.verified(await buildPackage('1.1.0', [{ name: 'x', dst: '/etc/tope/x.conf' }]), '1.1.0');
  await d.update('1.1.0');
  const end = await d.finished();
  assert.match(end.error!, /^DEPLOYMENT_FAILED: cannot write .*etc\/tope\/x\.conf/);
  assert.equal(await d.link('current'), 'v1.0.0');
  assert.equal(await fsp.readFile(path.join(d.sysroot, 'etc/tope'), 'utf8'), 'a file where a directory should be');
});

test(
  '[systemctl stand-in] the versions file system filling up during staging is DISK_FULL, the running version intact (a real tmpfs)',
  { skip: process.getuid?.() !== 0 && 'needs root to mount a small file system' },
  async () => {
    const { d } = await setUp();
    await fsp.mkdir(d.versionsDir, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tope-test', d.versionsDir]);
    cleanups.push(async () => {
      execFileSync('umount', [d.versionsDir]);
    });
    await d.seedVersion('v1.0.0', { 'bin/x': 'old\n' }, ['current']);
    await d.start('installer', 'api-gateway');
    const big = 'z'.repeat(2 * 1024 * 1024);
    await d.verified(await buildPackage('1.1.0', [{ name: 'x', dst: '/opt/tope/bin/x', data: big }]), '1.1.0');
    await d.update('1.1.0');
    const end = await d.finished();
    assert.match(end.error!, /^DISK_FULL: no space left while writing/);
    assert.equal(await d.link('current'), 'v1.0.0');
    assert.equal(await d.file('/opt/tope/versions/current/bin/x'), 'old\n');
    assert.deepEqual((await fsp.readdir(d.versionsDir)).sort(), ['current', 'v1.0.0']);
  },
);
