import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { BATCH_BYTES, readBody } from '../services/fetcher/body-reader.js';
import { PartFile, unwritten } from '../services/fetcher/part-file.js';
import { UpdaterError } from '../shared/errors.js';
import { tempDir } from './helpers/temp-dir.js';

// The fetcher's body reader: chunks that arrive while a write is under way go out together in
// one writev (fewer writes and hash calls per GiB), every byte lands in order, and the bytes
// received before a failure are written before the failure is reported (a resume goes on from
// them).

const CHUNK = 16 * 1024;

async function freshPart(): Promise<{ part: PartFile; file: string }> {
  const file = path.join(tempDir('body-reader-'), 'pkg.part');
  return { part: await PartFile.open(file, { offset: 0, etag: null, lastModified: null }), file };
}

/** A body that hands over `chunks` as fast as it is read, then fails with `error` when given. */
function body(chunks: Buffer[], error?: Error): Readable {
  let i = 0;
  return new Readable({
    read() {
      if (i < chunks.length) this.push(chunks[i++]);
      else if (error) this.destroy(error);
      else this.push(null);
    },
  });
}

const split = (bytes: Buffer): Buffer[] =>
  Array.from({ length: Math.ceil(bytes.length / CHUNK) }, (_, i) => bytes.subarray(i * CHUNK, (i + 1) * CHUNK));

test('a fast body is written in batches, in order, and hashed whole', async () => {
  const bytes = randomBytes(8 * 1024 * 1024 + 5);
  const chunks = split(bytes);
  const { part, file } = await freshPart();
  let writes = 0;
  try {
    await readBody(body(chunks), part, {
      size: bytes.length,
      tooLong: () => new UpdaterError('PACKAGE_SIZE_MISMATCH', 'too long'),
      afterWrite: () => void writes++,
    });
    assert.equal(part.position.offset, bytes.length);
    const digests = await part.finish();
    assert.equal(digests.sha256, createHash('sha256').update(bytes).digest('hex'));
    assert.equal(digests.md5, createHash('md5').update(bytes).digest('hex'));
  } finally {
    await part.close();
  }
  assert.ok((await fsp.readFile(file)).equals(bytes));
  // one write per chunk before batching: 513 here
  assert.ok(writes < chunks.length / 4, `${writes} writes for ${chunks.length} chunks`);
  assert.ok(writes >= Math.ceil(bytes.length / (BATCH_BYTES + CHUNK)), `${writes} writes`);
});

// A socket read is an ArrayBuffer of its own (64 KiB over TCP, 16 KiB over TLS) whose memory,
// outside V8's heap, would otherwise wait for a collection: at loopback speed tens of MiB of
// them did. Freed once written and hashed, the download holds at most a batch of them.
test("a chunk that is its ArrayBuffer's only view is freed once written; a view into a larger one is left alone", async () => {
  const bytes = randomBytes(64 * CHUNK);
  // even chunks own their ArrayBuffer, as a socket's reads do (Buffer.alloc: Buffer.from would take
  // them from Node's shared pool), odd ones are views into `bytes`
  const owning = (c: Buffer) => {
    const own = Buffer.alloc(c.length);
    c.copy(own);
    return own;
  };
  const chunks = split(bytes).map((c, i) => (i % 2 === 0 ? owning(c) : c));
  const owned = chunks.filter((c) => c.buffer.byteLength === c.length);
  assert.equal(owned.length, 32);
  const { part, file } = await freshPart();
  let freedEarly = 0;
  try {
    await readBody(body(chunks), part, {
      size: bytes.length,
      tooLong: () => new UpdaterError('PACKAGE_SIZE_MISMATCH', 'too long'),
      afterWrite: () => {
        // every owned chunk written so far is already freed, before the reading ends
        let offset = 0;
        for (const [i, c] of chunks.entries()) {
          if (offset + CHUNK > part.position.offset) break;
          if (i % 2 === 0) {
            assert.equal(c.buffer.byteLength, 0, `chunk ${i}, written, still holds its memory`);
            freedEarly++;
          }
          offset += CHUNK;
        }
      },
    });
    const digests = await part.finish();
    assert.equal(digests.sha256, createHash('sha256').update(bytes).digest('hex'));
  } finally {
    await part.close();
  }
  assert.ok((await fsp.readFile(file)).equals(bytes));
  assert.ok(freedEarly > 0);
  assert.ok(owned.every((c) => c.buffer.byteLength === 0 && c.length === 0));
  assert.ok(chunks.filter((_, i) => i % 2 === 1).every((c) => c.length === CHUNK && c.buffer === bytes.buffer));
});

