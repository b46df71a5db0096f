import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { z } from 'zod';
import { installerStateSchema, type InstallerState, type Journal } from '../services/installer/journal.js';
import { DurableJson, sweepTemps, writeFileDurable } from '../shared/durable-store.js';
import { tempDir } from './helpers/temp-dir.js';

const schema = z.object({ n: z.number() });
const dir = () => tempDir('store-');

test('a written record reads back, and the previous one is kept as .prev', async () => {
  const d = dir();
  const store = new DurableJson(path.join(d, 's.json'), schema);
  assert.equal(await store.read(), null);
  await store.write({ n: 1 });
  await store.write({ n: 2 });
  assert.deepEqual(await store.read(), { n: 2 });
  assert.deepEqual(JSON.parse(await fsp.readFile(path.join(d, 's.json.prev'), 'utf8')), { n: 1 });
});

test('a torn or invalid file falls back to the previous good generation', async () => {
  const d = dir();
  const file = path.join(d, 's.json');
  const store = new DurableJson(file, schema);
  await store.write({ n: 1 });
  await store.write({ n: 2 });
  await fsp.writeFile(file, '{"n": 3'); // torn
  assert.deepEqual(await store.read(), { n: 1 });
  await fsp.writeFile(file, '{"n": "three"}'); // parses, fails the schema
  assert.deepEqual(await store.read(), { n: 1 });
  await fsp.rm(file); // crash between the two renames of a write
  assert.deepEqual(await store.read(), { n: 1 });
  await fsp.writeFile(`${file}.prev`, 'garbage');
  assert.equal(await store.read(), null);
});

test('an invalid value is never written', async () => {
  const d = dir();
  const store = new DurableJson(path.join(d, 's.json'), schema);
  await store.write({ n: 1 });
  assert.throws(() => store.write({ n: 'x' } as never));
  assert.deepEqual(await store.read(), { n: 1 });
});

test('concurrent writes are applied in order', async () => {
  const store = new DurableJson(path.join(dir(), 's.json'), schema);
  await Promise.all(Array.from({ length: 20 }, (_, i) => store.write({ n: i })));
  assert.deepEqual(await store.read(), { n: 19 });
});

test('remove deletes both generations; temps left by a crash are swept', async () => {
  const d = dir();
  const store = new DurableJson(path.join(d, 's.json'), schema);
  await store.write({ n: 1 });
  await store.write({ n: 2 });
  await store.remove();
  assert.equal(await store.read(), null);
  await writeFileDurable(path.join(d, 'x'), 'data');
  await fsp.writeFile(path.join(d, 's.json.tmp-123-4'), 'half');
  assert.deepEqual(await sweepTemps(d), ['s.json.tmp-123-4']);
  assert.deepEqual((await fsp.readdir(d)).sort(), ['x']);
  assert.deepEqual(await sweepTemps(path.join(d, 'missing')), []);
});

test('install.json cut at every byte length (a journal with a missing tail) reads as the previous generation, never as a mix', async () => {
  const d = dir();
  const file = path.join(d, 'install.json');
  const store = new DurableJson(file, installerStateSchema);
  const journal = (phase: Journal['phase']): Journal => ({
    phase,
    version: '2.0.0',
    targetDir: '/opt/tope/versions/v2.0.0',
    stagingDir: '/opt/tope/versions/.staging-v2.0.0',
    fromDir: '/opt/tope/versions/v1.0.0',
    previousBefore: null,
    units: ['a.service', 'b.service'],
    backups: [{ dst: '/etc/tope/c.conf', backup: '/var/lib/tope-updater/installer/work/backup-0' }],
    error: null,
    recoveryAttempts: 0,
    securityVersion: 0,
  });
  const older: InstallerState = {
    seq: 3,
    version: '2.0.0',
    status: { stage: 'installing', progress: 40, message: 'Installing module a (1/2)', error: null },
    journal: journal('staging'),
  };
  const newer: InstallerState = {
    ...older,
    status: { ...older.status, progress: 60, message: 'Stopping services...' },
    journal: journal('stopping'),
  };
  await store.write(older);
  await store.write(newer);
  const full = await fsp.readFile(file);
  let fellBack = 0;
  for (let length = 0; length < full.length; length++) {
    await fsp.writeFile(file, full.subarray(0, length));
    const read = await store.read();
    // only the trailing newline may go and leave the newer generation whole
    if (length === full.length - 1) assert.deepEqual(read, newer);
    else {
      assert.deepEqual(read, older, `cut at ${length} of ${full.length} bytes`);
      fellBack++;
    }
  }
  assert.equal(fellBack, full.length - 1);
  // and a cut that lost the rename of the new generation: .prev alone is read
  await fsp.rm(file);
  assert.deepEqual(await store.read(), older);
});
