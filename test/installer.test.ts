import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterEach, test } from 'node:test';
import { DeviceApi } from './helpers/device-api.js';
import { InstallDevice, reportingDevice } from './helpers/install-device.js';
import { buildPackage, changeStoredEntry } from './helpers/packages.js';
import { deviceListing } from './helpers/tree-state.js';
import { waitFor } from './helpers/wait.js';
import { installSteps } from '../services/installer/steps.js';
import { sendCommand } from '../shared/protocol.js';

// The installer as a real process over a sysroot under a temp dir, service control through the
// recording systemctl stand-in (named so; system.test.ts runs the real systemd).

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function device(extra: Record<string, string> = {}) {
  const { device: d, deviceApi } = await reportingDevice(cleanups, extra);
  await d.seedVersion('v1.0.0', { 'bin/a': 'a 1.0.0\n', 'lib/b': 'b 1.0.0\n', 'share/keep': 'kept\n' }, ['current']);
  await d.setUnits({ 'a.service': { active: true }, 'b.service': { active: true } });
  return { d, deviceApi };
}

const modules = [
  { name: 'a', dst: '/opt/tope/bin/a', process_name: 'a.service', restart_order: 2 },
  { name: 'b', dst: '/opt/tope/lib/b', process_name: 'b.service', restart_order: 1 },
  { name: 'c', dst: '/opt/tope/etc/c.conf', mode: 0o100640 },
];

test('[systemctl stand-in] happy path: a partial package over a hard-link snapshot, units stopped in reverse order and started after the switch', async () => {
  const { d, deviceApi } = await device();
  await d.start('installer', 'api-gateway');
  await d.verified(await buildPackage('2.0.0', modules), '2.0.0');
  assert.deepEqual((await d.update('2.0.0')).body, { code: 200, msg: 'success', data: null });
  assert.equal((await d.progress()).body.data.stage, 'installing', 'the stage changed before the reply');
  const end = await d.finished();
  assert.deepEqual(end, {
    stage: 'success',
    progress: 100,
    message: 'Successfully installed version 2.0.0',
    error: null,
  });

  assert.equal(await d.link('current'), 'v2.0.0');
  assert.equal(await d.link('previous'), 'v1.0.0');
  assert.equal(await d.file('/opt/tope/versions/current/bin/a'), 'a 2.0.0\n');
  assert.equal(
    await d.file('/opt/tope/versions/v1.0.0/bin/a'),
    'a 1.0.0\n',
    'the old snapshot was not written through a link',
  );
  const kept = [
    await fsp.stat(path.join(d.versionsDir, 'v2.0.0/share/keep')),
    await fsp.stat(path.join(d.versionsDir, 'v1.0.0/share/keep')),
  ];
  assert.equal(kept[0].ino, kept[1].ino, 'files the package does not carry are hard links to the old snapshot');
  assert.equal((await fsp.stat(path.join(d.versionsDir, 'v2.0.0/bin/a'))).mode & 0o777, 0o755);
  assert.equal((await fsp.stat(path.join(d.versionsDir, 'v2.0.0/etc/c.conf'))).mode & 0o777, 0o640);

  const calls = (await d.calls()).filter((c) => /^(stop|start) /.test(c));
  assert.deepEqual(calls, [
    'stop a.service current=1.0.0',
    'stop b.service current=1.0.0',
    'start b.service current=2.0.0',
    'start a.service current=2.0.0',
  ]);
  await waitFor('the final report', () => deviceApi.reports.at(-1)?.stage === 'success');
  const allowed =
    /^(Installing version 2\.0\.0\.\.\.|Verifying package\.\.\.|Installing module [abc] \([123]\/3\)|Stopping services\.\.\.|Switching to version 2\.0\.0\.\.\.|Starting [ab]\.service \([12]\/2\)|Checking services\.\.\.)$/;
  const installing = deviceApi.reports.filter((r) => r.stage === 'installing');
  assert.equal(installing[0].message, 'Installing version 2.0.0...');
  assert.ok(
    installing.every((r) => allowed.test(r.message)),
    JSON.stringify(installing.map((r) => r.message)),
  );
  const progress = deviceApi.reports.filter((r) => r.stage === 'installing').map((r) => r.progress);
  assert.ok(
    progress.every((p, i) => i === 0 || p >= progress[i - 1]),
    'progress never goes back',
  );
  assert.equal((await d.installerStore.read())?.status.stage, 'success');
});

