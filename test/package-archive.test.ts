import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs, { constants, fstatSync, openSync, promises as fsp } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import path from 'node:path';
import { test } from 'node:test';
import { PackageArchive, partialName, STORED_READ_BYTES } from '../shared/package-archive.js';
import type { PayloadExpectation } from '../shared/trust/payload.js';
import { buildZip, sameCrcOtherBytes, storedDataOffset, withLocalExtra } from './helpers/packages.js';
import { tempDir } from './helpers/temp-dir.js';

// A stored (uncompressed) entry is read from the package file with positioned reads into two
// buffers used in turn, not through yauzl's stream: the same checks (CRC-32, the signed size and
// SHA-256), the same refusals, across chunk boundaries, and close() waiting for the reads.

const dir = tempDir('package-archive-');
const limits = { maxBytes: 1 << 30, maxEntries: 10 };
// several reads, the last one short
const data = randomBytes(3 * STORED_READ_BYTES + 12345);
const expectation = (bytes: Buffer): PayloadExpectation => ({
  module: 'a',
  src: 'bin/a',
  size: bytes.length,
  sha256: createHash('sha256').update(bytes).digest('hex'),
});

let serial = 0;
async function packageFile(zip: Buffer): Promise<string> {
  const file = path.join(dir, `p${++serial}.zip`);
  await fsp.writeFile(file, zip);
  return file;
}
const storedZip = () => buildZip([{ name: 'bin/a', data, compress: false, mode: 0o100755 }]);

/** The extraction's outcome: the error's message, or null; and that no temp name is left. */
async function extract(file: string, expected: PayloadExpectation | undefined, dest: string): Promise<string | null> {
  const archive = await PackageArchive.open(file, limits);
  try {
    await archive.extractTo('bin/a', dest, expected);
    return null;
  } catch (e) {
    return (e as Error).message;
  } finally {
    archive.close();
    await assert.rejects(fsp.access(partialName(dest)), 'no temp name left');
  }
}

test('a stored entry of several reads is written whole, with its mode, and passes its checks', async () => {
  const dest = path.join(dir, 'ok/bin/a');
  assert.equal(await extract(await packageFile(await storedZip()), expectation(data), dest), null);
  assert.ok((await fsp.readFile(dest)).equals(data));
  assert.equal((await fsp.stat(dest)).mode & 0o7777, 0o755);
  // the packaging tool's verify reads it the same way without writing
  const archive = await PackageArchive.open(await packageFile(await storedZip()), limits);
  await archive.checkEntry('bin/a', expectation(data));
  archive.close();
});

test('a deflated entry goes through yauzl and is written whole, fsynced or not (its handle closes)', async () => {
  // compressible, so that zlib's chunks queue up behind a write and go out together
  const text = Buffer.from('line of a log file\n'.repeat(200_000));
  const file = await packageFile(await buildZip([{ name: 'bin/a', data: text, compress: true }]));
  for (const sync of [false, true]) {
    const archive = await PackageArchive.open(file, limits);
    const dest = path.join(dir, `deflated-${sync}/a`);
    await archive.extractTo('bin/a', dest, expectation(text), { sync });
    archive.close();
    assert.ok((await fsp.readFile(dest)).equals(text));
  }
});

test('a stored entry holds two read buffers, not a new Buffer per read awaiting a collection', async () => {
  const big = randomBytes(32 * STORED_READ_BYTES);
  const file = await packageFile(await buildZip([{ name: 'bin/a', data: big, compress: false }]));
  const archive = await PackageArchive.open(file, limits);
  const before = process.memoryUsage().arrayBuffers;
  let peak = 0;
  let sampling = true;
  const sample = () => {
    peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
    if (sampling) setImmediate(sample);
  };
  sample();
  await archive.extractTo('bin/a', path.join(dir, 'held/a'), expectation(big), { sync: false });
  sampling = false;
  archive.close();
  // yauzl's stream: 64 KiB per read, each a new ArrayBuffer, held until a collection finds it
  assert.ok(peak <= 3 * STORED_READ_BYTES, `${peak} bytes of ArrayBuffers at once`);
});

