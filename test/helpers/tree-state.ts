import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';

// What "unchanged" means for a kept snapshot: every entry's kind, bytes (SHA-256), mode, owner
// and mtime to the nanosecond, and each symlink's target. Taken before an install and compared
// after it, entry by entry, so a failure names the file and the field that moved.

export interface EntryState {
  kind: 'file' | 'dir' | 'symlink' | 'other';
  mode: string;
  uid: number;
  gid: number;
  mtimeNs: string;
  size: number;
  sha256?: string;
  target?: string;
}

export type TreeState = Record<string, EntryState>;

/** Every entry under `root` (not following links), keyed by its path relative to `root`. */
export async function treeState(root: string): Promise<TreeState> {
  const out: TreeState = {};
  const walk = async (dir: string): Promise<void> => {
    for (const name of (await fsp.readdir(dir)).sort()) {
      const p = path.join(dir, name);
      const st = await fsp.lstat(p, { bigint: true });
      const kind = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
      const entry: EntryState = {
        kind,
        mode: (st.mode & 0o7777n).toString(8),
        uid: Number(st.uid),
        gid: Number(st.gid),
        mtimeNs: st.mtimeNs.toString(),
        size: Number(st.size),
      };
      if (kind === 'file')
        entry.sha256 = createHash('sha256')
          .update(await fsp.readFile(p))
          .digest('hex');
      if (kind === 'symlink') entry.target = await fsp.readlink(p);
      out[path.relative(root, p)] = entry;
      if (kind === 'dir') await walk(p);
    }
  };
  await walk(root);
  return out;
}

/** Fails naming each path whose state differs from `before` (or that came or went). */
export async function assertTreeUnchanged(root: string, before: TreeState, what: string): Promise<void> {
  const after = await treeState(root);
  const paths = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
  const changed = paths
    .filter((p) => JSON.stringify(before[p]) !== JSON.stringify(after[p]))
    .map((p) => `${p}: ${JSON.stringify(before[p] ?? null)} -> ${JSON.stringify(after[p] ?? null)}`);
  assert.deepEqual(changed, [], `${what} changed:\n${changed.join('\n')}`);
}

/**
 * The device as "byte-identical" compares it: one line per entry under `root` (links not
 * followed), with its mode and the SHA-256 of its bytes or its link's target; no times, so an
 * entry made and removed again inside a directory does not count as a change.
 */
export async function deviceListing(root: string): Promise<string> {
  const lines: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      const st = await fsp.lstat(p);
      const what = e.isSymbolicLink()
        ? `-> ${await fsp.readlink(p)}`
        : e.isFile()
          ? createHash('sha256')
              .update(await fsp.readFile(p))
              .digest('hex')
          : e.isDirectory()
            ? 'dir'
            : 'other';
      lines.push(`${path.relative(root, p)} ${(st.mode & 0o7777).toString(8)} ${what}`);
      if (e.isDirectory()) await walk(p);
    }
  };
  await walk(root);
  return lines.sort().join('\n');
}
