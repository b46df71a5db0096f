import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterEach, test } from 'node:test';
import { InstallDevice } from './helpers/install-device.js';
import { buildPackage } from './helpers/packages.js';
import { assertTreeUnchanged, treeState, type TreeState } from './helpers/tree-state.js';

// A post_cmd runs in the new snapshot, whose files start as hard links to the running one's (and
// so to previous's and factory's). Whatever it does in place to such a file, no kept snapshot may
// change: not a byte, a mode, an owner or an mtime, whether the install then fails (a later
// post_cmd exits 1: undone before the switch) or succeeds. The real installer process, real
// /bin/sh post_cmds, real files; service control through the recording systemctl stand-in.

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const OWNER = 1000; // an owner other than the installer's (root), to see that a private copy keeps it
const OLD_MTIME = new Date('2020-05-06T07:08:09.123Z');
const kept = ['v1.0.0', 'v0.9.0', 'v0.5.0'] as const; // current, previous, factory

/** current v1.0.0, with previous and factory as hard-link copies of it (an update that changed nothing there). */
async function device(): Promise<InstallDevice> {
  const d = new InstallDevice({ TOPE_POST_CMD_TIMEOUT_MS: '10000' });
  cleanups.push(() => d.stop());
  await d.seedVersion(
    'v1.0.0',
    {
      'etc/printer.conf': 'speed=1\n',
      'bin/hello': '#!/bin/sh\necho hello\n',
      'data/db': 'database v1\n',
      'share/keep': 'kept as it is\n',
    },
    ['current'],
  );
  const v1 = path.join(d.versionsDir, 'v1.0.0');
  await fsp.chmod(path.join(v1, 'etc/printer.conf'), 0o640);
  for (const rel of ['bin/hello', 'data/db']) await fsp.chown(path.join(v1, rel), OWNER, OWNER);
  for (const rel of ['etc/printer.conf', 'bin/hello', 'data/db', 'share/keep'])
    await fsp.utimes(path.join(v1, rel), OLD_MTIME, OLD_MTIME);
  for (const [dir, link] of [
    ['v0.9.0', 'previous'],
    ['v0.5.0', 'factory'],
  ]) {
    execFileSync('cp', ['-al', v1, path.join(d.versionsDir, dir)]);
    await fsp.symlink(dir, path.join(d.versionsDir, link));
  }
  await d.setUnits({ 'a.service': { active: true } });
  await d.start('installer', 'api-gateway');
  return d;
}

async function states(d: InstallDevice, dirs: readonly string[]): Promise<Map<string, TreeState>> {
  return new Map(
    await Promise.all(dirs.map(async (dir) => [dir, await treeState(path.join(d.versionsDir, dir))] as const)),
  );
}

async function assertKept(d: InstallDevice, before: Map<string, TreeState>, dirs: readonly string[], when: string) {
  for (const dir of dirs) await assertTreeUnchanged(path.join(d.versionsDir, dir), before.get(dir)!, `${dir} ${when}`);
}

const inode = async (d: InstallDevice, rel: string) => (await fsp.stat(path.join(d.versionsDir, rel))).ino;

/** A post_cmd that changes a file the new snapshot shares with the kept ones, and what the new version must show of it. */
const cases: Array<{ name: string; cmd: string; file: string; shows: (file: string) => Promise<void> }> = [
  {
    name: 'append',
    cmd: 'echo speed=2 >> etc/printer.conf',
    file: 'etc/printer.conf',
    shows: async (f) => assert.equal(await fsp.readFile(f, 'utf8'), 'speed=1\nspeed=2\n'),
  },
  {
    name: 'truncate',
    cmd: ': > etc/printer.conf',
    file: 'etc/printer.conf',
    shows: async (f) => assert.equal((await fsp.stat(f)).size, 0),
  },
  {
    name: 'chmod',
    cmd: 'chmod 777 bin/hello',
    file: 'bin/hello',
    shows: async (f) => assert.equal((await fsp.stat(f)).mode & 0o7777, 0o777),
  },
  {
    name: 'chown',
    cmd: 'chown 4321:8765 bin/hello',
    file: 'bin/hello',
    shows: async (f) => {
      const st = await fsp.stat(f);
      assert.deepEqual([st.uid, st.gid], [4321, 8765]);
    },
  },
  {
    name: 'utime',
    cmd: "touch -d '2001-02-03 04:05:06 UTC' etc/printer.conf",
    file: 'etc/printer.conf',
    shows: async (f) => assert.equal((await fsp.stat(f)).mtime.toISOString(), '2001-02-03T04:05:06.000Z'),
  },
  {
    name: 'write through an O_RDWR open',
    cmd: 'exec 3<>data/db; printf X >&3',
    file: 'data/db',
    shows: async (f) => assert.equal(await fsp.readFile(f, 'utf8'), 'Xatabase v1\n'),
  },
  {
    name: 'new file beside old ones',
    cmd: 'echo new > etc/new.conf',
    file: 'etc/new.conf',
    shows: async (f) => assert.equal(await fsp.readFile(f, 'utf8'), 'new\n'),
  },
];