test('stored entries one after another reuse the two read buffers, and still each get their own bytes', async () => {
  const sizes = [16 * 1024, 2 * STORED_READ_BYTES + 1, STORED_READ_BYTES, 3 * STORED_READ_BYTES, 4096];
  const files = sizes.map((size, i) => ({ name: `bin/f${i}`, data: randomBytes(size), compress: false }));
  const archive = await PackageArchive.open(await packageFile(await buildZip(files)), limits);
  const allocated: number[] = [];
  const allocUnsafeSlow = Buffer.allocUnsafeSlow;
  Buffer.allocUnsafeSlow = (size: number) => {
    allocated.push(size);
    return allocUnsafeSlow(size);
  };
  try {
    for (const f of files) {
      await archive.extractTo(f.name, path.join(dir, 'reuse', f.name), expectation(f.data), { sync: false });
      await archive.checkEntry(f.name, expectation(f.data));
    }
  } finally {
    Buffer.allocUnsafeSlow = allocUnsafeSlow;
    archive.close();
  }
  for (const f of files) assert.ok((await fsp.readFile(path.join(dir, 'reuse', f.name))).equals(f.data), f.name);
  // a pair for the first, small entry, a larger pair once an entry needs it, then none: each
  // pair as long as a read (with room for the local header in front of the first chunk)
  assert.equal(allocated.length, 4, String(allocated));
  const [small, , large] = allocated as [number, number, number, number];
  assert.deepEqual(allocated, [small, small, large, large]);
  assert.ok(small >= 16 * 1024 && small <= 18 * 1024, `small pair ${small}`);
  assert.ok(large >= STORED_READ_BYTES && large <= STORED_READ_BYTES + 2048, `large pair ${large}`);
});

/** The reads `work` makes through node:fs's read (ours and yauzl's): how many, and how many bytes asked for. */
async function readsDuring(work: () => Promise<void>): Promise<{ calls: number; bytes: number }> {
  const reads = { calls: 0, bytes: 0 };
  const original = fs.read;
  (fs as { read: unknown }).read = (...args: unknown[]) => {
    reads.calls++;
    reads.bytes += args[3] as number; // read(fd, buffer, offset, length, position, callback)
    return (original as (...a: unknown[]) => void)(...args);
  };
  syncBuiltinESMExports();
  try {
    await work();
  } finally {
    fs.read = original;
    syncBuiltinESMExports();
  }
  return reads;
}

test('large entries with names of every length share one kept pair, and a small entry after them reads only its own bytes', async () => {
  const large = Array.from({ length: 6 }, (_, i) => ({
    name: `bin/${'n'.repeat(10 + 40 * i)}`,
    data: randomBytes(STORED_READ_BYTES + 100),
    compress: false,
  }));
  const small = { name: 'bin/small', data: randomBytes(1000), compress: false };
  const archive = await PackageArchive.open(await packageFile(await buildZip([...large, small])), limits);
  const allocated: number[] = [];
  const allocUnsafeSlow = Buffer.allocUnsafeSlow;
  Buffer.allocUnsafeSlow = (size: number) => {
    allocated.push(size);
    return allocUnsafeSlow(size);
  };
  let bytesRead = 0;
  try {
    for (const f of large) await archive.checkEntry(f.name, expectation(f.data));
    ({ bytes: bytesRead } = await readsDuring(() => archive.checkEntry(small.name, expectation(small.data))));
  } finally {
    Buffer.allocUnsafeSlow = allocUnsafeSlow;
    archive.close();
  }
  assert.equal(allocated.length, 4, `one large pair for all six, one small: ${allocated.join(', ')}`);
  // its local header (30 bytes, its name, room for an extra field) and its 1000 bytes
  assert.ok(bytesRead >= 1000 && bytesRead < 2000, `read ${bytesRead} bytes`);
});

test('a small stored entry is one read of the package file: its local header with its bytes', async () => {
  const small = randomBytes(16 * 1024);
  const files = [0, 1, 2].map((i) => ({ name: `bin/s${i}`, data: small, compress: false }));
  const archive = await PackageArchive.open(await packageFile(await buildZip(files)), limits);
  try {
    for (const f of files) {
      const dest = path.join(dir, 'one-read', f.name);
      assert.equal((await readsDuring(() => archive.extractTo(f.name, dest, expectation(f.data)))).calls, 1, f.name);
      assert.ok((await fsp.readFile(dest)).equals(f.data));
    }
  } finally {
    archive.close();
  }
});

