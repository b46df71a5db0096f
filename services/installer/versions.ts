import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fsyncDir, fsyncFile, removeTreeDurably } from '../../shared/durable-store.js';
import { isErrnoException } from '../../shared/errors.js';
import { failpoint } from '../../shared/failpoint.js';
import { forEachBounded, withBoundedWork } from './bounded-work.js';
import { joinPlain } from './plain-paths.js';

export type LinkName = 'current' | 'previous' | 'factory';
const STAGING_PREFIX = '.staging-';
const LINK_TMP = '.link-tmp-';

// "v1.2.3" and "v1.2.3~7" (a reinstall of a version that is in use) both mean 1.2.3
export { versionOfDir } from '../../shared/version-dirs.js';

/**
 * The versions tree: `v<ver>/` snapshots and the links `current`, `previous`, `factory`, whose
 * targets are relative names. A link changes by renaming a fresh symlink over it, then the
 * directory is fsynced, so after a power cut it names the old or the new snapshot.
 */
export class VersionStore {
  constructor(readonly dir: string) {}

  pathOf(name: string): string {
    return path.join(this.dir, name);
  }

  /** The snapshot a link names, or null when the link is missing, dangling or not a link. */
  async target(link: LinkName): Promise<string | null> {
    try {
      const t = await fsp.readlink(this.pathOf(link));
      const name = path.basename(t);
      return (await fsp.stat(this.pathOf(name))).isDirectory() ? name : null;
    } catch (e) {
      if (isErrnoException(e)) return null;
      throw e;
    }
  }

  async setLink(link: LinkName, target: string): Promise<void> {
    const tmp = this.pathOf(`${LINK_TMP}${link}`);
    await fsp.rm(tmp, { force: true });
    await fsp.symlink(target, tmp);
    failpoint('installer.link-made');
    await fsp.rename(tmp, this.pathOf(link));
    await fsyncDir(this.dir);
  }

  async removeLink(link: LinkName): Promise<void> {
    await fsp.rm(this.pathOf(link), { force: true });
    await fsyncDir(this.dir);
  }

  /**
   * `link` naming `target` again, or no link when `target` is null (it named no snapshot). Touched
   * only when it names another snapshot now: a real directory made there, which no switch can have
   * replaced, is left alone.
   */
  async restoreLink(link: LinkName, target: string | null): Promise<void> {
    if ((await this.target(link)) === target) return;
    if (target) await this.setLink(link, target);
    else await this.removeLink(link);
  }

  /** The directory name for a new snapshot of `version` that no link uses. */
  async freeDirName(version: string, seq: number): Promise<string> {
    const used = new Set(await Promise.all((['current', 'previous', 'factory'] as const).map((l) => this.target(l))));
    return used.has(`v${version}`) ? `v${version}~${seq}` : `v${version}`;
  }

  stagingName(seq: number): string {
    return `${STAGING_PREFIX}${seq}`;
  }

  /** A new staging directory seeded as a hard-link copy of `from` (the running snapshot), or empty. */
  async stage(from: string | null, staging: string): Promise<string> {
    const dest = this.pathOf(staging);
    await fsp.rm(dest, { recursive: true, force: true });
    if (from) await linkTree(this.pathOf(from), dest);
    else await fsp.mkdir(dest, { mode: 0o755 });
    return dest;
  }

  /**
   * Makes the staged tree durable and gives it its final name: `written` (the files extracted
   * into it without their own fsync) fsynced together, then every directory, then the rename.
   * Until that rename, recovery discards the staging tree, so nothing names an undurable file.
   */
  async finalize(staging: string, name: string, written: readonly string[] = []): Promise<void> {
    await fsyncAll(written);
    await fsyncTree(this.pathOf(staging));
    failpoint('installer.staging-synced');
    await fsp.rm(this.pathOf(name), { recursive: true, force: true });
    await fsp.rename(this.pathOf(staging), this.pathOf(name));
    await fsyncDir(this.dir);
  }

  /**
   * Makes what the post_cmds wrote into a snapshot durable: every file and directory fsynced, so
   * that `current` never names a snapshot whose post_cmd outputs a power cut can still take
   * (found by the power-cut VM: the last version's post_cmd file came back empty). `durable`:
   * files known to be on disk already (relative paths: the private copies linked back to the
   * running snapshot's files), skipped, since an fsync of each costs a journal commit.
   */
  async syncFiles(name: string, durable: ReadonlySet<string> = new Set()): Promise<void> {
    const root = this.pathOf(name);
    await fsyncTree(root, (file) => !durable.has(path.relative(root, file)));
  }

  /** Removes a snapshot unless a link names it. */
  async discard(name: string): Promise<void> {
    const used = await Promise.all((['current', 'previous', 'factory'] as const).map((l) => this.target(l)));
    if (used.includes(name)) return;
    await removeTreeDurably(this.pathOf(name));
  }

  /** Snapshots beyond current, previous and factory, and leftovers of interrupted work, go. */
  async prune(): Promise<string[]> {
    const keep = new Set(await Promise.all((['current', 'previous', 'factory'] as const).map((l) => this.target(l))));
    const removed: string[] = [];
    for (const name of await fsp.readdir(this.dir)) {
      if (['current', 'previous', 'factory'].includes(name) || keep.has(name)) continue;
      await fsp.rm(this.pathOf(name), { recursive: true, force: true });
      removed.push(name);
    }
    if (removed.length) await fsyncDir(this.dir);
    return removed;
  }

  /** Leftovers of an interrupted install: staging trees and temporary links. */
  async sweep(): Promise<void> {
    for (const name of await fsp.readdir(this.dir)) {
      if (name.startsWith(STAGING_PREFIX) || name.startsWith(LINK_TMP)) await removeTreeDurably(this.pathOf(name));
    }
  }
}

/**
 * Recreates `src` at `dest`: directories with their modes, files as hard links, symlinks as
 * symlinks. Directories in order (each made before what it holds), the rest a few at once.
 */
async function linkTree(src: string, dest: string): Promise<void> {
  await withBoundedWork(async (work) => {
    const walk = async (from: string, to: string): Promise<void> => {
      const st = await fsp.stat(from);
      await fsp.mkdir(to, { mode: st.mode & 0o7777 });
      for (const e of await fsp.readdir(from, { withFileTypes: true })) {
        const fromEntry = joinPlain(from, e.name);
        const toEntry = joinPlain(to, e.name);
        if (e.isDirectory()) await walk(fromEntry, toEntry);
        else if (e.isSymbolicLink()) await work.start(async () => fsp.symlink(await fsp.readlink(fromEntry), toEntry));
        else if (e.isFile()) await work.start(() => fsp.link(fromEntry, toEntry));
      }
    };
    await walk(src, dest);
  });
}

/** The directories of a tree fsynced (its files were, as they were written), and the files `files` picks. */
async function fsyncTree(dir: string, files: (file: string) => boolean = () => false): Promise<void> {
  for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
    const p = joinPlain(dir, e.name);
    if (e.isDirectory()) await fsyncTree(p, files);
    else if (e.isFile() && files(p)) await fsyncFile(p);
  }
  await fsyncDir(dir);
}

/**
 * Many files fsynced at once, SYNC_WIDTH in flight: the file system commits their journal
 * entries together instead of one commit per file, each waited for in turn.
 */
const SYNC_WIDTH = 32;

const fsyncAll = (files: readonly string[]): Promise<void> =>
  forEachBounded(files, (file) => fsyncFile(file), SYNC_WIDTH);
