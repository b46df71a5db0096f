import assert from 'node:assert/strict';
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterEach, test } from 'node:test';
import { installerStateSchema, type InstallerState } from '../services/installer/journal.js';
import { BUSY_MARKER } from '../shared/busy-marker.js';
import { DurableJson } from '../shared/durable-store.js';
import * as statuses from '../shared/status.js';
import { call } from './helpers/api.js';
import { TestDevice } from './helpers/device.js';
import { DeviceApi } from './helpers/device-api.js';
import { md5 } from './helpers/packages.js';
import { waitFor } from './helpers/wait.js';

// A worker whose busy marker was left by a crash reports its last status again at its next start,
// unless the other worker has recorded a newer command since: /progress then shows that one's
// status, and a report of the older one would be device-api's last word against it. Found by
// test/powercut (a cut just after a success): the next download had set the fetcher's marker and
// cleared the installed package when the power went, before its own record was written; at the
// boot the fetcher found its old record's package gone and reported DOWNLOAD_FAILED after the
// success that /progress still showed.

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const body = Buffer.from('the package the installer installed');
const job = (version: string) => ({
  version,
  package_url: `http://127.0.0.1:9/tope-${version}.zip`,
  package_name: `tope-${version}.zip`,
  package_size: body.length,
  package_md5: md5(body),
});

async function setUp() {
  const deviceApi = await new DeviceApi().start();
  const device = new TestDevice({ TOPE_DEVICE_API_URL: deviceApi.url });
  cleanups.push(
    () => deviceApi.stop(),
    () => device.stop(),
  );
  return { deviceApi, device };
}

/** As if the fetcher had verified `version` under command `seq`: its package and a toInstall record. */
async function seedVerified(device: TestDevice, seq: number, version: string): Promise<string> {
  await fsp.mkdir(device.packagesDir, { recursive: true });
  const packageFile = path.join(device.packagesDir, job(version).package_name);
  await fsp.writeFile(packageFile, body);
  await device.seedFetcher({
    seq,
    job: job(version),
    checkpoint: null,
    verifiedAt: new Date().toISOString(),
    packageFile,
    status: statuses.toInstall(version),
  });
  return packageFile;
}

const markerOf = (stateDir: string) => path.join(stateDir, BUSY_MARKER);

/** The installer's whole record (the gateway's part and its journal, none here). */
const seedInstaller = (device: TestDevice, record: Omit<InstallerState, 'journal'>) =>
  new DurableJson(device.installerStore.file, installerStateSchema).write({ ...record, journal: null });

for (const outcome of ['success', 'failed'] as const) {
  test(`the fetcher killed between a new download's marker and its record, after an install that ended in ${outcome}: at its restart it reports nothing, and offers no missing package`, async () => {
    const { deviceApi, device } = await setUp();
    // the fetcher verified 2.0.0 (command 1), and the installer installed it (command 2)
    const packageFile = await seedVerified(device, 1, '2.0.0');
    const installed =
      outcome === 'success'
        ? statuses.succeeded('Successfully installed version 2.0.0')
        : statuses.failed('DEPLOYMENT_FAILED: a.service did not start', 'Update failed', 60);
    await seedInstaller(device, { seq: 2, version: '2.0.0', status: installed });
    await device.start('api-gateway');
    // the next download, killed at the first durable write's rename: its own record
    device.env.TOPE_FAILPOINT = 'durable.before-rename';
    const [fetcher] = await device.start('fetcher').finally(() => delete device.env.TOPE_FAILPOINT);
    void call(device.base, 'POST', '/api/v1.0/download', job('3.0.0')).catch(() => undefined);
    await fetcher!.exited;
    await device.kill(fetcher!);
    // where the cut fell: the marker up, the installed package cleared, the record still command 1's
    assert.ok(existsSync(markerOf(device.env.TOPE_FETCHER_STATE_DIR)), 'the marker is up');
    assert.ok(!existsSync(packageFile), 'the installed package was cleared for the new download');
    assert.equal((await device.fetcherStore.read())!.seq, 1);
    assert.deepEqual(deviceApi.reports, [], 'the killed download reported nothing');

    // started again, as the path unit starts it when it sees the marker
    const [again] = await device.start('fetcher');
    await waitFor('the marker to go', () => !existsSync(markerOf(device.env.TOPE_FETCHER_STATE_DIR)));
    // the marker goes once the report (if any) is out
    assert.deepEqual(deviceApi.reports, [], 'nothing reported against the status shown');
    assert.deepEqual((await device.progress()).body.data, installed);
    // put right all the same: the record no longer offers the package it lost
    const record = (await device.fetcherStore.read())!;
    assert.equal(record.status.stage, 'failed');
    assert.equal(record.packageFile, null);
    // README's command table: the version just installed, 200 and nothing new; after a failed
    // install, an install again only of a package still verified
    const retry = await call(device.base, 'POST', '/api/v1.0/update', { version: '2.0.0' });
    if (outcome === 'success') assert.equal(retry.body.code, 200);
    else assert.match(retry.body.msg, /^PACKAGE_NOT_FOUND/, 'an install of the lost package is refused at once');
    assert.deepEqual((await device.progress()).body.data, installed, 'and nothing started');
    await again!.waitLog('a newer command was recorded by another worker: not reported again');
  });
}

test("the installer with its marker left and a newer command in the fetcher's record: at its restart it does not report its older status again", async () => {
  const { deviceApi, device } = await setUp();
  await seedInstaller(device, {
    seq: 2,
    version: '2.0.0',
    status: statuses.succeeded('Successfully installed version 2.0.0'),
  });
  // a download accepted while the installer's report was still going out, then verified; then a cut
  await seedVerified(device, 3, '3.0.0');
  await fsp.writeFile(markerOf(device.env.TOPE_INSTALLER_STATE_DIR), '');
  const [installer] = await device.start('installer', 'api-gateway');
  await waitFor('the marker to go', () => !existsSync(markerOf(device.env.TOPE_INSTALLER_STATE_DIR)));
  assert.deepEqual(deviceApi.reports, [], 'no report of the older success');
  await installer!.waitLog('a newer command was recorded by another worker: not reported again');
  assert.equal((await device.progress()).body.data.stage, 'toInstall');
});

test('with no newer command elsewhere, a worker whose marker was left reports its last status again (as before)', async () => {
  const { deviceApi, device } = await setUp();
  const installed = statuses.succeeded('Successfully installed version 2.0.0');
  await seedInstaller(device, { seq: 2, version: '2.0.0', status: installed });
  await fsp.writeFile(markerOf(device.env.TOPE_INSTALLER_STATE_DIR), '');
  await device.start('installer');
  await waitFor('the report', () => deviceApi.reports.length === 1);
  assert.deepEqual(deviceApi.reports, [installed]);
  await waitFor('the marker to go', () => !existsSync(markerOf(device.env.TOPE_INSTALLER_STATE_DIR)));
});
