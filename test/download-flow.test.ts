import { sendCommand } from '../shared/protocol.js';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterEach, test } from 'node:test';
import { call } from './helpers/api.js';
import { TestDevice } from './helpers/device.js';
import { DeviceApi } from './helpers/device-api.js';
import { Origin } from './helpers/origin.js';
import { waitFor } from './helpers/wait.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function setUp(size: number, env: Record<string, string> = {}) {
  const origin = await new Origin(size).start();
  const deviceApi = await new DeviceApi().start();
  const device = new TestDevice({ TOPE_DEVICE_API_URL: deviceApi.url, ...env });
  cleanups.push(
    () => origin.stop(),
    () => deviceApi.stop(),
    () => device.stop(),
  );
  await device.start('fetcher', 'api-gateway');
  const request = (over: Record<string, unknown> = {}) => ({
    version: '1.2.3',
    package_url: origin.url(),
    package_name: 'tope-1.2.3.zip',
    package_size: size,
    package_md5: origin.md5,
    ...over,
  });
  return { origin, deviceApi, device, request };
}

test('download: accepted, stage changed before the reply, reports every 5 % step, ends in toInstall', async () => {
  const { origin, deviceApi, device, request } = await setUp(2_000_000);
  // 5 % per 120 ms: slow enough that no report has to be coalesced, even on a loaded machine
  origin.script(() => ({ kind: 'serve', throttle: { bytes: 100_000, everyMs: 120 } }));
  const r = await call(device.base, 'POST', '/api/v1.0/download', request({ package_sha256: origin.sha256 }));
  assert.deepEqual(r, { http: 200, body: { code: 200, msg: 'success', data: null } });
  const during = await device.progress();
  assert.ok(
    ['downloading', 'verifying', 'toInstall'].includes(during.body.data.stage),
    'the stage changed before the 200',
  );

  const done = await device.waitStage('toInstall');
  assert.deepEqual(done, {
    code: 200,
    msg: 'success',
    stage: null,
    progress: null,
    data: { stage: 'toInstall', progress: 100, message: 'Package ready to install: 1.2.3', error: null },
  });
  await waitFor('final report', () => deviceApi.reports.at(-1)?.stage === 'toInstall');
  const downloading = deviceApi.reports.filter((x) => x.stage === 'downloading');
  assert.equal(downloading[0].progress, 0);
  assert.ok(downloading.length >= 19, `a report per 5 % step, got ${downloading.length}`);
  assert.ok(downloading.every((x, i) => i === 0 || x.progress > downloading[i - 1].progress));
  assert.ok(
    downloading.every((x, i) => i === 0 || Math.floor(x.progress / 5) > Math.floor(downloading[i - 1].progress / 5)),
    'one report per 5 % step crossed',
  );
  assert.match(downloading.at(-1)!.message, /^Downloading version 1\.2\.3\.\.\. \d+\.\d MB \/ 2\.0 MB$/);
  assert.deepEqual(deviceApi.stages().slice(-2), ['verifying', 'toInstall']);

  const rec = await device.fetcherStore.read();
  assert.ok(rec?.verifiedAt && Date.now() - Date.parse(rec.verifiedAt) < 60_000, 'verified_at persisted');
  const pkg = await fsp.readFile(path.join(device.packagesDir, 'tope-1.2.3.zip'));
  assert.ok(pkg.equals(origin.body));
  assert.deepEqual(await fsp.readdir(device.packagesDir), ['tope-1.2.3.zip']);
});

