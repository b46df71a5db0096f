import { closeSync, constants, promises as fsp, open as openCallback } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import yauzl from 'yauzl';
import { appendingTo, checkingStream, readFully, writeFully, type ChunkCheck } from './chunk-io.js';
import { isErrnoException, UpdaterError } from './errors.js';
import { ReadBufferPool, STORED_READ_BYTES } from './read-buffers.js';
import { failpoint } from './failpoint.js';
import { PayloadCheck, type PayloadExpectation } from './trust/payload.js';

export { STORED_READ_BYTES } from './read-buffers.js';

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
/** A stored entry's data runs past the package file's end (it was cut after it was opened). */
const endedInside = () => new Error('the package file ends inside the entry');

/** A local file header's fixed part (APPNOTE 4.3.7), then its name and extra field. */
const LOCAL_HEADER_BYTES = 30;
const LOCAL_HEADER_SIGNATURE = 0x04034b50;
/** Room for the local header's extra field in the first read (a zip64 or timestamp field is 20-30 bytes); a longer one costs a second read. */
const LOCAL_EXTRA_ROOM = 256;
/** A new file only: never an existing name, never through a symbolic link. */
const NEW_FILE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

const openFile = promisify(openCallback);

/** The CRC-32 of an entry's bytes, fed in order, against the central directory's. */
class Crc32Check implements ChunkCheck {
  private crc = 0;

  constructor(private readonly entry: yauzl.Entry) {}

  update(chunk: Buffer): void {
    this.crc = zlib.crc32(chunk, this.crc);
  }

  end(): void {
    if (this.crc >>> 0 !== this.entry.crc32) throw invalid(`CRC mismatch in ${this.entry.fileName}`);
  }
}

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

/** The suffix of an entry's name while it is written: no package may install a file under such a name. */
export const PARTIAL_SUFFIX = '.tope-partial';

/** Where an entry is written before its rename: one fixed name, so an undo after a crash finds it. */
export const partialName = (dest: string): string => `${dest}${PARTIAL_SUFFIX}`;

export class PackageArchive {
  /** Extractions under way, some reading `fd` directly: close() waits for them (the number could be reused). */
  private reading = 0;
  private closeWanted = false;
  /** readStored's pairs of buffers, kept from one stored entry to the next. */
  private readonly readBuffers = new ReadBufferPool();

  private constructor(
    private readonly zip: yauzl.ZipFile,
    private readonly fd: number,
    readonly files: Map<string, yauzl.Entry>,
    readonly dirs: ReadonlySet<string>,
  ) {}

  static async open(file: string, limits: ArchiveLimits): Promise<PackageArchive> {
    let fd: number;
    try {
      fd = await openFile(file, 'r');
    } catch (e) {
      throw invalid(`not a readable zip file: ${(e as Error).message}`);
    }
    return PackageArchive.openFd(fd, limits);
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
    return PackageArchive.checked(zip, fd, limits); // its close() closes the descriptor
  }

  /** The central directory, read once and checked entry by entry; the zip is closed on a refusal. */
  private static async checked(zip: yauzl.ZipFile, fd: number, limits: ArchiveLimits): Promise<PackageArchive> {
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
    return new PackageArchive(zip, fd, files, dirs);
  }

  close(): void {
    if (this.reading > 0) this.closeWanted = true;
    else this.zip.close();
  }