test('[systemctl stand-in] reinstalling a version that exists works, and old snapshots beyond current, previous and factory are pruned', async () => {
  const { d } = await device();
  await d.seedVersion('v0.9.0', { 'bin/a': 'factory\n' }, ['factory']);
  await d.seedVersion('v0.5.0', { 'bin/a': 'ancient\n' });
  await d.start('installer', 'api-gateway');
  await d.verified(await buildPackage('2.0.0', modules), '2.0.0');
  await d.update('2.0.0');
  assert.equal((await d.finished()).stage, 'success');
  await d.verified(await buildPackage('2.0.0', [{ ...modules[0], data: 'a 2.0.0 again\n' }]), '2.0.0');
  await d.update('2.0.0');
  assert.equal((await d.finished()).stage, 'success');
  assert.match((await d.link('current'))!, /^v2\.0\.0~\d+$/);
  assert.equal(await d.link('previous'), 'v2.0.0');
  assert.equal(await d.file('/opt/tope/versions/current/bin/a'), 'a 2.0.0 again\n');
  assert.equal(await d.file('/opt/tope/versions/current/lib/b'), 'b 2.0.0\n');
  const left = (await fsp.readdir(d.versionsDir)).sort();
  assert.deepEqual(
    left.filter((n) => n.startsWith('v')).sort(),
    [(await d.link('current'))!, 'v0.9.0', 'v2.0.0'].sort(),
  );
});

test('[systemctl stand-in] post_cmds run in order in the new snapshot; a failing one fails the install before the switch, with nothing changed', async () => {
  const { d } = await device({ TOPE_POST_CMD_TIMEOUT_MS: '500' });
  await d.start('installer', 'api-gateway');
  const ok = [{ ...modules[0], post_cmds: ['echo one > post.txt', 'echo "$TOPE_VERSION" >> post.txt'] }];
  await d.verified(await buildPackage('2.0.0', ok), '2.0.0');
  await d.update('2.0.0');
  assert.equal((await d.finished()).stage, 'success');
  assert.equal(await d.file('/opt/tope/versions/v2.0.0/post.txt'), 'one\n2.0.0\n');

  for (const [cmd, error] of [
    ['echo broken >&2; exit 3', /^POST_CMD_FAILED: 'echo broken >&2; exit 3' exited 3 — broken$/],
    ['sleep 30', /^POST_CMD_TIMEOUT: 'sleep 30' timed out after 500 ms$/],
  ] as const) {
    await d.verified(await buildPackage('3.0.0', [{ ...modules[0], post_cmds: [cmd] }]), '3.0.0');
    await d.update('3.0.0');
    const failed = await d.finished();
    assert.equal(failed.stage, 'failed');
    assert.match(failed.error!, error);
    assert.equal(failed.message, 'Update failed');
    assert.equal(await d.link('current'), 'v2.0.0', 'no switch, no downgrade');
    assert.ok(!(await fsp.readdir(d.versionsDir)).includes('v3.0.0'), 'the staged snapshot is gone');
    assert.equal((await d.units())['a.service'].active, true, 'the stopped unit runs again');
  }
});

test('[systemctl stand-in] a unit that crash-loops on the new version: rolled back to previous, health-checked', async () => {
  const { d, deviceApi } = await device();
  await d.behave({ 'a.service': { unhealthy: ['2.0.0'] } });
  await d.start('installer', 'api-gateway');
  await d.verified(await buildPackage('2.0.0', modules), '2.0.0');
  await d.update('2.0.0');
  const end = await d.finished();
  assert.equal(end.stage, 'failed');
  assert.match(
    end.error!,
    /^SERVICE_UNHEALTHY: a\.service is activating during probation; ROLLBACK_LEVEL_1_SUCCESS: 1\.0\.0$/,
  );
  assert.equal(end.message, 'Update failed; rolled back to version 1.0.0');
  assert.equal(await d.link('current'), 'v1.0.0');
  assert.ok(!(await fsp.readdir(d.versionsDir)).includes('v2.0.0'));
  const units = await d.units();
  assert.ok(units['a.service'].active && units['b.service'].active);
  await waitFor('the final failure reported', () => deviceApi.reports.at(-1)?.stage === 'failed');
  assert.ok(deviceApi.reports.some((r) => r.message === 'Rolling back to version 1.0.0...'));
  // the verified package is still there: the same /update is accepted again from failed
  await d.behave({});
  assert.equal((await d.update('2.0.0')).body.code, 200);
  assert.equal((await d.finished()).stage, 'success');
});

