import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterEach, test } from 'node:test';
import { InstallDevice, reportingDevice } from './helpers/install-device.js';
import { buildPackage } from './helpers/packages.js';
import { TracedService, tracingMissing } from './helpers/syscall-trace.js';

// The regression test of RELIABILITY.md's finding 8: a removal that only reached the page cache
// came back after a power cut (the installer's work directory, minutes after a successful
// install). The real installer and fetcher run under strace, and every tree of persisted work
// they remove must be followed at once (by the next fsync they make) by an fsync of the
// directory that held it. Service control goes
// through the recording systemctl stand-in (named so).

const skip = tracingMissing() ?? false;
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function device(extra: Record<string, string> = {}) {
  return (await reportingDevice(cleanups, extra)).device;
}

async function traced(d: InstallDevice, name: string, run = 1): Promise<TracedService> {
  const service = new TracedService(name, d.env, path.join(d.root, `${name}-${run}.strace`));
  cleanups.push(() => service.kill());
  await service.ready();
  return service;
}

// Each run of the installer ends right after the work it is checked on (SIGTERM waits for the
// install under way, its removals included): an fsync that a later command would bring (its
// busy marker's, say) must not stand in for the one the removal owes.
test(
  '[systemctl stand-in] under strace, the installer fsyncs the directory of each tree it removes: a killed run work dir and staging tree, the snapshot a rollback discards, the work dir after each install, a pruned snapshot',
  { skip, timeout: 120_000 },
  async () => {
    const d = await device({ TOPE_ALLOWED_ROOTS: '/opt/tope:/etc/tope' });
    await d.seedVersion('v1.0.0', { 'bin/a': 'a 1.0.0\n' }, ['current']);
    await d.seedVersion('v0.5.0', { 'bin/a': 'a 0.5.0\n' });
    await d.setUnits({ 'a.service': { active: true } });
    await fsp.mkdir(path.join(d.sysroot, 'etc/tope'), { recursive: true });
    await fsp.writeFile(path.join(d.sysroot, 'etc/tope/app.conf'), 'old conf\n');
    const workDir = path.join(d.env.TOPE_INSTALLER_STATE_DIR, 'work');
    const versionDir = (name: string) => path.join(d.versionsDir, name);
    const problems: string[] = [];

    // what a run killed mid-install before its journal leaves: its work dir and staging tree
    await fsp.mkdir(path.join(workDir, 'backups'), { recursive: true });
    await fsp.writeFile(path.join(workDir, 'backups/0'), 'backup\n');
    await fsp.mkdir(versionDir('.staging-7/bin'), { recursive: true });
    await fsp.writeFile(versionDir('.staging-7/bin/a'), 'half\n');
    const recovering = await traced(d, 'installer', 1);
    await recovering.stop();
    await assert.rejects(fsp.stat(workDir), { code: 'ENOENT' });
    await assert.rejects(fsp.stat(versionDir('.staging-7')), { code: 'ENOENT' });
    problems.push(...recovering.undurableRemovals(workDir), ...recovering.undurableRemovals(versionDir('.staging-7')));

    // an in-place module: without one, an install makes no work dir (it holds their copies and backups)
    const modules = [
      { name: 'a', dst: '/opt/tope/bin/a', process_name: 'a.service' },
      { name: 'conf', dst: '/etc/tope/app.conf', data: 'new conf\n' },
    ];
    await d.behave({ 'a.service': { unhealthy: ['2.0.0'] } });
    await d.verified(await buildPackage('2.0.0', modules), '2.0.0');
    const rollingBack = await traced(d, 'installer', 2);
    await d.start('api-gateway');
    assert.equal((await d.update('2.0.0')).body.code, 200);
    assert.match((await d.finished(60_000)).error!, /ROLLBACK_LEVEL_1_SUCCESS: 1\.0\.0$/);
    await rollingBack.stop();
    assert.deepEqual((await fsp.readdir(d.versionsDir)).sort(), ['current', 'v0.5.0', 'v1.0.0']);
    problems.push(...rollingBack.undurableRemovals(versionDir('v2.0.0')), ...rollingBack.undurableRemovals(workDir));

    await d.behave({});
    const succeeding = await traced(d, 'installer', 3);
    assert.equal((await d.update('2.0.0')).body.code, 200);
    assert.equal((await d.finished(60_000)).stage, 'success');
    await succeeding.stop();
    assert.equal(await d.file('/etc/tope/app.conf'), 'new conf\n');
    assert.deepEqual((await fsp.readdir(d.versionsDir)).sort(), ['current', 'previous', 'v1.0.0', 'v2.0.0']);
    await assert.rejects(fsp.stat(workDir), { code: 'ENOENT' });
    problems.push(...succeeding.undurableRemovals(workDir), ...succeeding.undurableRemovals(versionDir('v0.5.0')));

    assert.deepEqual(problems, []);
  },
);

test(
  'under strace, the fetcher fsyncs the packages directory after each file it removes: a stray file and an expired package at its start',
  { skip, timeout: 60_000 },
  async () => {
    const d = await device();
    await d.verified(await buildPackage('2.0.0', [{ name: 'a', dst: '/opt/tope/bin/a' }]), '2.0.0', new Date(0));
    const stray = path.join(d.packagesDir, 'tope-1.0.0.zip');
    await fsp.writeFile(stray, 'an older package\n');
    const fetcher = await traced(d, 'fetcher');
    await fetcher.stop();

    assert.deepEqual(await fsp.readdir(d.packagesDir), []);
    assert.equal((await d.fetcherStore.read())?.status.stage, 'idle', 'the expired package was discarded');
    assert.deepEqual(
      [
        ...fetcher.undurableRemovals(stray), // removeStrayFiles
        ...fetcher.undurableRemovals(path.join(d.packagesDir, 'tope-2.0.0.zip')), // clearPackages
      ],
      [],
    );
  },
);