  private async whileOpen<T>(name: string, work: () => Promise<T>): Promise<T> {
    if (!this.zip.isOpen) throw invalid(`entry ${name}: the package is closed`);
    this.reading++;
    try {
      return await work();
    } finally {
      if (--this.reading === 0 && this.closeWanted) this.zip.close();
    }
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
      await pipeline(
        await this.stream(entry),
        checkingStream(new Crc32Check(entry)),
        async function* (src: AsyncIterable<Buffer>) {
          for await (const c of src) chunks.push(c);
        },
      );
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
   * A stored entry is read from the package file directly (readStored), any other through yauzl.
   * `sync: false` leaves out the fsync, for a caller that fsyncs a whole tree's new files at once
   * before anything can name the tree (VersionStore.finalize): one fsync per file, each waiting
   * for its own journal commit, is most of the time of an install of many small files.
   * `parentExists`: the caller has just seen `dest`'s directory, which is then not made again.
   */
  async extractTo(
    name: string,
    dest: string,
    expected?: PayloadExpectation,
    { sync = true, parentExists = false }: { sync?: boolean; parentExists?: boolean } = {},
  ): Promise<void> {
    const entry = this.files.get(name);
    if (!entry) throw new UpdaterError('INVALID_MANIFEST', `${name} is not a file in the package`);
    return this.whileOpen(name, () => this.writeEntry(entry, dest, expected, { sync, parentExists }));
  }

  private async writeEntry(
    entry: yauzl.Entry,
    dest: string,
    expected: PayloadExpectation | undefined,
    { sync, parentExists }: { sync: boolean; parentExists: boolean },
  ) {
    const name = entry.fileName;
    const tmp = partialName(dest);
    const mode = PackageArchive.modeOf(entry);
    let out: FileHandle | null = null;
    try {
      if (!parentExists) await fsp.mkdir(path.dirname(dest), { recursive: true, mode: 0o755 });
      // a new inode, never an existing name (O_EXCL): a leftover temp name in a staging tree seeded
      // from `current` could be a hard link to a kept snapshot's file, or a symlink to anywhere, and
      // is removed first. Tried before any removal: a leftover is rare, a look for one per file is not.
      const file = (out = await fsp.open(tmp, NEW_FILE, mode).catch(async (e: unknown) => {
        if (!isErrnoException(e, 'EEXIST')) throw e;
        await fsp.rm(tmp, { force: true });
        return fsp.open(tmp, NEW_FILE, mode);
      }));
      if (entry.compressionMethod === 0) await this.readStored(entry, expected, (chunk) => writeFully(file, chunk));
      else await this.readStream(entry, expected, appendingTo(file));
      // the umask must not change the zip's mode
      await file.chmod(mode);
      if (sync) await file.sync();
      out = null;
      await file.close();
      failpoint('installer.extracted-before-rename');
      await fsp.rename(tmp, dest);
    } catch (e) {
      await out?.close().catch(() => undefined);
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
      await this.whileOpen(name, () =>
        entry.compressionMethod === 0 ? this.readStored(entry, expected) : this.readStream(entry, expected),
      );
    } catch (e) {
      throw UpdaterError.from(e, 'INVALID_PACKAGE', `entry ${name}: `);
    }
  }

  /**
   * A stored (uncompressed) entry read from the package file itself: positioned reads of
   * STORED_READ_BYTES into two buffers used in turn, each chunk checked (CRC-32, then the payload
   * check) and handed to `sink` while the next is read. yauzl's stream of the same bytes costs a
   * new 64 KiB Buffer and a thread-pool read per chunk and a stream stage per check: ~1.7× the
   * CPU, and up to 15 MiB of chunks awaiting a collection (BENCHMARKS.md, the installer's section).
   * The first read takes the entry's local header with its first chunk (localData): a small file
   * is one read, and none waits for another extraction's (yauzl's own header reads go one at a time).
   */
  private async readStored(
    entry: yauzl.Entry,
    expected: PayloadExpectation | undefined,
    sink?: (chunk: Buffer) => Promise<void>,
  ): Promise<void> {
    let writing: Promise<void> = Promise.resolve();
    let buffers: Buffer[] | null = null;
    try {
      const size = entry.compressedSize; // the uncompressed size: yauzl checks it (validateEntrySizes)
      const firstData = Math.min(size, STORED_READ_BYTES);
      buffers = this.readBuffers.take(firstData);
      const crc = new Crc32Check(entry);
      const payload = expected && new PayloadCheck(expected);
      // the header, its name, room for its extra field, the first chunk: no more than those
      const firstRead = buffers[0]!.subarray(
        0,
        LOCAL_HEADER_BYTES + entry.fileNameLength + LOCAL_EXTRA_ROOM + firstData,
      );
      let { fileDataStart, first } = await this.localData(entry, firstRead);
      for (let done = 0, turn = 0; done < size; turn ^= 1) {
        const length = Math.min(STORED_READ_BYTES, size - done);
        let chunk: Buffer;
        if (first && first.length >= length) chunk = first.subarray(0, length);
        else {
          chunk = buffers[turn]!.subarray(0, length);
          await readFully(this.fd, chunk, fileDataStart + done, endedInside);
        }
        first = null;
        done += chunk.length;
        crc.update(chunk);
        payload?.update(chunk);
        await writing; // the other buffer's write: only one under way, in order
        if (sink) {
          writing = sink(chunk);
          writing.catch(() => undefined); // awaited above or below; a failure meanwhile is not unhandled
        }
      }
      await writing;
      crc.end();
      payload?.end();
    } finally {
      await writing.catch(() => undefined); // nothing writes from the buffers once this returns
      if (buffers) this.readBuffers.giveBack(buffers);
    }
  }

  /**
   * Where `entry`'s data starts, from its local header, read into `into` with as much of the data
   * as fits after it (`first`, null when the header's extra field took the room). The same checks
   * as yauzl's readLocalFileHeader: the header's signature, and its data within the file.
   */
  private async localData(entry: yauzl.Entry, into: Buffer): Promise<{ fileDataStart: number; first: Buffer | null }> {
    const at = entry.relativeOffsetOfLocalHeader;
    // an offset past the end (yauzl does not bound it) leaves no room at all
    const head = into.subarray(0, Math.max(0, Math.min(into.length, this.zip.fileSize - at)));
    if (head.length < LOCAL_HEADER_BYTES) throw new Error('the local file header runs past the end of the file');
    await readFully(this.fd, head, at, endedInside);
    const signature = head.readUInt32LE(0);
    if (signature !== LOCAL_HEADER_SIGNATURE)
      throw new Error(`invalid local file header signature: 0x${signature.toString(16)}`);
    const dataOffset = LOCAL_HEADER_BYTES + head.readUInt16LE(26) + head.readUInt16LE(28);
    const fileDataStart = at + dataOffset;
    if (fileDataStart + entry.compressedSize > this.zip.fileSize)
      throw new Error(
        `file data overflows file bounds: ${fileDataStart} + ${entry.compressedSize} > ${this.zip.fileSize}`,
      );
    return { fileDataStart, first: dataOffset < head.length ? head.subarray(dataOffset) : null };
  }

  /** Any other entry through yauzl's stream (a deflated one is inflated there), checked the same way. */
  private async readStream(entry: yauzl.Entry, expected: PayloadExpectation | undefined, sink?: Writable) {
    const stages: (NodeJS.ReadableStream | NodeJS.ReadWriteStream | NodeJS.WritableStream)[] = [
      await this.stream(entry),
      checkingStream(new Crc32Check(entry)),
    ];
    if (expected) stages.push(checkingStream(new PayloadCheck(expected)));
    stages.push(sink ?? new Writable({ write: (_chunk, _encoding, done) => done() })); // the checks are the point
    await pipeline(stages);
  }

  private async stream(entry: yauzl.Entry) {
    try {
      return await this.zip.openReadStreamPromise(entry);
    } catch (e) {
      throw invalid(`entry ${entry.fileName}: ${(e as Error).message}`);
    }
  }
}