test('repeats while running and after verification answer 200 and start nothing; another package is 409 while busy', async () => {
  const { origin, device, request } = await setUp(400_000);
  origin.script(() => ({ kind: 'serve', throttle: { bytes: 20_000, everyMs: 20 } }));
  assert.equal((await call(device.base, 'POST', '/api/v1.0/download', request())).body.code, 200);
  const again = await call(device.base, 'POST', '/api/v1.0/download', request());
  assert.equal(again.body.code, 200);
  const other = await call(device.base, 'POST', '/api/v1.0/download', request({ version: '1.2.4' }));
  assert.equal(other.body.code, 409);
  assert.match(other.body.msg, /^OPERATION_IN_PROGRESS: Operation already in progress: (downloading|verifying)$/);
  assert.equal(other.body.stage, 'downloading');
  assert.equal(typeof other.body.progress, 'number');
  await device.waitStage('toInstall');
  assert.equal(origin.requests.length, 1);
  assert.equal((await call(device.base, 'POST', '/api/v1.0/download', request())).body.code, 200);
  assert.equal(origin.requests.length, 1, 'the verified package is not fetched again');

  // a new package replaces the verified one
  origin.script(() => ({ kind: 'serve' }));
  assert.equal(
    (
      await call(
        device.base,
        'POST',
        '/api/v1.0/download',
        request({ version: '1.2.4', package_name: 'tope-1.2.4.zip' }),
      )
    ).body.code,
    200,
  );
  await waitFor(
    '1.2.4 verified',
    async () => (await device.progress()).body.data.message === 'Package ready to install: 1.2.4',
  );
  assert.deepEqual(await fsp.readdir(device.packagesDir), ['tope-1.2.4.zip']);
});

test('two concurrent download commands: exactly one 200 and one 409', async () => {
  const { origin, device, request } = await setUp(300_000);
  origin.script(() => ({ kind: 'serve', throttle: { bytes: 10_000, everyMs: 10 } }));
  const results = await Promise.all([
    call(device.base, 'POST', '/api/v1.0/download', request()),
    call(device.base, 'POST', '/api/v1.0/download', request({ version: '9.9.9' })),
  ]);
  assert.deepEqual(results.map((r) => r.body.code).sort(), [200, 409]);
  await device.waitStage('toInstall');
  assert.equal(origin.requests.length, 1);
});

