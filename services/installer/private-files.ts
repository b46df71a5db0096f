import { constants, promises as fsp, type BigIntStats } from 'node:fs';
import path from 'node:path';
import { fsyncDir, fsyncFile } from '../../shared/durable-store.js';
import { isErrnoException, UpdaterError } from '../../shared/errors.js';
import { forEachBounded } from './bounded-work.js';

// The new snapshot starts as hard links to `current` (versions.ts, linkTree): the space saving of
// an update that carries only what changed. An in-place write by a post_cmd (an append, a
// truncate, chmod, chown, touch, a database opened read-write) would go through such a link into
// the same inode in `current`, `previous` and `factory`, and a failed install would have changed
// the running version and what a rollback goes back to.
//
// So, for a package with post_cmds, before they run every file of the staged snapshot that shares
// its inode with another name is replaced by a private copy: the copy is a reflink where the file
// system can (btrfs, xfs: no bytes copied, no space used), a plain copy elsewhere; mode, owner and
// timestamps are the origin's (timestamps to a fraction of a microsecond: node's utimes takes
// seconds as a double); all are fsynced before the staging tree is finalized. The
// post_cmds can then write only into the new version's own inodes. A package without post_cmds
// keeps the sharing whole: nothing but the installer writes the staged tree, and it writes each
// file under a new name and renames it over the link (package-archive.ts, extractTo).
//
// After the post_cmds succeed, a copy that none of them touched is linked back to its origin, so
// that on a file system without reflinks the snapshots still share what did not change. "Not
// touched" is read from the inode's change time (ctime), which every write, truncate, chmod,
// chown and utime moves and no caller can set (short of setting the system clock back, which is
// the post_cmds' sandbox's to forbid; even then the worst is a post_cmd's change lost from the new
// version, never a kept snapshot written): a copy whose inode and ctime are the ones it had when
// it was made is byte- and metadata-identical to its origin, and needs no read to tell. The
// kernel stamps ctime from a coarse clock (one tick, at most 10 ms); the post_cmds start only
// once a tick has surely passed since the last copy was made, so a write cannot share its stamp.

/** A private copy made for the post_cmds: where it is, and its inode and ctime as made. */
export interface PrivateCopy {
  rel: string;
  ino: bigint;
  ctimeNs: bigint;
  /**
   * false: the copy is the installer's, not its origin's owner (the installer's unit holds no
   * CAP_CHOWN, so a file of another owner or group cannot be given back its owner). Only the new
   * version's copy differs, and only until a link-back; the kept snapshots never do.
   */
  ownerKept: boolean;
}

/** What a private copy must outlast before a write to it is sure to move its ctime: a coarse clock tick, with margin. */
const CTIME_TICK_MS = 20;

const tmpOf = (file: string) => `${file}.tope-private`;

/**
 * Every regular file of `root` (a staging tree, discarded whole if the install stops before it is
 * finalized) whose inode has another name, replaced by a private copy; then each copy and each
 * directory fsynced, in one pass after all the copies (a file system commits its journal once
 * for the lot, not once per file).
 */
export async function privatizeShared(root: string): Promise<PrivateCopy[]> {
  const copies: PrivateCopy[] = [];
  const dirs = new Set<string>();
  const walk = async (dir: string): Promise<void> => {
    const entries = await fsp.readdir(dir, { withFileTypes: true });
    const files = entries.filter((e) => e.isFile()).map((e) => path.join(dir, e.name));
    await forEachBounded(files, async (file) => {
      const st = await fsp.lstat(file, { bigint: true });
      if (st.nlink < 2n) return; // its own inode already (a file the package carries)
      copies.push(await privateCopy(root, file, st));
      dirs.add(dir);
    });
    for (const e of entries) if (e.isDirectory()) await walk(path.join(dir, e.name));
  };
  await walk(root);
  await forEachBounded(copies, (copy) => fsyncFile(path.join(root, copy.rel)));
  for (const dir of dirs) await fsyncDir(dir);
  return copies;
}