test('[systemctl stand-in] a unit restarted by systemd during probation counts as unhealthy', async () => {
  const { d } = await device();
  await d.behave({ 'b.service': { flapping: ['2.0.0'] } });
  await d.start('installer', 'api-gateway');
  await d.verified(await buildPackage('2.0.0', modules), '2.0.0');
  await d.update('2.0.0');
  const end = await d.finished();
  assert.match(
    end.error!,
    /^SERVICE_UNHEALTHY: b\.service restarted \d+ time\(s\) during probation; ROLLBACK_LEVEL_1_SUCCESS: 1\.0\.0$/,
  );
  assert.equal(await d.link('current'), 'v1.0.0');
});

test('[systemctl stand-in] previous unhealthy too: rolled back to factory; without factory both levels are named', async () => {
  const { d } = await device();
  await d.seedVersion('v0.9.0', { 'bin/a': 'factory\n' }, ['factory']);
  await d.behave({ 'a.service': { failStart: ['2.0.0', '1.0.0'] } });
  await d.start('installer', 'api-gateway');
  await d.verified(await buildPackage('2.0.0', modules), '2.0.0');
  await d.update('2.0.0');
  const end = await d.finished();
  assert.match(
    end.error!,
    /^SERVICE_START_FAILED: systemctl start a\.service exited 1: Job for a\.service failed\.; ROLLBACK_LEVEL_1_FAILED: SERVICE_START_FAILED: .*; ROLLBACK_LEVEL_2_SUCCESS: 0\.9\.0$/,
  );
  assert.equal(await d.link('current'), 'v0.9.0');

  await fsp.rm(path.join(d.versionsDir, 'factory'));
  await d.behave({ 'a.service': { failStart: true } });
  await d.verified(await buildPackage('2.1.0', modules), '2.1.0');
  await d.update('2.1.0');
  const worst = await d.finished();
  assert.match(
    worst.error!,
    /; ROLLBACK_LEVEL_1_FAILED: SERVICE_START_FAILED: .*; ROLLBACK_LEVEL_2_FAILED: no factory version$/,
  );
  assert.equal(worst.message, 'Both rollbacks failed - manual intervention required');
});

test('[systemctl stand-in] a unit that hangs on start is SERVICE_START_TIMEOUT and rolled back', async () => {
  const { d } = await device({ TOPE_UNIT_START_TIMEOUT_MS: '400' });
  await d.behave({ 'b.service': { hangStart: ['2.0.0'] } });
  await d.start('installer', 'api-gateway');
  await d.verified(await buildPackage('2.0.0', modules), '2.0.0');
  await d.update('2.0.0');
  const end = await d.finished();
  assert.match(
    end.error!,
    /^SERVICE_START_TIMEOUT: b\.service did not start within 400 ms; ROLLBACK_LEVEL_1_SUCCESS: 1\.0\.0$/,
  );
});

test('[systemctl stand-in] stop failures come before the switch: no rollback, no downgrade, units started again', async () => {
  const { d } = await device({ TOPE_UNIT_STOP_TIMEOUT_MS: '400' });
  await d.start('installer', 'api-gateway');
  for (const [behaviour, error] of [
    [{ failStop: true }, /^SERVICE_STOP_FAILED: systemctl stop b\.service exited 1: Failed to stop b\.service\.$/],
    [{ hangStop: true }, /^SERVICE_STOP_TIMEOUT: b\.service did not stop within 400 ms$/],
  ] as const) {
    await d.behave({ 'b.service': behaviour });
    await d.verified(await buildPackage('2.0.0', modules), '2.0.0');
    await d.update('2.0.0');
    const end = await d.finished();
    assert.match(end.error!, error);
    assert.equal(await d.link('current'), 'v1.0.0');
    assert.equal(await d.link('previous'), null);
    assert.equal((await d.units())['a.service'].active, true);
  }
});

