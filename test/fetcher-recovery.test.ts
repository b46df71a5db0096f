import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterEach, test } from 'node:test';
import { BUSY_MARKER } from '../shared/busy-marker.js';
import { previousGeneration } from '../shared/state-names.js';
import { FETCHER_RECORD, type FetcherRecord } from '../shared/worker-records.js';
import { call } from './helpers/api.js';
import { TestDevice } from './helpers/device.js';
import { DeviceApi } from './helpers/device-api.js';
import { Origin } from './helpers/origin.js';
import { waitFor } from './helpers/wait.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function setUp(size: number) {
  const origin = await new Origin(size).start();
  const deviceApi = await new DeviceApi().start();
  const device = new TestDevice({ TOPE_DEVICE_API_URL: deviceApi.url });
  const bootIdFile = path.join(device.root, 'boot_id');
  await fsp.writeFile(bootIdFile, 'boot-1\n');
  device.env.TOPE_BOOT_ID_FILE = bootIdFile;
  cleanups.push(
    () => origin.stop(),
    () => deviceApi.stop(),
    () => device.stop(),
  );
  const job = {
    version: '2.0.0',
    package_url: origin.url(),
    package_name: 'p.zip',
    package_size: size,
    package_md5: origin.md5,
  };
  return { origin, deviceApi, device, job, bootIdFile };
}

async function killMidDownload(device: TestDevice, origin: Origin, job: object) {
  origin.script(() => ({ kind: 'serve', throttle: { bytes: 16_384, everyMs: 10 } }));
  const [fetcher] = await device.start('fetcher', 'api-gateway');
  assert.equal((await call(device.base, 'POST', '/api/v1.0/download', job)).body.code, 200);
  const rec = await waitFor('a checkpoint past 30 %', async () => {
    const r = await device.fetcherStore.read();
    return r?.checkpoint && r.status.progress >= 30 ? r : null;
  });
  await device.kill(fetcher);
  assert.ok(
    await fsp.stat(path.join(device.env.TOPE_FETCHER_STATE_DIR, BUSY_MARKER)).then(
      () => true,
      () => false,
    ),
    'the marker for the resume path unit is there',
  );
  return rec;
}

test('fetcher killed with SIGKILL mid-download resumes at restart from at least the persisted offset, no API call', async () => {
  const { origin, device, job } = await setUp(1_000_000);
  const persisted = await killMidDownload(device, origin, job);
  const requestsBefore = origin.requests.length;
  origin.script(() => ({ kind: 'serve' }));
  await device.start('fetcher');
  await device.waitStage('toInstall');
  const resumed = origin.requests[requestsBefore];
  const from = Number(/^bytes=(\d+)-$/.exec(resumed.range ?? '')?.[1]);
  assert.ok(from >= persisted.checkpoint!.offset, `resumed from ${from}, persisted ${persisted.checkpoint!.offset}`);
  assert.equal(resumed.ifRange, origin.etag);
  assert.ok((await fsp.readFile(path.join(device.packagesDir, 'p.zip'))).equals(origin.body));
  // the record says toInstall before its report is out; the marker goes after the report
  await waitFor(
    'no marker once verified and reported',
    async () => !(await fsp.readdir(device.env.TOPE_FETCHER_STATE_DIR)).includes(BUSY_MARKER),
  );
});

test('after a reboot only the checkpointed bytes are trusted: the unsynced tail is cut off', async () => {
  const { origin, device, job, bootIdFile } = await setUp(1_000_000);
  const persisted = await killMidDownload(device, origin, job);
  const rec = (await device.fetcherStore.read())!;
  // what a power cut can leave: bytes past the checkpoint that never reached the disk intact
  await fsp.appendFile(path.join(device.packagesDir, 'p.zip.part'), Buffer.alloc(50_000, 0xee));
  await fsp.writeFile(bootIdFile, 'boot-2\n');
  const requestsBefore = origin.requests.length;
  origin.script(() => ({ kind: 'serve' }));
  await device.start('fetcher');
  await device.waitStage('toInstall');
  assert.ok(rec.checkpoint!.offset >= persisted.checkpoint!.offset);
  assert.equal(origin.requests[requestsBefore].range, `bytes=${rec.checkpoint!.offset}-`);
  assert.ok((await fsp.readFile(path.join(device.packagesDir, 'p.zip'))).equals(origin.body));
});

const seeded = (job: FetcherRecord['job'], over: Partial<FetcherRecord>): FetcherRecord => ({
  seq: 3,
  job,
  checkpoint: null,
  verifiedAt: null,
  packageFile: null,
  status: { stage: 'idle', progress: 0, message: '', error: null },
  ...over,
});

