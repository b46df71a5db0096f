import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Agent } from 'undici';
import { transfer, type Position, type TransferOptions } from '../services/fetcher/transfer.js';
import { UpdaterError } from '../shared/errors.js';
import { Origin } from './helpers/origin.js';
import { tempDir } from './helpers/temp-dir.js';

const SIZE = 256 * 1024 + 123;
const origin = new Origin(SIZE);
const agent = new Agent({ headersTimeout: 300, bodyTimeout: 300, connect: { timeout: 1000 } });
before(() => origin.start());
after(async () => {
  await origin.stop();
  await agent.close();
});

const fresh: Position = { offset: 0, etag: null, lastModified: null };

async function run(over: Partial<TransferOptions> = {}) {
  const dir = tempDir('xfer-');
  const partFile = path.join(dir, 'pkg.part');
  origin.requests.length = 0;
  const retries: Array<{ delayMs: number; reason: string }> = [];
  const digests = await transfer({
    url: origin.url(),
    size: SIZE,
    partFile,
    start: fresh,
    allowHttp: true,
    dispatcher: agent,
    retryAttempts: 3,
    retryBaseMs: 5,
    retryAfterMaxMs: 60_000,
    signal: new AbortController().signal,
    onProgress: () => undefined,
    onRetry: (r) => retries.push(r),
    ...over,
  });
  const bytes = await fsp.readFile(over.partFile ?? partFile);
  return { digests, bytes, retries, requests: [...origin.requests] };
}

const expectFailure = async (code: string, pattern: RegExp, over: Partial<TransferOptions> = {}) => {
  await assert.rejects(
    run(over),
    (e: unknown) => e instanceof UpdaterError && e.code === code && pattern.test(e.message),
  );
};

function assertWhole(r: Awaited<ReturnType<typeof run>>) {
  assert.equal(r.digests.md5, origin.md5);
  assert.equal(r.digests.sha256, origin.sha256);
  assert.ok(r.bytes.equals(origin.body));
}

/** A transfer resumed from the first `offset` bytes of the package already on disk. */
async function resume(offset: number, over: Partial<TransferOptions> = {}) {
  return run({ partFile: await partial(offset), start: { offset, etag: origin.etag, lastModified: null }, ...over });
}

async function partial(bytes: number): Promise<string> {
  const dir = tempDir('xfer-');
  const file = path.join(dir, 'pkg.part');
  await fsp.writeFile(file, origin.body.subarray(0, bytes));
  return file;
}

test('an honest server: one request, no Range, both hashes computed inline', async () => {
  origin.sequence();
  const r = await run();
  assertWhole(r);
  assert.equal(r.requests.length, 1);
  assert.equal(r.requests[0].range, undefined);
});

test('resume from a partial file asks Range + If-Range and appends the 206', async () => {
  origin.sequence();
  const r = await resume(100_000);
  assertWhole(r);
  assert.deepEqual(
    r.requests.map((q) => [q.range, q.ifRange]),
    [['bytes=100000-', origin.etag]],
  );
});

test('a cut connection resumes from the bytes already written', async () => {
  origin.sequence({ kind: 'cut', after: 70_000 }, { kind: 'cut', after: 10_000 });
  const r = await run();
  assertWhole(r);
  assert.equal(r.requests.length, 3);
  assert.match(r.requests[1].range!, /^bytes=\d+-$/);
  assert.ok(Number(/\d+/.exec(r.requests[1].range!)![0]) > 0);
});

test('a weak ETag is never an If-Range: the resume after a cut asks with Last-Modified and appends the 206', async () => {
  const weak = 'W/"v1"';
  origin.sequence({ kind: 'serve', etag: weak, cutAfter: 70_000 }, { kind: 'serve', etag: weak });
  const r = await run();
  assertWhole(r);
  assert.equal(r.requests.length, 2);
  assert.match(r.requests[1].range ?? '', /^bytes=[1-9]\d*-$/);
  assert.equal(r.requests[1].ifRange, 'Wed, 25 Nov 2026 10:00:00 GMT');
});

test('chunked, without Content-Length: the body arrives whole, its end is the chunked terminator', async () => {
  origin.sequence({ kind: 'long', extra: 0 }); // no Content-Length: Node's server sends it chunked
  const r = await run();
  assertWhole(r);
  assert.equal(r.requests.length, 1);
});

test('a server that ignores Range (200) makes the download start again from byte 0', async () => {
  origin.sequence({ kind: 'ignore-range' });
  const r = await resume(50_000);
  assertWhole(r);
  assert.equal(r.requests.length, 1);
});

test('an ETag changed between attempts: If-Range gets the whole new file', async () => {
  origin.sequence();
  const partFile = await partial(50_000);
  await fsp.writeFile(partFile, Buffer.alloc(50_000, 7)); // bytes of an older build of the package
  const r = await run({ partFile, start: { offset: 50_000, etag: '"old-build"', lastModified: null } });
  assertWhole(r);
  assert.equal(r.requests[0].ifRange, '"old-build"');
});

test('a 206 that starts elsewhere than asked is never appended: full restart', async () => {
  origin.sequence({ kind: 'bad-range', start: 10 });
  const r = await resume(50_000);
  assertWhole(r);
  assert.equal(r.requests[0].range, 'bytes=50000-');
  assert.equal(r.requests[1].range, undefined);
});

test('a 206 without Content-Range is never appended', async () => {
  origin.sequence({ kind: 'no-range-206' });
  const r = await resume(1000);
  assertWhole(r);
  assert.equal(r.requests.length, 2);
});