test('[systemctl stand-in] a dst under another allowed root is backed up, replaced, and restored on rollback', async () => {
  const { d } = await device({ TOPE_ALLOWED_ROOTS: '/opt/tope:/etc/tope' });
  await fsp.mkdir(path.join(d.sysroot, 'etc/tope'), { recursive: true });
  await fsp.writeFile(path.join(d.sysroot, 'etc/tope/app.conf'), 'old conf\n', { mode: 0o600 });
  await d.start('installer', 'api-gateway');
  const pkg = [
    ...modules,
    { name: 'conf', dst: '/etc/tope/app.conf', data: 'new conf\n' },
    { name: 'extra', dst: '/etc/tope/new.conf', data: 'fresh\n' },
  ];

  await d.behave({ 'a.service': { unhealthy: ['2.0.0'] } });
  await d.verified(await buildPackage('2.0.0', pkg), '2.0.0');
  await d.update('2.0.0');
  assert.match((await d.finished()).error!, /ROLLBACK_LEVEL_1_SUCCESS: 1\.0\.0$/);
  assert.equal(await d.file('/etc/tope/app.conf'), 'old conf\n');
  assert.equal((await fsp.stat(path.join(d.sysroot, 'etc/tope/app.conf'))).mode & 0o777, 0o600);
  assert.equal(await d.file('/etc/tope/new.conf'), null, 'a file that did not exist is removed again');

  await d.behave({});
  await d.update('2.0.0');
  assert.equal((await d.finished()).stage, 'success');
  assert.equal(await d.file('/etc/tope/app.conf'), 'new conf\n');
  assert.equal(await d.file('/etc/tope/new.conf'), 'fresh\n');
});

test('[systemctl stand-in] a package changed on disk after verification (bytes with the same CRC-32) is refused: PAYLOAD_MISMATCH, nothing touched', async () => {
  const { d } = await device();
  await d.start('installer', 'api-gateway');
  // the installer reads the fetcher's file in place: what it checks is each file against the
  // signed manifest, and the zip's own CRC-32 would not tell these bytes from the right ones
  const zip = await buildPackage('2.0.0', [{ ...modules[0], compress: false }, ...modules.slice(1)]);
  await d.verified(zip, '2.0.0');
  await changeStoredEntry(path.join(d.packagesDir, 'tope-2.0.0.zip'), zip, 'modules/a/file');
  await d.update('2.0.0');
  const end = await d.finished();
  assert.match(
    end.error!,
    /^PAYLOAD_MISMATCH: module a: modules\/a\/file has SHA-256 [a-f0-9]{64}, the signed manifest says/,
  );
  assert.equal(await d.link('current'), 'v1.0.0');
  assert.deepEqual(
    (await d.calls()).filter((c) => c.startsWith('stop')),
    [],
  );
});

test('[systemctl stand-in] one bad file among 200 staged several at once: PAYLOAD_MISMATCH, and the device exactly as it was', async () => {
  const { d } = await device();
  await d.start('installer', 'api-gateway');
  const many = Array.from({ length: 200 }, (_, i) => ({
    name: `m${i}`,
    dst: `/opt/tope/share/many/f${i}`,
    data: `file ${i} `.repeat(1000),
    compress: false,
  }));
  const zip = await buildPackage('2.0.0', many);
  await d.verified(zip, '2.0.0');
  const before = await deviceListing(d.sysroot);
  // the 100th file's bytes changed after verification: the files before and after it are
  // being written while its check fails (that none is still being written when the undo starts
  // is bounded-work.test's: here the undo's first write outlasts the few in flight anyway)
  await changeStoredEntry(path.join(d.packagesDir, 'tope-2.0.0.zip'), zip, 'modules/m99/file');
  await d.update('2.0.0');
  const end = await d.finished();
  assert.match(end.error!, /^PAYLOAD_MISMATCH: module m99: modules\/m99\/file has SHA-256 /);
  assert.ok(end.progress > installSteps.staging.percent, `staging went on past the first files (${end.progress} %)`);
  assert.equal(await deviceListing(d.sysroot), before, 'no staging tree, no file of the package left');
});