test('a network error: the bytes received before it are written, then it is reported', async () => {
  const bytes = randomBytes(40 * CHUNK);
  const { part, file } = await freshPart();
  try {
    await assert.rejects(
      readBody(body(split(bytes), new Error('socket hang up')), part, {
        size: 10 * bytes.length,
        tooLong: () => new UpdaterError('PACKAGE_SIZE_MISMATCH', 'too long'),
        afterWrite: () => undefined,
      }),
      /socket hang up/,
    );
    assert.equal(part.position.offset, bytes.length);
  } finally {
    await part.close();
  }
  assert.ok((await fsp.readFile(file)).equals(bytes));
});

test("the rate floor's refusal keeps the bytes before it; a body past the size writes nothing past it", async () => {
  const bytes = randomBytes(40 * CHUNK);
  const slow = await freshPart();
  let seen = 0;
  const floor = new UpdaterError('DOWNLOAD_FAILED', 'too slow');
  try {
    await assert.rejects(
      readBody(body(split(bytes)), slow.part, {
        size: bytes.length,
        observe: (n) => {
          seen += n;
          if (seen > 30 * CHUNK) throw floor;
        },
        tooLong: () => new UpdaterError('PACKAGE_SIZE_MISMATCH', 'too long'),
        afterWrite: () => undefined,
      }),
      (e: unknown) => e === floor,
    );
    assert.equal(slow.part.position.offset, 30 * CHUNK);
  } finally {
    await slow.part.close();
  }
  assert.ok((await fsp.readFile(slow.file)).equals(bytes.subarray(0, 30 * CHUNK)));

  const long = await freshPart();
  try {
    await assert.rejects(
      readBody(body(split(bytes)), long.part, {
        size: bytes.length - 1,
        tooLong: () => new UpdaterError('PACKAGE_SIZE_MISMATCH', 'too long'),
        afterWrite: () => undefined,
      }),
      (e: unknown) => e instanceof UpdaterError && e.code === 'PACKAGE_SIZE_MISMATCH',
    );
  } finally {
    await long.part.close();
  }
  assert.ok((await fsp.stat(long.file)).size < bytes.length);
});

test('a failing write ends the reading with its error and stops the body', async () => {
  const bytes = randomBytes(40 * CHUNK);
  const { part } = await freshPart();
  await part.close(); // every write now fails: EBADF
  const source = body(split(bytes));
  await assert.rejects(
    readBody(source, part, {
      size: bytes.length,
      tooLong: () => new UpdaterError('PACKAGE_SIZE_MISMATCH', 'too long'),
      afterWrite: () => undefined,
    }),
    (e: unknown) => e instanceof UpdaterError && e.code === 'DOWNLOAD_FAILED' && /cannot write/.test(e.message),
  );
  assert.ok(source.destroyed);
});

test('a short write leaves the rest of the batch, from the byte where it stopped', () => {
  const chunks = [Buffer.from('abc'), Buffer.from('defg'), Buffer.from('h')];
  for (let written = 0; written <= 8; written++) {
    assert.equal(Buffer.concat(unwritten(chunks, written)).toString(), 'abcdefgh'.slice(written));
  }
});

test(
  'a body that failed before the reading began (a reset right after the headers) is reported, not waited for',
  { timeout: 5000 },
  async () => {
    const { part } = await freshPart();
    const source = body([randomBytes(CHUNK)]);
    source.on('error', () => undefined);
    source.destroy(new Error('read ECONNRESET'));
    await new Promise((ok) => setImmediate(ok)); // its 'error' and 'close' are gone
    try {
      await assert.rejects(
        readBody(source, part, {
          size: CHUNK,
          tooLong: () => new UpdaterError('PACKAGE_SIZE_MISMATCH', 'too long'),
          afterWrite: () => undefined,
        }),
        /ECONNRESET/,
      );
    } finally {
      await part.close();
    }
  },
);