test('a local header whose extra field is longer than the first read holds: the bytes read after it, checked the same', async () => {
  for (const [extra, size] of [
    [1000, 16 * 1024], // part of the data in the first read: read again whole
    [65_000, 4096], // none of it
    [300, STORED_READ_BYTES + 5], // a large entry: a second chunk follows
  ] as const) {
    const bytes = randomBytes(size);
    const zip = withLocalExtra(await buildZip([{ name: 'bin/x', data: bytes, compress: false }]), extra);
    const archive = await PackageArchive.open(await packageFile(zip), limits);
    const dest = path.join(dir, `extra-${extra}/bin/x`);
    try {
      await archive.extractTo('bin/x', dest, expectation(bytes));
    } finally {
      archive.close();
    }
    assert.ok((await fsp.readFile(dest)).equals(bytes), `extra ${extra}`);
  }
});

test('a local header that is not one: refused, nothing written', async () => {
  const zip = await storedZip();
  zip[storedDataOffset(zip, 'bin/a').header]! ^= 0xff;
  const dest = path.join(dir, 'no-header/a');
  assert.match(
    (await extract(await packageFile(zip), expectation(data), dest))!,
    /invalid local file header signature/,
  );
  await assert.rejects(fsp.access(dest));
});

test('stored entries read at the same time each read into buffers of their own', async () => {
  const files = [0, 1, 2].map((i) => ({
    name: `bin/c${i}`,
    data: randomBytes(3 * STORED_READ_BYTES + i),
    compress: false,
  }));
  const archive = await PackageArchive.open(await packageFile(await buildZip(files)), limits);
  try {
    await archive.checkEntry(files[0]!.name, expectation(files[0]!.data)); // a pair is kept now
    // one shared pair would mix their bytes: the CRC-32 and the SHA-256 would refuse them
    await Promise.all(files.map((f) => archive.checkEntry(f.name, expectation(f.data))));
  } finally {
    archive.close();
  }
});

test('a byte changed in the package file: CRC mismatch, wherever it falls; nothing written', async () => {
  const zip = await storedZip();
  const { offset } = storedDataOffset(zip, 'bin/a');
  for (const at of [0, STORED_READ_BYTES - 1, STORED_READ_BYTES, data.length - 1]) {
    const bad = Buffer.from(zip);
    bad[offset + at]! ^= 0x40;
    const dest = path.join(dir, `crc${at}/a`);
    assert.equal(await extract(await packageFile(bad), expectation(data), dest), 'CRC mismatch in bin/a');
    await assert.rejects(fsp.access(dest));
  }
});

test('other bytes with the same CRC-32: the signed SHA-256 refuses them', async () => {
  const zip = await storedZip();
  const { offset, length } = storedDataOffset(zip, 'bin/a');
  sameCrcOtherBytes(zip.subarray(offset, offset + length)).copy(zip, offset);
  const dest = path.join(dir, 'sha/a');
  assert.match((await extract(await packageFile(zip), expectation(data), dest))!, /^module a: bin\/a has SHA-256 /);
  await assert.rejects(fsp.access(dest));
});

test('the package file cut short after it was opened: the entry is refused, not the disk', async () => {
  const file = await packageFile(await storedZip());
  const archive = await PackageArchive.open(file, limits);
  await fsp.truncate(file, storedDataOffset(await fsp.readFile(file), 'bin/a').offset + STORED_READ_BYTES + 7);
  const dest = path.join(dir, 'cut/a');
  await assert.rejects(archive.extractTo('bin/a', dest, expectation(data)), {
    code: 'INVALID_PACKAGE',
    message: 'entry bin/a: the package file ends inside the entry',
  });
  archive.close();
  await assert.rejects(fsp.access(partialName(dest)));
});

test('close() during an extraction: the descriptor stays open until its reads are done', async () => {
  const fd = openSync(await packageFile(await storedZip()), constants.O_RDONLY);
  const archive = await PackageArchive.openFd(fd, limits);
  const dest = path.join(dir, 'closing/a');
  const extracting = archive.extractTo('bin/a', dest, expectation(data));
  archive.close();
  await extracting;
  assert.ok((await fsp.readFile(dest)).equals(data));
  assert.throws(() => fstatSync(fd), { code: 'EBADF' }, 'closed once the reads ended');
  await assert.rejects(archive.extractTo('bin/a', path.join(dir, 'closed/a'), expectation(data)), {
    code: 'INVALID_PACKAGE',
  });
});