test('[systemctl stand-in] ota-gui: its unit is started without waiting; its absence or failure changes nothing', async () => {
  const { d } = await device();
  await d.start('installer', 'api-gateway');
  await d.behave({ 'ota-gui.service': { hangStart: true } });
  await d.verified(await buildPackage('2.0.0', modules), '2.0.0');
  await d.update('2.0.0');
  assert.equal((await d.finished()).stage, 'success');
  assert.ok((await d.calls()).some((c) => c.startsWith('start ota-gui.service')));

  await d.behave({ 'ota-gui.service': { missing: true } });
  const marker = path.join(d.root, 'gui-ran');
  await fsp.writeFile(path.join(d.sysroot, 'opt/tope/ota-gui'), `#!/bin/sh\ntouch ${marker}\n`, { mode: 0o755 });
  await d.verified(await buildPackage('2.1.0', modules), '2.1.0');
  await d.update('2.1.0');
  assert.equal((await d.finished()).stage, 'success');
  await waitFor('the ota-gui binary to run', () =>
    fsp.stat(marker).then(
      () => true,
      () => false,
    ),
  );

  await fsp.writeFile(path.join(d.sysroot, 'opt/tope/ota-gui'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
  await d.verified(await buildPackage('2.2.0', modules), '2.2.0');
  await d.update('2.2.0');
  assert.equal((await d.finished()).stage, 'success');
});

test('[systemctl stand-in] a first install on an empty device, without services', async () => {
  const deviceApi = await new DeviceApi().start();
  const d = new InstallDevice({ TOPE_DEVICE_API_URL: deviceApi.url });
  cleanups.push(
    () => deviceApi.stop(),
    () => d.stop(),
  );
  await d.start('installer', 'api-gateway');
  await d.verified(await buildPackage('1.0.0', [{ name: 'tool', dst: '/opt/tope/bin/tool' }]), '1.0.0');
  await d.update('1.0.0');
  assert.equal((await d.finished()).stage, 'success');
  assert.equal(await d.link('current'), 'v1.0.0');
  assert.equal(await d.link('previous'), null);
  assert.equal(await d.file('/opt/tope/versions/current/bin/tool'), 'tool 1.0.0\n');
});

test('[systemctl stand-in] the same install command arriving several times at once (a gateway retrying a slow-starting installer) runs one install', async () => {
  // found by the power-cut VM: the gateway gave up on a socket-activated installer still
  // starting, device-api asked again, and the installer took the four queued copies together:
  // four installs at once into one staging tree (EEXIST, a failed undo), and an idle exit in
  // the middle of one of them
  const { d } = await device();
  await d.start('installer');
  await d.verified(await buildPackage('2.0.0', modules), '2.0.0');
  const replies = await Promise.all(
    Array.from({ length: 4 }, () =>
      sendCommand(d.env.TOPE_INSTALLER_SOCKET, { type: 'install', seq: 5, version: '2.0.0' }),
    ),
  );
  assert.deepEqual(replies, Array(4).fill({ ok: true }));
  await waitFor(
    'the install to end',
    async () => ['success', 'failed'].includes((await d.installerStore.read())?.status.stage ?? '') || null,
  );
  const end = await d.installerStore.read();
  assert.deepEqual(end?.status, {
    stage: 'success',
    progress: 100,
    message: 'Successfully installed version 2.0.0',
    error: null,
  });
  const calls = (await d.calls()).filter((c) => /^(stop|start) /.test(c));
  assert.deepEqual(
    calls,
    [
      'stop a.service current=1.0.0',
      'stop b.service current=1.0.0',
      'start b.service current=2.0.0',
      'start a.service current=2.0.0',
    ],
    'one install: each unit stopped and started once',
  );
  assert.equal(await d.link('current'), 'v2.0.0');
});
