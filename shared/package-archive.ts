import { closeSync, createWriteStream, promises as fsp, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import yauzl from 'yauzl';
import { fsyncFile } from './durable-store.js';
import { isErrnoException, UpdaterError } from './errors.js';
import { failpoint } from './failpoint.js';
import { payloadCheck, type PayloadExpectation } from './trust/payload.js';

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
export const MANIFEST = 'manifest.json';
const zipOptions = { strictFileNames: true, validateEntrySizes: true, autoClose: false };
/** manifest.json is read whole into memory to verify its signature: a bigger one is refused unread. */
export const MANIFEST_MAX_BYTES = 1024 * 1024;

export interface ArchiveLimits {
  maxBytes: number;
  maxEntries: number;
}

const invalid = (message: string) => new UpdaterError('INVALID_PACKAGE', message);

/** A name we accept: relative, normalised, no `.`/`..` segment, no empty segment. */
function checkName(name: string): void {
  const bare = name.endsWith('/') ? name.slice(0, -1) : name;
  if (!bare || bare.startsWith('/') || bare.split('/').some((s) => s === '' || s === '.' || s === '..')) {
    throw invalid(`entry name ${JSON.stringify(name)} is not a plain relative path`);
  }
}

/**
 * A package zip read under our policy: regular files and directories only, safe names, no
 * duplicates, a budget of entries and bytes against zip bombs, sizes and CRC-32 checked while
 * extracting. The whole central directory is checked when it is opened, before any write.
 */
const isZlibError = (e: unknown): boolean =>
  typeof (e as { code?: unknown })?.code === 'string' && (e as { code: string }).code.startsWith('Z_');

/** Where an entry is written before its rename: one fixed name, so an undo after a crash finds it. */
export const partialName = (dest: string): string => `${dest}.tope-partial`;

export class PackageArchive {
  private constructor(
    private readonly zip: yauzl.ZipFile,
    readonly files: Map<string, yauzl.Entry>,
    readonly dirs: ReadonlySet<string>,
  ) {}

  static async open(file: string, limits: ArchiveLimits): Promise<PackageArchive> {
    let zip: yauzl.ZipFile;
    try {
      zip = await yauzl.openPromise(file, zipOptions);
    } catch (e) {
      throw invalid(`not a readable zip file: ${(e as Error).message}`);
    }
    return PackageArchive.checked(zip, limits);
  }

  /**
   * The zip read through an open descriptor (positioned reads only: the file is read where it
   * was opened, whatever its path names later). It takes the descriptor: closed with the
   * archive, or here when it is not a zip we accept.
   */
  static async openFd(fd: number, limits: ArchiveLimits): Promise<PackageArchive> {
    let zip: yauzl.ZipFile;
    try {
      zip = await yauzl.fromFdPromise(fd, zipOptions);
    } catch (e) {
      closeSync(fd); // yauzl leaves it open when it refuses the file
      throw invalid(`not a readable zip file: ${(e as Error).message}`);
    }
    return PackageArchive.checked(zip, limits); // its close() closes the descriptor
  }

  /** The central directory, read once and checked entry by entry; the zip is closed on a refusal. */
  private static async checked(zip: yauzl.ZipFile, limits: ArchiveLimits): Promise<PackageArchive> {
    const files = new Map<string, yauzl.Entry>();
    const dirs = new Set<string>();
    let total = 0;
    let count = 0;
    try {
      for await (const entry of zip.eachEntry()) {
        if (++count > limits.maxEntries) throw invalid(`more than ${limits.maxEntries} entries`);
        const name = entry.fileName;
        checkName(name);
        const mode = (entry.externalFileAttributes >>> 16) & 0xffff;
        const type = mode & S_IFMT;
        const isDir = name.endsWith('/');
        if (type !== 0 && type !== (isDir ? S_IFDIR : S_IFREG))
          throw invalid(`entry ${name} is not a regular file or directory (mode ${mode.toString(8)})`);
        if (entry.isEncrypted()) throw invalid(`entry ${name} is encrypted`);
        const key = isDir ? name.slice(0, -1) : name;
        if (files.has(key) || dirs.has(key)) throw invalid(`duplicate entry ${name}`);
        if (isDir) dirs.add(key);
        else files.set(key, entry);
        total += entry.uncompressedSize;
        if (total > limits.maxBytes) throw invalid(`unpacks to more than ${limits.maxBytes} bytes`);
      }
    } catch (e) {
      zip.close();
      throw UpdaterError.from(e, 'INVALID_PACKAGE');
    }
    return new PackageArchive(zip, files, dirs);
  }

  close(): void {
    this.zip.close();
  }

  /** The manifest's exact bytes (what its signature covers), or INVALID_MANIFEST. */
  async readManifestBytes(): Promise<Buffer> {
    const entry = this.files.get(MANIFEST);
    if (!entry) throw new UpdaterError('INVALID_MANIFEST', 'manifest.json not found in package');
    if (entry.uncompressedSize > MANIFEST_MAX_BYTES)
      throw new UpdaterError('INVALID_MANIFEST', `manifest.json larger than ${MANIFEST_MAX_BYTES} bytes`);
    return this.readSmall(entry);
  }

  /** A small entry's bytes, CRC-checked; the caller bounds its size from the central directory first. */
  async readSmall(entry: yauzl.Entry): Promise<Buffer> {
    const chunks: Buffer[] = [];
    try {
      await pipeline(await this.stream(entry), this.crcCheck(entry), async function* (src: AsyncIterable<Buffer>) {
        for await (const c of src) chunks.push(c);
      });
    } catch (e) {
      throw UpdaterError.from(e, 'INVALID_PACKAGE', `entry ${entry.fileName}: `);
    }
    return Buffer.concat(chunks);
  }

  /** The entry's mode for the file we write: from the zip, without setuid/setgid/sticky or group/other write. */
  static modeOf(entry: yauzl.Entry): number {
    const mode = (entry.externalFileAttributes >>> 16) & 0o777;
    return mode === 0 ? 0o644 : (mode & 0o755) | 0o600;
  }

  /**
   * Writes a file entry to `dest` the durable way: a temp name beside it, fsync, rename. The
   * rename replaces a hard link to the running version's file instead of writing through it.
   * With `expected`, the bytes are checked against the signed manifest's size and SHA-256 on
   * their way to the disk (no second pass): a mismatch is refused before the rename.
   * `sync: false` leaves out the fsync, for a caller that fsyncs a whole tree's new files at once
   * before anything can name the tree (VersionStore.finalize): one fsync per file, each waiting
   * for its own journal commit, is most of the time of an install of many small files.
   */
  async extractTo(
    name: string,
    dest: string,
    expected?: PayloadExpectation,
    { sync = true }: { sync?: boolean } = {},
  ): Promise<void> {
    const entry = this.files.get(name);
    if (!entry) throw new UpdaterError('INVALID_MANIFEST', `${name} is not a file in the package`);
    const tmp = partialName(dest);
    let out: WriteStream | null = null;
    try {
      await fsp.mkdir(path.dirname(dest), { recursive: true, mode: 0o755 });
      // a new inode, never an existing name: a leftover temp name in a staging tree seeded from
      // `current` could be a hard link to a kept snapshot's file, or a symlink to anywhere
      await fsp.rm(tmp, { force: true });
      out = createWriteStream(tmp, { mode: PackageArchive.modeOf(entry), flags: 'wx' });
      const source = await this.stream(entry);
      if (expected) await pipeline(source, this.crcCheck(entry), payloadCheck(expected), out);
      else await pipeline(source, this.crcCheck(entry), out);
      // the umask must not change the zip's mode
      if (sync) await fsyncFile(tmp, PackageArchive.modeOf(entry));
      else await fsp.chmod(tmp, PackageArchive.modeOf(entry));
      failpoint('installer.extracted-before-rename');
      await fsp.rename(tmp, dest);
    } catch (e) {
      // a stream still opening when the source failed creates the file after the error: close it first
      if (out && !out.closed) {
        const closed = once(out, 'close').catch(() => undefined);
        out.destroy();
        await closed;
      }
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
      if (e instanceof UpdaterError) throw e;
      // zlib's errors carry an errno too, but they are the package's fault, not the disk's
      if (isZlibError(e)) throw invalid(`entry ${name}: ${(e as Error).message}`);
      if (isErrnoException(e, 'ENOSPC')) throw new UpdaterError('DISK_FULL', `no space left while writing ${dest}`);
      if (isErrnoException(e)) throw new UpdaterError('DEPLOYMENT_FAILED', `cannot write ${dest}: ${e.message}`);
      throw invalid(`entry ${name}: ${(e as Error).message}`);
    }
  }

  /** Reads a file entry through the payload check without writing it anywhere (the packaging tool's verify). */
  async checkEntry(name: string, expected: PayloadExpectation): Promise<void> {
    const entry = this.files.get(name);
    if (!entry) throw new UpdaterError('INVALID_MANIFEST', `${name} is not a file in the package`);
    try {
      await pipeline(
        await this.stream(entry),
        this.crcCheck(entry),
        payloadCheck(expected),
        async function* (src: AsyncIterable<Buffer>) {
          for await (const _chunk of src) {
            /* the checks are the point */
          }
        },
      );
    } catch (e) {
      throw UpdaterError.from(e, 'INVALID_PACKAGE', `entry ${name}: `);
    }
  }

  private async stream(entry: yauzl.Entry) {
    try {
      return await this.zip.openReadStreamPromise(entry);
    } catch (e) {
      throw invalid(`entry ${entry.fileName}: ${(e as Error).message}`);
    }
  }

  private crcCheck(entry: yauzl.Entry): Transform {
    let crc = 0;
    return new Transform({
      transform(c: Buffer, _e, cb) {
        crc = zlib.crc32(c, crc);
        cb(null, c);
      },
      flush(cb) {
        cb(crc >>> 0 === entry.crc32 ? null : invalid(`CRC mismatch in ${entry.fileName}`));
      },
    });
  }
}
