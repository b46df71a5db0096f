import { promises as fsp } from 'node:fs';
import path from 'node:path';
import * as z from './schema.js';
import { isErrnoException } from './errors.js';
import { failpoint } from './failpoint.js';
import { previousGeneration } from './state-names.js';

let tempCounter = 0;
const TEMP_MARK = '.tmp-';

/**
 * Flushes a file written through another handle (a copy, a stream) to disk, before the rename
 * that publishes it. `mode`: set through the same handle first (the umask must not decide it).
 * Opened read-only: fsync and fchmod need no write access, and a snapshot's files may be
 * read-only to the installer that wrote them.
 */
export async function fsyncFile(file: string, mode?: number): Promise<void> {
  const fh = await fsp.open(file, 'r');
  try {
    if (mode !== undefined) await fh.chmod(mode);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** A directory's entries (a rename, a new or removed name) flushed to disk. */
export const fsyncDir = (dir: string): Promise<void> => fsyncFile(dir);

/**
 * Removes a file or a whole tree and fsyncs the directory that held it: an unlink or rmdir that
 * only reached the page cache comes back after a power cut (found by the power-cut VM: the
 * installer's work directory, removed at the end of an install, was there again after the cut).
 */
export async function removeTreeDurably(target: string): Promise<void> {
  const existed = await fsp.lstat(target).then(
    () => true,
    () => false,
  );
  await fsp.rm(target, { recursive: true, force: true });
  if (existed) await fsyncDir(path.dirname(target));
}

/** temp file, fsync, rename, fsync of the directory: after a power cut the file is old or new. */
export async function writeFileDurable(file: string, data: string | Buffer, mode = 0o640): Promise<void> {
  const tmp = `${file}${TEMP_MARK}${process.pid}-${++tempCounter}`;
  const fh = await fsp.open(tmp, 'w', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (e) {
    await fh.close();
    await fsp.rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  failpoint('durable.before-rename');
  await fsp.rename(tmp, file);
  failpoint('durable.before-dir-fsync');
  await fsyncDir(path.dirname(file));
}

/** Removes temp files a crash left behind (ours carry TEMP_MARK in their names). */
export async function sweepTemps(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch (e) {
    if (isErrnoException(e, 'ENOENT')) return [];
    throw e;
  }
  const stale = names.filter((n) => n.includes(TEMP_MARK));
  await Promise.all(stale.map((n) => fsp.rm(path.join(dir, n), { force: true, recursive: true })));
  return stale;
}

/**
 * A JSON state file with two generations: `name` and `name.prev`. A write keeps the last good
 * file as `.prev`, so a torn or unreadable file falls back to it instead of to nothing.
 */
export class DurableJson<S extends z.$ZodType> {
  readonly prevPath: string;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly file: string,
    private readonly schema: S,
  ) {
    this.prevPath = previousGeneration(file);
  }

  /** The newest generation that parses and validates, or null when there is none. */
  async read(): Promise<z.infer<S> | null> {
    for (const candidate of [this.file, this.prevPath]) {
      const value = await this.readOne(candidate);
      if (value !== null) return value;
    }
    return null;
  }

  /** Whether either generation is there, valid or not (a torn or corrupt file counts). */
  async present(): Promise<boolean> {
    for (const candidate of [this.file, this.prevPath]) {
      try {
        await fsp.lstat(candidate);
        return true;
      } catch (e) {
        if (!isErrnoException(e, 'ENOENT')) throw e;
      }
    }
    return false;
  }

  write(value: z.infer<S>): Promise<void> {
    const checked = z.parse(this.schema, value);
    return this.serialize(async () => {
      try {
        await fsp.rename(this.file, this.prevPath);
      } catch (e) {
        if (!isErrnoException(e, 'ENOENT')) throw e;
      }
      failpoint('durable.rotated');
      await writeFileDurable(this.file, `${JSON.stringify(checked)}\n`);
    });
  }

  remove(): Promise<void> {
    return this.serialize(async () => {
      await fsp.rm(this.file, { force: true });
      await fsp.rm(this.prevPath, { force: true });
      await fsyncDir(path.dirname(this.file));
    });
  }

  private serialize<T>(job: () => Promise<T>): Promise<T> {
    const run = this.queue.then(job, job);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async readOne(candidate: string): Promise<z.infer<S> | null> {
    let text: string;
    try {
      text = await fsp.readFile(candidate, 'utf8');
    } catch (e) {
      if (isErrnoException(e, 'ENOENT')) return null;
      throw e;
    }
    try {
      const parsed = z.safeParse(this.schema, JSON.parse(text));
      return parsed.success ? parsed.data : null;
    } catch {
      return null;
    }
  }
}
