import assert from 'node:assert/strict';
import { mkdtempSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { z } from 'zod';
import { DurableJson, sweepTemps, writeFileDurable } from '../shared/durable-store.js';

const schema = z.object({ n: z.number() });
const dir = () => mkdtempSync(path.join(os.tmpdir(), 'store-'));

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