async function privateCopy(root: string, file: string, origin: BigIntStats): Promise<PrivateCopy> {
  const tmp = tmpOf(file);
  let ownerKept = true;
  try {
    await fsp.rm(tmp, { force: true });
    await fsp.copyFile(file, tmp, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
    const fh = await fsp.open(tmp, constants.O_RDWR | constants.O_NOFOLLOW);
    try {
      const copied = await fh.stat({ bigint: true });
      // only when it differs: `make run`'s installer is no root, and under systemd it has no CAP_CHOWN
      if (copied.uid !== origin.uid || copied.gid !== origin.gid)
        ownerKept = await fh.chown(Number(origin.uid), Number(origin.gid)).then(
          () => true,
          (e: unknown) => {
            if (isErrnoException(e, 'EPERM')) return false;
            throw e;
          },
        );
      await fh.chmod(Number(origin.mode & 0o7777n)); // after chown, which clears setuid and setgid
      await fh.utimes(toSeconds(origin.atimeNs), toSeconds(origin.mtimeNs));
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, file);
  } catch (e) {
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    if (isErrnoException(e, 'ENOSPC'))
      throw new UpdaterError('DISK_FULL', `no space left for a private copy of ${file} for the post_cmds`);
    throw new UpdaterError('DEPLOYMENT_FAILED', `cannot make a private copy of ${file}: ${(e as Error).message}`);
  }
  const made = await fsp.lstat(file, { bigint: true });
  return { rel: path.relative(root, file), ino: made.ino, ctimeNs: made.ctimeNs, ownerKept };
}

// seconds as a number (the nearest double: within a quarter of a microsecond today) keep what a Date would drop
const toSeconds = (ns: bigint): number => Number(ns / 1_000_000_000n) + Number(ns % 1_000_000_000n) / 1e9;

/** Size, mode, owner (unless the copy could not keep it) and mtime (to the microsecond a copy keeps of it) the same. */
function sameContentStamp(a: BigIntStats, b: BigIntStats, owner: boolean): boolean {
  const mtimeApart = a.mtimeNs > b.mtimeNs ? a.mtimeNs - b.mtimeNs : b.mtimeNs - a.mtimeNs;
  const sameOwner = !owner || (a.uid === b.uid && a.gid === b.gid);
  return a.size === b.size && a.mode === b.mode && sameOwner && mtimeApart < 1000n;
}

/** Waits until a write to any of `copies` is sure to get a later ctime than the copy's own (see above). */
export async function outlastCopies(copies: readonly PrivateCopy[], now = Date.now): Promise<void> {
  if (!copies.length) return;
  const newestMs = Number(copies.reduce((max, c) => (c.ctimeNs > max ? c.ctimeNs : max), 0n) / 1_000_000n);
  const wait = newestMs + CTIME_TICK_MS - now();
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
}

/**
 * After the post_cmds succeeded: each copy none of them touched (same inode, same ctime) becomes
 * a hard link to its origin in `originRoot` again, which is the same bytes, mode, owner and mtime.
 * The caller fsyncs the tree afterwards (syncFiles); the files linked back (returned, relative
 * paths) are the running snapshot's own and on disk already.
 */
export async function linkBackUntouched(
  root: string,
  originRoot: string,
  copies: readonly PrivateCopy[],
): Promise<Set<string>> {
  const linked = new Set<string>();
  const dirs = new Set<string>();
  await forEachBounded(copies, async (copy) => {
    const file = path.join(root, copy.rel);
    const origin = path.join(originRoot, copy.rel);
    const now = await fsp.lstat(file, { bigint: true }).catch(() => null);
    if (!now || !now.isFile() || now.ino !== copy.ino || now.ctimeNs !== copy.ctimeNs) return;
    const from = await fsp.lstat(origin, { bigint: true }).catch(() => null);
    if (!from || !from.isFile() || !sameContentStamp(now, from, copy.ownerKept)) return; // the origin changed since: keep the copy
    const tmp = tmpOf(file);
    await fsp.link(origin, tmp).catch(async (e: unknown) => {
      if (!isErrnoException(e, 'EEXIST')) throw e;
      await fsp.unlink(tmp); // a leftover of an earlier attempt in this staged tree
      await fsp.link(origin, tmp);
    });
    await fsp.rename(tmp, file);
    dirs.add(path.dirname(file));
    linked.add(copy.rel);
  });
  for (const dir of dirs) await fsyncDir(dir);
  return linked;
}