test('recovery: verifying re-verifies the file at start, good or bad', async () => {
  const { origin, device, deviceApi, job } = await setUp(100_000);
  await fsp.mkdir(device.packagesDir, { recursive: true });
  await fsp.writeFile(path.join(device.packagesDir, 'p.zip.part'), origin.body);
  await device.seedFetcher(
    seeded(job, {
      status: { stage: 'verifying', progress: 0, message: 'Verifying package integrity...', error: null },
      checkpoint: { offset: 100_000, etag: origin.etag, lastModified: null, bootId: 'boot-1' },
    }),
  );
  await device.start('fetcher', 'api-gateway');
  await device.waitStage('toInstall');
  assert.equal(origin.requests.length, 0, 'nothing fetched again');
  await waitFor('the recovery reported', () => deviceApi.reports.at(-1)?.stage === 'toInstall');
  await device.stop();

  await fsp.rm(path.join(device.packagesDir, 'p.zip'));
  await fsp.writeFile(path.join(device.packagesDir, 'p.zip.part'), Buffer.alloc(100_000, 1));
  await device.seedFetcher(
    seeded(job, {
      status: { stage: 'verifying', progress: 0, message: 'Verifying package integrity...', error: null },
      checkpoint: { offset: 100_000, etag: origin.etag, lastModified: null, bootId: 'boot-1' },
    }),
  );
  await device.start('fetcher', 'api-gateway');
  const failed = await device.waitStage('failed');
  assert.match(failed.data.error, /^MD5_MISMATCH/);
});

test('recovery: a crash between the rename and the toInstall record still ends verified', async () => {
  const { origin, device, job } = await setUp(10_000);
  await fsp.mkdir(device.packagesDir, { recursive: true });
  await fsp.writeFile(path.join(device.packagesDir, 'p.zip'), origin.body);
  await device.seedFetcher(
    seeded(job, {
      status: { stage: 'verifying', progress: 0, message: 'Verifying package integrity...', error: null },
      checkpoint: { offset: 10_000, etag: origin.etag, lastModified: null, bootId: 'boot-1' },
    }),
  );
  await device.start('fetcher', 'api-gateway');
  await device.waitStage('toInstall');
  assert.deepEqual(await fsp.readdir(device.packagesDir), ['p.zip']);
});

test('recovery: toInstall stays; expired it is deleted; missing it fails; failed stays failed; strays go', async () => {
  const { origin, device, deviceApi, job } = await setUp(10_000);
  const pkg = path.join(device.packagesDir, 'p.zip');
  await fsp.mkdir(device.packagesDir, { recursive: true });
  await fsp.writeFile(pkg, origin.body);
  await fsp.writeFile(path.join(device.packagesDir, 'old-1.0.0.zip.part'), 'stale');
  await fsp.writeFile(path.join(device.env.TOPE_FETCHER_STATE_DIR, `${FETCHER_RECORD}.tmp-99-1`), 'torn');
  const ready = { stage: 'toInstall' as const, progress: 100, message: 'Package ready to install: 2.0.0', error: null };
  await device.seedFetcher(seeded(job, { status: ready, verifiedAt: new Date().toISOString(), packageFile: pkg }));
  await device.start('fetcher', 'api-gateway');
  assert.equal((await device.progress()).body.data.stage, 'toInstall');
  assert.deepEqual(await fsp.readdir(device.packagesDir), ['p.zip']);
  assert.ok(!(await fsp.readdir(device.env.TOPE_FETCHER_STATE_DIR)).some((n) => n.includes('.tmp-')));
  await device.stop();

  await device.seedFetcher(
    seeded(job, { status: ready, verifiedAt: new Date(Date.now() - 25 * 3600_000).toISOString(), packageFile: pkg }),
  );
  await device.start('fetcher', 'api-gateway');
  const idle = await device.waitStage('idle');
  assert.match(idle.data.message, /expired/);
  assert.deepEqual(await fsp.readdir(device.packagesDir), []);
  await waitFor('the clean-up reported', () => deviceApi.reports.at(-1)?.stage === 'idle');
  await device.stop();

  await device.seedFetcher(seeded(job, { status: ready, verifiedAt: new Date().toISOString(), packageFile: pkg }));
  await device.start('fetcher', 'api-gateway');
  const missing = await device.waitStage('failed');
  assert.match(missing.data.error, /^DOWNLOAD_FAILED: the verified package is missing/);
  await device.stop();

  await device.start('fetcher', 'api-gateway');
  assert.equal((await device.progress()).body.data.stage, 'failed');
});

test('recovery: a torn download.json falls back to the previous generation', async () => {
  const { origin, device, job } = await setUp(10_000);
  const pkg = path.join(device.packagesDir, 'p.zip');
  await fsp.mkdir(device.packagesDir, { recursive: true });
  await fsp.writeFile(pkg, origin.body);
  await device.seedFetcher(
    seeded(job, {
      status: { stage: 'toInstall', progress: 100, message: 'Package ready to install: 2.0.0', error: null },
      verifiedAt: new Date().toISOString(),
      packageFile: pkg,
    }),
  );
  await fsp.copyFile(
    path.join(device.env.TOPE_FETCHER_STATE_DIR, FETCHER_RECORD),
    path.join(device.env.TOPE_FETCHER_STATE_DIR, previousGeneration(FETCHER_RECORD)),
  );
  await fsp.writeFile(path.join(device.env.TOPE_FETCHER_STATE_DIR, FETCHER_RECORD), '{"seq":4,"status":{"sta');
  await device.start('fetcher', 'api-gateway');
  assert.equal((await device.progress()).body.data.stage, 'toInstall');
});
