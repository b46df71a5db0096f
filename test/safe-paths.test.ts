import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { mock, test } from 'node:test';
import { checkDestination, type FinalComponent, type SeenDirectories } from '../services/installer/safe-paths.js';
import { UpdaterError } from '../shared/errors.js';
import { tempDir } from './helpers/temp-dir.js';

// One pass over an install's destinations (the staging tree, the look before anything changes)
// looks at each directory once; what it has not found to be a directory it looks at every time.
// The whole installs through symlinks are installer-confinement.test.ts's.

async function tree(): Promise<string> {
  const root = tempDir('tope-safe-paths-');
  await fsp.mkdir(path.join(root, 'usr/share/printer'), { recursive: true });
  return root;
}

/** Counts fsp.lstat's calls during `run`; the product's module calls it through the same object. */
async function countLstats(run: () => Promise<void>): Promise<number> {
  const spy = mock.method(fsp, 'lstat');
  try {
    await run();
    return spy.mock.callCount();
  } finally {
    spy.mock.restore();
  }
}

/** 200 files in three nested directories of `root`, checked in one pass as `final`: the lstats it made. */
async function onePass(root: string, final: FinalComponent): Promise<{ files: string[]; lstats: number }> {
  const files = Array.from({ length: 200 }, (_, i) => path.join(root, 'usr/share/printer', `f${i}`));
  const seen: SeenDirectories = new Set();
  const lstats = await countLstats(async () => {
    for (const f of files) await checkDestination(root, f, final, f, seen);
  });
  return { files, lstats };
}

test('a pass of 200 files in three nested directories looks at each directory once: 203 lstats, not 800', async () => {
  const root = await tree();
  const { files, lstats } = await onePass(root, 'replaced');
  // the last component is looked at for every file (it must not be a directory)
  assert.equal(lstats, 3 + files.length);
  const without = await countLstats(async () => {
    for (const f of files) await checkDestination(root, f, 'replaced');
  });
  assert.equal(without, 4 * files.length);
});

test("the staging tree's own files ('staged'): only the directories on the way are looked at, a symlinked one still refused", async () => {
  const root = await tree();
  const { lstats } = await onePass(root, 'staged');
  // a file there is renamed over (a directory fails the rename): no look at it, 1000 fewer in a package of 1000
  assert.equal(lstats, 3);
  await fsp.symlink('/etc', path.join(root, 'usr/share/conf'));
  await assert.rejects(
    checkDestination(root, path.join(root, 'usr/share/conf/passwd'), 'staged', 'passwd', new Set()),
    (e: unknown) => e instanceof UpdaterError && e.code === 'UNSAFE_DESTINATION' && /conf is a symlink/.test(e.message),
  );
});

test('a destination not joined from a normalized path is still taken as path.relative reads it', async () => {
  const root = await tree();
  await fsp.symlink('/etc', path.join(root, 'usr/share/conf'));
  // `..` and `.` names: the quick reading of a joined path does not apply, and the symlink is still found
  await assert.rejects(
    checkDestination(root, `${root}/usr/share/printer/../conf/./passwd`, 'staged', 'passwd'),
    (e: unknown) => e instanceof UpdaterError && e.code === 'UNSAFE_DESTINATION' && /conf is a symlink/.test(e.message),
  );
  await assert.rejects(
    checkDestination(root, `${root}/usr/../../outside`, 'replaced', 'outside'),
    (e: unknown) => e instanceof UpdaterError && e.code === 'UNSAFE_DESTINATION' && /is not below/.test(e.message),
  );
});

test('in one pass, a symlinked directory not yet seen is still refused UNSAFE_DESTINATION', async () => {
  const root = await tree();
  await fsp.symlink('/etc', path.join(root, 'usr/share/conf'));
  const seen: SeenDirectories = new Set();
  await checkDestination(root, path.join(root, 'usr/share/printer/a'), 'replaced', 'a', seen);
  await assert.rejects(
    checkDestination(root, path.join(root, 'usr/share/conf/passwd'), 'replaced', 'passwd', seen),
    (e: unknown) => e instanceof UpdaterError && e.code === 'UNSAFE_DESTINATION' && /conf is a symlink/.test(e.message),
  );
});

test('a directory found missing is not remembered: a symlink made there later is refused in the same pass', async () => {
  const root = await tree();
  const seen: SeenDirectories = new Set();
  // missing: the installer would create it, nothing to refuse
  await checkDestination(root, path.join(root, 'opt/x'), 'replaced', 'x', seen);
  await fsp.symlink('/etc', path.join(root, 'opt'));
  await assert.rejects(
    checkDestination(root, path.join(root, 'opt/y'), 'replaced', 'y', seen),
    (e: unknown) => e instanceof UpdaterError && e.code === 'UNSAFE_DESTINATION',
  );
});