for (const c of cases) {
  test(`[systemctl stand-in] a post_cmd's ${c.name} changes only the new snapshot: no kept snapshot moves, whether the install then fails or succeeds`, async () => {
    const d = await device();
    const module = { name: 'a', dst: '/opt/tope/bin/a', process_name: 'a.service' };
    const before = await states(d, kept);

    await d.verified(await buildPackage('2.0.0', [{ ...module, post_cmds: [c.cmd, 'exit 1'] }]), '2.0.0');
    await d.update('2.0.0');
    const failed = await d.finished();
    assert.equal(failed.stage, 'failed');
    assert.match(failed.error!, /^POST_CMD_FAILED: 'exit 1' exited 1/);
    assert.equal(await d.link('current'), 'v1.0.0');
    await assertKept(d, before, kept, 'after a failed install');
    assert.equal((await d.units())['a.service'].active, true, 'the unit runs again');

    await d.verified(await buildPackage('2.0.0', [{ ...module, post_cmds: [c.cmd] }]), '2.0.0');
    await d.update('2.0.0');
    assert.equal((await d.finished()).stage, 'success');
    assert.equal(await d.link('current'), 'v2.0.0');
    // previous is now v1.0.0; v0.9.0 went with the prune
    await assertKept(d, before, ['v1.0.0', 'v0.5.0'], 'after a successful install');
    const changed = path.join(d.versionsDir, 'v2.0.0', c.file);
    await c.shows(changed);
    if (c.file !== 'etc/new.conf') {
      assert.notEqual(await inode(d, `v2.0.0/${c.file}`), await inode(d, `v1.0.0/${c.file}`), 'a file of its own');
      // the private copy the post_cmd changed kept what the post_cmd did not change
      const st = await fsp.stat(changed);
      const origin = await fsp.stat(path.join(d.versionsDir, 'v1.0.0', c.file));
      if (c.name !== 'chown') assert.deepEqual([st.uid, st.gid], [origin.uid, origin.gid], 'the copy kept its owner');
      // to the microsecond: node's utimes takes seconds as a double (private-files.ts)
      if (c.name === 'chmod' || c.name === 'chown')
        assert.ok(
          Math.abs(st.mtimeMs - origin.mtimeMs) < 0.001,
          `the copy kept its mtime: ${st.mtimeMs} ${origin.mtimeMs}`,
        );
      if (c.name !== 'chmod') assert.equal(st.mode, origin.mode, 'the copy kept its mode');
    }
    assert.equal(
      await inode(d, 'v2.0.0/share/keep'),
      await inode(d, 'v1.0.0/share/keep'),
      'a file no post_cmd touched is shared with the old snapshot again',
    );
  });
}

test('[systemctl stand-in] a package without post_cmds shares every file it does not carry; a leftover temp name linked to a kept file is not written through', async () => {
  const d = await device();
  // a file named as extraction's temp name, a hard link to factory's file: opening it for writing
  // (instead of creating a new inode) would truncate factory's bin/a
  const v05 = path.join(d.versionsDir, 'v0.5.0');
  await fsp.writeFile(path.join(v05, 'bin/a'), 'factory a\n');
  await fsp.link(path.join(v05, 'bin/a'), path.join(d.versionsDir, 'v1.0.0/bin/a.tope-partial'));
  const before = await states(d, kept);
  await d.verified(
    await buildPackage('2.0.0', [{ name: 'a', dst: '/opt/tope/bin/a', process_name: 'a.service' }]),
    '2.0.0',
  );
  await d.update('2.0.0');
  assert.equal((await d.finished()).stage, 'success');
  await assertKept(d, before, ['v1.0.0', 'v0.5.0'], 'after the install');
  for (const rel of ['etc/printer.conf', 'bin/hello', 'data/db', 'share/keep'])
    assert.equal(await inode(d, `v2.0.0/${rel}`), await inode(d, `v1.0.0/${rel}`), `${rel} shared`);
  assert.equal(await d.file('/opt/tope/versions/current/bin/a'), 'a 2.0.0\n');
});
