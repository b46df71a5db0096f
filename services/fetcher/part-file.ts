import { promises as fsp } from 'node:fs';
import { isErrnoException, UpdaterError } from '../../shared/errors.js';
import { hashFilePrefix, PackageHasher, type Digests } from '../../shared/package-check.js';

/** The resumable position: how many bytes of the part file are good, and what they came from. */
export interface Position {
  offset: number;
  etag: string | null;
  lastModified: string | null;
}

function diskError(e: unknown): UpdaterError {
  if (isErrnoException(e, 'ENOSPC') || isErrnoException(e, 'EDQUOT')) {
    return new UpdaterError('DISK_FULL', 'no space left while writing the package');
  }
  return new UpdaterError('DOWNLOAD_FAILED', `cannot write the package: ${(e as Error).message}`);
}

/**
 * The package being downloaded: its file, the digests of the bytes in it, and how far the good
 * bytes go. Every write or truncation failure is DISK_FULL or DOWNLOAD_FAILED.
 */
export class PartFile {
  private hasher = new PackageHasher();

  private constructor(
    private readonly handle: fsp.FileHandle,
    readonly position: Position,
  ) {}

  /** Opens the file holding the first `start.offset` good bytes (anything after them is cut). */
  static async open(file: string, start: Position): Promise<PartFile> {
    let handle: fsp.FileHandle;
    try {
      handle = await fsp.open(file, start.offset > 0 ? 'r+' : 'w', 0o640);
      await handle.truncate(start.offset);
    } catch (e) {
      throw diskError(e);
    }
    return new PartFile(handle, { ...start });
  }

  /** Hashes the bytes already there, so the digests at the end cover the whole file. */
  async hashHeldBytes(): Promise<void> {
    if (this.position.offset > 0) await hashFilePrefix(this.handle, this.position.offset, this.hasher);
  }

  /** Drops every byte held and the validators they came with. */
  async restartFromZero(): Promise<void> {
    this.position.offset = 0;
    this.position.etag = null;
    this.position.lastModified = null;
    this.hasher = new PackageHasher();
    await this.handle.truncate(0).catch((e) => {
      throw diskError(e);
    });
  }

  /** The validators of the bytes written from now on (a 200's). */
  setValidators(etag: string | null, lastModified: string | null): void {
    this.position.etag = etag;
    this.position.lastModified = lastModified;
  }

  /**
   * Writes `chunks`, in order, at the offset (one writev) and moves the offset past them. The
   * hashes run while the write is under way: the CPU and the disk overlap.
   */
  async append(chunks: readonly Buffer[]): Promise<void> {
    let length = 0;
    for (const c of chunks) length += c.length;
    const written = this.writeAll(chunks, length, this.position.offset);
    for (const c of chunks) this.hasher.update(c);
    await written;
    this.position.offset += length;
  }

  /** Makes the bytes so far durable (before a checkpoint names them). */
  dataSync(): Promise<void> {
    return this.handle.datasync();
  }

  /** Syncs the whole file and ends the hashing. */
  async finish(): Promise<Digests> {
    await this.handle.sync().catch((e) => {
      throw diskError(e);
    });
    return this.hasher.digests();
  }

  close(): Promise<void> {
    return this.handle.close().catch(() => undefined);
  }

  private async writeAll(chunks: readonly Buffer[], length: number, position: number): Promise<void> {
    let pending = chunks;
    let done = 0;
    try {
      while (done < length) {
        const { bytesWritten } =
          pending.length === 1
            ? await this.handle.write(pending[0], 0, pending[0].length, position + done)
            : await this.handle.writev(pending, position + done);
        done += bytesWritten;
        if (done < length) pending = unwritten(pending, bytesWritten);
      }
    } catch (e) {
      throw diskError(e);
    }
  }
}

/** What a short write of `written` bytes left of `chunks` (exported for its test). */
export function unwritten(chunks: readonly Buffer[], written: number): Buffer[] {
  const left: Buffer[] = [];
  let skip = written;
  for (const c of chunks) {
    if (skip >= c.length) skip -= c.length;
    else {
      left.push(skip > 0 ? c.subarray(skip) : c);
      skip = 0;
    }
  }
  return left;
}