test('416 on a complete file verifies what is there, without a loop', async () => {
  origin.sequence();
  const r = await resume(SIZE);
  assertWhole(r);
  assert.equal(r.requests.length, 0, 'nothing left to ask for');
});

test('416 on an incomplete file restarts from 0 once', async () => {
  origin.sequence({ kind: 'status', code: 416 });
  const r = await resume(5000);
  assertWhole(r);
  assert.deepEqual(
    r.requests.map((q) => q.range),
    ['bytes=5000-', undefined],
  );
  origin.script(() => ({ kind: 'status', code: 416 }));
  await expectFailure('DOWNLOAD_FAILED', /HTTP 416 for the whole file/);
});

test('5xx answers are retried with backoff, then succeed', async () => {
  origin.sequence({ kind: 'status', code: 503 }, { kind: 'status', code: 500 });
  const r = await run();
  assertWhole(r);
  assert.equal(r.requests.length, 3);
  assert.deepEqual(
    r.retries.map((x) => x.reason),
    ['HTTP 503', 'HTTP 500'],
  );
  assert.ok(r.retries[1].delayMs >= r.retries[0].delayMs, 'the delay grows');
});

test('Retry-After is honoured on 429 and 503, capped by the configuration', async () => {
  origin.sequence({ kind: 'status', code: 429, headers: { 'retry-after': '1' } });
  const r = await run();
  assertWhole(r);
  assert.ok(r.retries[0].delayMs >= 1000);
  origin.sequence({ kind: 'status', code: 503, headers: { 'retry-after': '3600' } });
  const capped = await run({ retryAfterMaxMs: 50 });
  assert.ok(capped.retries[0].delayMs <= 50);
});

test('5xx forever fails with DOWNLOAD_FAILED after the configured attempts', async () => {
  origin.script(() => ({ kind: 'status', code: 502 }));
  await expectFailure('DOWNLOAD_FAILED', /HTTP 502 \(gave up after 4 attempts\)/);
  assert.equal(origin.requests.length, 4);
});

test('404 and other 4xx fail at once', async () => {
  for (const code of [404, 403, 410]) {
    origin.script(() => ({ kind: 'status', code }));
    await expectFailure('DOWNLOAD_FAILED', new RegExp(`HTTP ${code}`));
    assert.equal(origin.requests.length, 1);
  }
});

test('a stalled body times out and the download resumes', async () => {
  origin.sequence({ kind: 'stall', after: 80_000 });
  const r = await run();
  assertWhole(r);
  assert.equal(r.requests.length, 2);
  assert.match(r.retries[0].reason, /^network error: UND_ERR_BODY_TIMEOUT: /, 'the reason names the timeout');
});

test('a short body (connection closed before Content-Length) resumes', async () => {
  origin.sequence({ kind: 'short', send: 9000 });
  const r = await run();
  assertWhole(r);
  assert.ok(r.requests.length >= 2);
});

test('a Content-Length other than package_size is PACKAGE_SIZE_MISMATCH', async () => {
  origin.script(() => ({ kind: 'lie-length', length: SIZE - 1 }));
  await expectFailure('PACKAGE_SIZE_MISMATCH', /expected 262267 bytes, but the server offers 262266/);
});

test('a body longer than package_size is PACKAGE_SIZE_MISMATCH, without writing past it', async () => {
  origin.script(() => ({ kind: 'long', extra: 10 }));
  const dir = tempDir('xfer-');
  const partFile = path.join(dir, 'p');
  await expectFailure('PACKAGE_SIZE_MISMATCH', /more than/, { partFile });
  assert.ok((await fsp.stat(partFile)).size <= SIZE);
});

test('redirects are followed, within limits and the scheme policy', async () => {
  origin.script((n, p) => (p === '/pkg.zip' ? { kind: 'redirect', to: '/real.zip', code: 307 } : { kind: 'serve' }));
  const r = await run();
  assertWhole(r);
  assert.deepEqual(
    r.requests.map((q) => q.path),
    ['/pkg.zip', '/real.zip'],
  );

  origin.script(() => ({ kind: 'redirect', to: '/again' }));
  await expectFailure('DOWNLOAD_FAILED', /more than 5 redirects/);

  origin.script(() => ({ kind: 'redirect', to: 'ftp://127.0.0.1/pkg.zip' }));
  await expectFailure('DOWNLOAD_FAILED', /refused URL scheme ftp:/);

  origin.script(() => ({ kind: 'redirect', to: origin.url('/plain.zip') }));
  await expectFailure('DOWNLOAD_FAILED', /refused URL scheme http:/, { allowHttp: false });
});

test('an unreachable server fails after the retries', async () => {
  await expectFailure('DOWNLOAD_FAILED', /network error.*gave up after 2 attempts/, {
    url: 'http://127.0.0.1:9/pkg.zip',
    retryAttempts: 1,
  });
});

test('stopping (abort) ends the transfer at once with the abort reason', async () => {
  origin.script(() => ({ kind: 'serve', throttle: { bytes: 1000, everyMs: 20 } }));
  const controller = new AbortController();
  const p = run({
    signal: controller.signal,
    onProgress: (pos) => {
      if (pos.offset > 2000) controller.abort(new Error('stopping'));
    },
  });
  await assert.rejects(p, /stopping/);
});

test('progress callbacks see every offset and can make the bytes durable', async () => {
  origin.sequence();
  const seen: number[] = [];
  let syncs = 0;
  await run({
    onProgress: async (pos, sync) => {
      seen.push(pos.offset);
      await sync();
      syncs++;
    },
  });
  assert.equal(seen.at(-1), SIZE);
  assert.ok(seen.every((v, i) => i === 0 || v > seen[i - 1]));
  assert.equal(syncs, seen.length);
});