test('a wrong MD5 fails the download, removes the file, and /progress answers code 500', async () => {
  const { device, deviceApi, request } = await setUp(100_000);
  await call(device.base, 'POST', '/api/v1.0/download', request({ package_md5: 'f'.repeat(32) }));
  const failed = await device.waitStage('failed');
  assert.equal(failed.code, 500);
  assert.match(failed.msg, /^Update failed: MD5_MISMATCH: expected f{32}; the package's MD5 differs$/);
  assert.equal(failed.stage, 'failed');
  assert.equal(failed.data.progress, 100);
  assert.equal(failed.data.message, 'MD5 verification failed');
  assert.deepEqual(await fsp.readdir(device.packagesDir), []);
  await waitFor('failure reported', () => deviceApi.reports.at(-1)?.stage === 'failed');
});

test('a wrong SHA-256 fails the download with SHA256_MISMATCH', async () => {
  const { device, request } = await setUp(50_000);
  await call(device.base, 'POST', '/api/v1.0/download', request({ package_sha256: '0'.repeat(64) }));
  const failed = await device.waitStage('failed');
  assert.match(failed.data.error, /^SHA256_MISMATCH: expected 0{64}; the package's SHA-256 differs$/);
});

test('a size that does not match the server is PACKAGE_SIZE_MISMATCH, with nothing left on disk', async () => {
  const { device, request } = await setUp(50_000);
  await call(device.base, 'POST', '/api/v1.0/download', request({ package_size: 50_001 }));
  const failed = await device.waitStage('failed');
  assert.equal(failed.data.message, 'Download validation failed');
  assert.match(failed.data.error, /^PACKAGE_SIZE_MISMATCH: expected 50001 bytes/);
  assert.deepEqual(await fsp.readdir(device.packagesDir), []);
});

test('a failed download keeps its partial file, and the same request resumes it with Range', async () => {
  const { origin, device, deviceApi, request } = await setUp(300_000, { TOPE_RETRY_ATTEMPTS: '1' });
  origin.sequence({ kind: 'cut', after: 100_000 }, { kind: 'status', code: 503 }, { kind: 'status', code: 503 });
  await call(device.base, 'POST', '/api/v1.0/download', request());
  const failed = await device.waitStage('failed');
  assert.match(failed.data.error, /^DOWNLOAD_FAILED: HTTP 503 \(gave up after 2 attempts\)$/);
  assert.ok(
    failed.data.progress >= 20,
    `the progress reached is kept, not the starting value: ${JSON.stringify(failed.data)}`,
  );
  await waitFor('failure reported', () => deviceApi.reports.at(-1)?.stage === 'failed');
  const kept = (await device.fetcherStore.read())!.checkpoint!;
  assert.ok(kept.offset > 0);
  assert.equal((await call(device.base, 'POST', '/api/v1.0/download', request())).body.code, 200);
  await device.waitStage('toInstall');
  assert.equal(origin.requests.length, 4);
  assert.match(origin.requests[3].range ?? '', /^bytes=\d+-$/);
  assert.ok(Number(/\d+/.exec(origin.requests[3].range!)![0]) >= kept.offset);
});

test('not enough free space: DISK_FULL before the first byte', async () => {
  const { origin, device, request } = await setUp(10_000, { TOPE_DISK_RESERVE_BYTES: String(2 ** 52) });
  await call(device.base, 'POST', '/api/v1.0/download', request());
  const failed = await device.waitStage('failed');
  assert.match(failed.data.error, /^DISK_FULL: \d+ bytes needed, \d+ free$/);
  assert.equal(origin.requests.length, 0);
  assert.deepEqual(await fsp.readdir(device.packagesDir), []);
});

test('a device-api that never answers does not hold the download back', async () => {
  const { origin, device, deviceApi, request } = await setUp(1_000_000);
  deviceApi.hang = true;
  origin.script(() => ({ kind: 'serve', throttle: { bytes: 50_000, everyMs: 5 } }));
  await call(device.base, 'POST', '/api/v1.0/download', request());
  await device.waitStage('toInstall');
  // 20 steps at a 500 ms post deadline each would take 10 s in line; coalescing sent far fewer
  assert.ok(deviceApi.reports.length < 10, `reports sent while the download ran: ${deviceApi.reports.length}`);
  await waitFor(
    'the final state still reaches device-api',
    () => deviceApi.reports.at(-1)?.stage === 'toInstall',
    5000,
  );
});

test('a new download sent the moment /progress says toInstall is accepted, even while the last report is still going out', async () => {
  const { origin, device, deviceApi, request } = await setUp(100_000);
  deviceApi.hang = true; // each report takes its whole deadline: the fetcher is still busy reporting
  await call(device.base, 'POST', '/api/v1.0/download', request());
  await device.waitStage('toInstall');
  const other = { ...request({ version: '1.2.4', package_name: 'tope-1.2.4.zip' }) };
  const r = await call(device.base, 'POST', '/api/v1.0/download', other);
  assert.equal(r.body.code, 200, JSON.stringify(r.body));
  assert.equal((await device.waitStage('toInstall')).data.message, 'Package ready to install: 1.2.4');
  assert.equal(origin.requests.length, 2);
});

test('the same download command arriving several times at once (a gateway retrying a slow-starting fetcher) runs one download', async () => {
  const { origin, device, request } = await setUp(300_000);
  origin.script(() => ({ kind: 'serve', throttle: { bytes: 10_000, everyMs: 10 } }));
  const job = request();
  const replies = await Promise.all(
    Array.from({ length: 4 }, () => sendCommand(device.env.TOPE_FETCHER_SOCKET, { type: 'download', seq: 3, job })),
  );
  assert.deepEqual(replies, Array(4).fill({ ok: true }));
  await device.waitStage('toInstall');
  assert.equal(origin.requests.length, 1, 'one download, one request');
});
