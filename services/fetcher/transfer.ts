import { createHash, type Hash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { request, type Dispatcher } from 'undici';
import { isErrnoException, UpdaterError } from '../../shared/errors.js';
import { backoffDelay, sleep } from './backoff.js';
import { header, ifRangeValue, parseContentLength, parseContentRange, parseRetryAfter } from './http-headers.js';
import { failpoint } from '../../shared/failpoint.js';
import { RateFloor, type RateFloorSetting } from './rate-floor.js';

/** The resumable position: how many bytes of the part file are good, and what they came from. */
export interface Position {
  offset: number;
  etag: string | null;
  lastModified: string | null;
}

export interface TransferOptions {
  url: string;
  size: number;
  partFile: string;
  start: Position;
  allowHttp: boolean;
  dispatcher: Dispatcher;
  retryAttempts: number;
  retryBaseMs: number;
  retryAfterMaxMs: number;
  signal: AbortSignal;
  random?: () => number;
  /** After every chunk written; `sync` makes the bytes so far durable before a checkpoint. */
  onProgress: (position: Position, sync: () => Promise<void>) => void | Promise<void>;
  onRetry?: (info: { attempt: number; delayMs: number; reason: string; offset: number }) => void;
  onRequest?: (info: { url: string; range: string | null }) => void;
  /** The minimum average rate of each attempt (none when absent). */
  rateFloor?: RateFloorSetting;
}

export interface Digests {
  md5: string;
  sha256: string;
}

const MAX_REDIRECTS = 5;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** A failure worth another attempt: network trouble, 5xx/408/429, an unusable 206. */
class Transient extends Error {
  constructor(message: string, readonly retryAfterMs: number | null = null) {
    super(message);
  }
}

/** Drops an answer's body without an unhandled 'error' event from undici. */
function discard(res: Dispatcher.ResponseData): void {
  res.body.on('error', () => undefined);
  res.body.destroy();
}

const sizeMismatch = (expected: number, got: number | string) =>
  new UpdaterError('PACKAGE_SIZE_MISMATCH', `expected ${expected} bytes, but the server offers ${got}`);

function diskError(e: unknown): Error {
  if (isErrnoException(e, 'ENOSPC') || isErrnoException(e, 'EDQUOT')) return new UpdaterError('DISK_FULL', 'no space left while writing the package');
  return new UpdaterError('DOWNLOAD_FAILED', `cannot write the package: ${(e as Error).message}`);
}

async function hashPrefix(fh: fsp.FileHandle, length: number, hashes: Hash[]): Promise<void> {
  const buf = Buffer.allocUnsafe(1024 * 1024);
  let pos = 0;
  while (pos < length) {
    const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, length - pos), pos);
    if (bytesRead === 0) throw new Error(`part file shorter than ${length} bytes`);
    for (const h of hashes) h.update(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
}

async function writeAll(fh: fsp.FileHandle, chunk: Buffer, position: number): Promise<void> {
  let done = 0;
  try {
    while (done < chunk.length) {
      const { bytesWritten } = await fh.write(chunk, done, chunk.length - done, position + done);
      done += bytesWritten;
    }
  } catch (e) {
    throw diskError(e);
  }
}

/**
 * Brings the part file from `start.offset` to `size` bytes with MD5 and SHA-256 computed on the
 * way in. Resumes with Range + If-Range, restarts from 0 on a 200, never appends a 206 that does
 * not start exactly at the offset, retries transient failures with backoff. Throws UpdaterError.
 */
export async function transfer(o: TransferOptions): Promise<Digests> {
  let md5 = createHash('md5');
  let sha = createHash('sha256');
  const pos: Position = { ...o.start };
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(o.partFile, pos.offset > 0 ? 'r+' : 'w', 0o640);
    await fh.truncate(pos.offset);
  } catch (e) {
    throw diskError(e);
  }
  const restartFromZero = async () => {
    pos.offset = 0;
    pos.etag = null;
    pos.lastModified = null;
    md5 = createHash('md5');
    sha = createHash('sha256');
    await fh.truncate(0).catch((e) => { throw diskError(e); });
  };
  try {
    if (pos.offset > 0) await hashPrefix(fh, pos.offset, [md5, sha]);
    let failures = 0;
    let fullNext = false; // the last ranged answer was unusable: ask for the whole file
    while (pos.offset < o.size) {
      const before = pos.offset;
      let reason: string;
      let retryAfterMs: number | null = null;
      try {
        if (fullNext && pos.offset > 0) await restartFromZero();
        fullNext = false;
        const res = await get(o, pos);
        const status = res.statusCode;
        if (status === 200) {
          if (pos.offset > 0) await restartFromZero();
          const length = parseContentLength(header(res.headers, 'content-length'));
          if (length !== null && length !== o.size) {
            discard(res);
            throw sizeMismatch(o.size, length);
          }
          pos.etag = header(res.headers, 'etag') ?? null;
          pos.lastModified = header(res.headers, 'last-modified') ?? null;
        } else if (status === 206) {
          const range = parseContentRange(header(res.headers, 'content-range'));
          const etag = header(res.headers, 'etag') ?? null;
          if (range && range.total !== null && range.total !== o.size) {
            discard(res);
            throw sizeMismatch(o.size, range.total);
          }
          if (!range || range.start !== pos.offset || (pos.etag && etag && etag !== pos.etag)) {
            discard(res);
            fullNext = true;
            throw new Transient(`unusable 206 (Content-Range ${header(res.headers, 'content-range') ?? 'missing'}) for offset ${pos.offset}`);
          }
        } else if (status === 416) {
          discard(res);
          if (pos.offset === o.size) break; // we already hold every byte: verify what is there
          if (pos.offset === 0) throw new UpdaterError('DOWNLOAD_FAILED', 'HTTP 416 for the whole file');
          fullNext = true;
          throw new Transient(`HTTP 416 at offset ${pos.offset}`);
        } else if (status === 408 || status === 429 || status >= 500) {
          discard(res);
          throw new Transient(`HTTP ${status}`, parseRetryAfter(header(res.headers, 'retry-after')));
        } else {
          discard(res);
          throw new UpdaterError('DOWNLOAD_FAILED', `HTTP ${status} from the package server`);
        }
        const floor = o.rateFloor ? new RateFloor(o.rateFloor) : null;
        for await (const chunk of res.body as AsyncIterable<Buffer>) {
          floor?.observe(chunk.length);
          if (pos.offset + chunk.length > o.size) {
            discard(res);
            throw sizeMismatch(o.size, `more than ${o.size} bytes`);
          }
          // hash while the write is under way: the CPU and the disk overlap
          const written = writeAll(fh, chunk, pos.offset);
          md5.update(chunk);
          sha.update(chunk);
          await written;
          failpoint('fetcher.chunk-written');
          pos.offset += chunk.length;
          await o.onProgress({ ...pos }, () => fh.datasync());
        }
        if (pos.offset < o.size) throw new Transient(`connection closed at ${pos.offset} of ${o.size} bytes`);
        continue;
      } catch (e) {
        if (o.signal.aborted) throw o.signal.reason;
        if (e instanceof UpdaterError) throw e;
        reason = e instanceof Transient ? e.message : `network error: ${(e as Error).message}`;
        retryAfterMs = e instanceof Transient ? e.retryAfterMs : null;
      }
      failures = pos.offset > before ? 1 : failures + 1;
      if (failures > o.retryAttempts) {
        throw new UpdaterError('DOWNLOAD_FAILED', `${reason} (gave up after ${failures} attempts)`);
      }
      const delayMs = Math.max(backoffDelay(failures, o.retryBaseMs, o.random), Math.min(retryAfterMs ?? 0, o.retryAfterMaxMs));
      o.onRetry?.({ attempt: failures, delayMs, reason, offset: pos.offset });
      await sleep(delayMs, o.signal);
    }
    await fh.sync().catch((e) => { throw diskError(e); });
    return { md5: md5.digest('hex'), sha256: sha.digest('hex') };
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/** One GET, following redirects itself so each hop is checked against the scheme policy. */
async function get(o: TransferOptions, pos: Position): Promise<Dispatcher.ResponseData> {
  let url = new URL(o.url);
  for (let hop = 0; ; hop++) {
    const headers: Record<string, string> = { 'accept-encoding': 'identity' };
    let range: string | null = null;
    if (pos.offset > 0) {
      range = `bytes=${pos.offset}-`;
      headers.range = range;
      const validator = ifRangeValue(pos.etag, pos.lastModified);
      if (validator) headers['if-range'] = validator;
    }
    o.onRequest?.({ url: url.toString(), range });
    const res = await request(url, { method: 'GET', headers, dispatcher: o.dispatcher, signal: o.signal });
    const location = header(res.headers, 'location');
    if (!REDIRECTS.has(res.statusCode) || !location) return res;
    discard(res);
    if (hop >= MAX_REDIRECTS) throw new UpdaterError('DOWNLOAD_FAILED', `more than ${MAX_REDIRECTS} redirects`);
    const next = new URL(location, url);
    if (next.protocol !== 'https:' && !(o.allowHttp && next.protocol === 'http:')) {
      throw new UpdaterError('DOWNLOAD_FAILED', `redirect to a refused URL scheme ${next.protocol}`);
    }
    url = next;
  }
}
