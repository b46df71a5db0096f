import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BoundedWork, FILE_WORK_WIDTH, forEachBounded, withBoundedWork } from '../services/installer/bounded-work.js';

// The installer's file operations a few at a time (the staging of a package's files, the hard-link
// copy of the running snapshot, the fsyncs): never more than the width at once, a large file
// alone, and nothing left running when a failure is thrown, since the caller's undo follows.

/** A task the test ends by hand, and what it saw. */
function gate() {
  let open!: () => void;
  let fail!: (e: Error) => void;
  const opened = new Promise<void>((resolve, reject) => {
    open = resolve;
    fail = reject;
  });
  return { opened, open, fail };
}

/** Tasks that count how many run at once. */
function counter() {
  const state = { running: 0, most: 0, ended: 0 };
  const task = (gateOf: Promise<void>) => async () => {
    state.running++;
    state.most = Math.max(state.most, state.running);
    try {
      await gateOf;
    } finally {
      state.running--;
      state.ended++;
    }
  };
  return { state, task };
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

test('never more than the width at once, and every task runs', async () => {
  const { state, task } = counter();
  const items = Array.from({ length: 50 }, (_, i) => i);
  await forEachBounded(items, (i) => task(new Promise((resolve) => setTimeout(resolve, i % 3)))(), 4);
  assert.equal(state.ended, 50);
  assert.equal(state.most, 4);
  // the installer's own width keeps the thread pool's four busy with one queued behind each
  assert.ok(FILE_WORK_WIDTH > 4);
});

test('a task started alone waits for those running, and none starts beside it', async () => {
  const { state, task } = counter();
  const work = new BoundedWork(4);
  const gates = [gate(), gate(), gate()];
  for (const g of gates.slice(0, 2)) await work.start(task(g.opened));
  assert.equal(state.running, 2);
  let aloneStarted = false;
  const alone = work.start(
    async () => {
      aloneStarted = true;
      assert.equal(state.running, 0, 'the others ended first');
      await gates[2]!.opened;
    },
    { alone: true },
  );
  await tick();
  assert.equal(aloneStarted, false, 'not while two run');
  gates[0]!.open();
  gates[1]!.open();
  await tick();
  assert.equal(aloneStarted, true);
  let aloneReturned = false;
  void alone.then(() => (aloneReturned = true));
  let nextStarted = false;
  const next = alone.then(() => work.start(async () => void (nextStarted = true)));
  await tick();
  assert.equal(aloneReturned, false, 'start(alone) returns once the task has ended');
  assert.equal(nextStarted, false);
  gates[2]!.open();
  await next;
  await work.done();
  assert.equal(nextStarted, true);
});

test('a failure is thrown once every task under way has ended, and nothing starts after it', async () => {
  const { state, task } = counter();
  const work = new BoundedWork(3);
  const slow = gate();
  await work.start(task(slow.opened));
  await work.start(async () => {
    throw new Error('disk full');
  });
  await tick();
  let thrownWhile: number | null = null;
  const started = work.start(task(Promise.resolve())).catch((e: Error) => {
    thrownWhile = state.running;
    throw e;
  });
  await tick();
  assert.equal(thrownWhile, null, 'not while the slow task still runs');
  slow.open();
  await assert.rejects(started, /disk full/);
  assert.equal(thrownWhile, 0);
  assert.equal(state.ended, 1, 'the task offered after the failure never ran');
  await assert.rejects(work.done(), /disk full/);
});

test('of two failures, the task started first is thrown, whichever failed first: the same error as one at a time', async () => {
  const earlier = gate();
  const outcome = forEachBounded([0, 1], async (i) => {
    if (i === 0) {
      await earlier.opened.catch(() => undefined);
      throw new Error('destination 0 refused');
    }
    throw new Error('destination 1 refused');
  });
  await tick(); // the second has failed by now; the first still runs
  earlier.open();
  await assert.rejects(outcome, /destination 0 refused/);
});

test('the body failing while tasks run: thrown after they end, the body first', async () => {
  const slow = gate();
  let slowEnded = false;
  const outcome = withBoundedWork(async (work) => {
    await work.start(async () => {
      await slow.opened.catch(() => undefined);
      slowEnded = true;
    });
    await work.start(async () => {
      throw new Error('a task failed');
    });
    throw new Error('the body failed');
  });
  let settled = false;
  void outcome.catch(() => (settled = true));
  await tick();
  assert.equal(settled, false, 'not while a task runs');
  slow.fail(new Error('cut'));
  await assert.rejects(outcome, /the body failed/);
  assert.equal(slowEnded, true);
});
