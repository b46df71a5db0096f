import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { StatusView } from '../services/api-gateway/status-view.js';
import { DurableJson } from '../shared/durable-store.js';
import * as statuses from '../shared/status.js';
import type { FetcherRecord, InstallerRecord } from '../shared/worker-records.js';
import { workerNames, workers, type WorkerName } from '../shared/workers.js';
import { tempDir } from './helpers/temp-dir.js';

// The gateway's view over real record files in a temp directory: the record with the higher
// command sequence number is shown; on a tie, the worker listed first.

function setUp() {
  const dir = tempDir('status-view-');
  const paths = Object.fromEntries(workerNames.map((name) => [name, path.join(dir, workers[name].recordFile)]));
  const recordPaths = paths as Record<WorkerName, string>;
  const fetcher = new DurableJson(recordPaths.fetcher, workers.fetcher.recordSchema);
  const installer = new DurableJson(recordPaths.installer, workers.installer.recordSchema);
  return { view: new StatusView(recordPaths), fetcher, installer };
}

const fetcherRecord = (seq: number): FetcherRecord => ({
  seq,
  status: statuses.verifying(),
  job: null,
  checkpoint: null,
  verifiedAt: null,
  packageFile: null,
});
const installerRecord = (seq: number): InstallerRecord => ({
  seq,
  version: '1.0.0',
  status: statuses.installing(5, 'x'),
});

test('no record: idle, sequence 0, no worker active', async () => {
  const { view } = setUp();
  assert.deepEqual(await view.read(), {
    seq: 0,
    status: statuses.idle(),
    active: null,
    records: { fetcher: null, installer: null },
  });
});

test('the higher sequence number wins, whichever worker holds it', async () => {
  const { view, fetcher, installer } = setUp();
  await fetcher.write(fetcherRecord(3));
  await installer.write(installerRecord(2));
  const before = await view.read();
  assert.deepEqual([before.seq, before.status, before.active], [3, statuses.verifying(), 'fetcher']);
  await installer.write(installerRecord(4));
  const read = await view.read();
  assert.equal(read.active, 'installer');
  assert.equal(read.seq, 4);
  assert.deepEqual(read.status, statuses.installing(5, 'x'));
  assert.deepEqual(read.records, { fetcher: fetcherRecord(3), installer: installerRecord(4) });
});

test('one record alone is shown; on equal numbers the worker listed first (the fetcher) is', async () => {
  const { view, fetcher, installer } = setUp();
  await installer.write(installerRecord(0));
  assert.equal((await view.read()).active, 'installer');
  await fetcher.write(fetcherRecord(0));
  assert.equal(workerNames[0], 'fetcher');
  assert.equal((await view.read()).active, 'fetcher');
});

test('a record is read again only once its file changed: /progress does not parse and validate an unchanged one', async (t) => {
  const { view, fetcher, installer } = setUp();
  await fetcher.write(fetcherRecord(1));
  await installer.write(installerRecord(2));
  const reads = t.mock.method(fsp, 'readFile');
  const recordReads = () =>
    reads.mock.calls.filter((c) => String(c.arguments[0]).startsWith(path.dirname(fetcher.file))).length;
  const first = await view.read();
  assert.equal(recordReads(), 2);
  assert.deepEqual(await view.read(), first);
  assert.equal(recordReads(), 2, 'nothing changed: no file read');
  // the same size and the same status: only the file's identity says it is new
  await installer.write(installerRecord(3));
  const after = await view.read();
  assert.equal(recordReads(), 3, "the installer's record alone is read again");
  assert.equal(after.seq, 3);
  assert.deepEqual(after.records.fetcher, fetcherRecord(1));
  await fsp.rm(installer.file);
  await fsp.rm(installer.prevPath);
  assert.equal((await view.read()).records.installer, null, 'a removed record is gone from the view');
});

test('a worker without a record costs a stat per poll, no read; its `.prev` alone is read once and shown', async (t) => {
  const { view, fetcher, installer } = setUp();
  await fetcher.write(fetcherRecord(1));
  const reads = t.mock.method(fsp, 'readFile');
  const installerReads = () => reads.mock.calls.filter((c) => String(c.arguments[0]).startsWith(installer.file)).length;
  await view.read();
  const first = installerReads();
  await view.read();
  await view.read();
  assert.equal(installerReads(), first, 'no installer record, and nothing changed: no open of either file');
  // a write cut between the rotation and the new file leaves only `.prev`: that is the record
  await installer.write(installerRecord(2));
  await fsp.rename(installer.file, installer.prevPath);
  assert.deepEqual((await view.read()).records.installer, installerRecord(2));
  const afterPrev = installerReads();
  assert.deepEqual((await view.read()).records.installer, installerRecord(2));
  assert.equal(installerReads(), afterPrev, 'the same `.prev`: not read again');
  await fsp.rm(installer.prevPath);
  assert.equal((await view.read()).records.installer, null, 'a removed `.prev` is gone from the view');
});
