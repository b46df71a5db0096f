import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NewestWrite } from '../services/installer/newest-write.js';

/** A write that stays under way until released, recording what it was given. */
function heldWrites() {
  const written: number[] = [];
  const releases: Array<(error?: Error) => void> = [];
  const write = (value: number) =>
    new Promise<void>((resolve, reject) => {
      written.push(value);
      releases.push((error) => (error ? reject(error) : resolve()));
    });
  return { written, releases, write };
}

/** Lets the pending promise callbacks run (a chain of awaits), without waiting on time. */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

test('figures offered while a write runs wait, the newest one only, and the offer never waits', async () => {
  const { written, releases, write } = heldWrites();
  const record = new NewestWrite(write);
  record.offer(10);
  record.offer(11);
  record.offer(12);
  record.offer(13);
  // the first write is under way and held: the rest are one waiting figure, the newest
  assert.deepEqual(written, [10]);
  releases[0]();
  await turn();
  assert.deepEqual(written, [10, 13]);
  let settled = false;
  const done = record.settled().then(() => (settled = true));
  await turn();
  assert.equal(settled, false, 'settled() waits for the write under way');
  releases[1]();
  await done;
  assert.deepEqual(written, [10, 13]);
  // idle again: the next figure starts a write at once
  record.offer(14);
  assert.deepEqual(written, [10, 13, 14]);
  releases[2]();
  await record.settled();
});

test('a failed write: the next offer throws it, the figure waiting is not written, settled() throws it', async () => {
  const { written, releases, write } = heldWrites();
  const record = new NewestWrite(write);
  record.offer(1);
  record.offer(2);
  releases[0](new Error('ENOSPC: no space left on device'));
  await assert.rejects(record.settled(), /ENOSPC/);
  assert.deepEqual(written, [1], 'nothing written after a failure');
  assert.throws(() => record.offer(3), /ENOSPC/);
  assert.deepEqual(written, [1]);
});
