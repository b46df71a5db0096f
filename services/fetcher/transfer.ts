import { UpdaterError } from '../../shared/errors.js';
import { failpoint } from '../../shared/failpoint.js';
import type { Digests } from '../../shared/package-check.js';
import { sleep } from './backoff.js';
import { readBody } from './body-reader.js';
import { header, ifRangeValue } from './http-headers.js';
import { httpGet, type Dispatcher } from './http-client.js';
import { PartFile, type Position } from './part-file.js';
import { RateFloor, type RateFloorSetting } from './rate-floor.js';
import { classifyResponse, sizeMismatch, type ResponseStep } from './response-step.js';
import { decideRetry, networkFailureReason, RETRY_STATUSES, type RetryPolicy } from './retry-policy.js';

export type { Position } from './part-file.js';

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
  /** After every batch of chunks written; `sync` makes the bytes so far durable before a checkpoint. */
  onProgress: (position: Position, sync: () => Promise<void>) => void | Promise<void>;
  onRetry?: (info: { attempt: number; delayMs: number; reason: string; offset: number }) => void;
  onRequest?: (info: { url: string; range: string | null }) => void;
  /** The minimum average rate of each attempt (none when absent). */
  rateFloor?: RateFloorSetting;
}

const MAX_REDIRECTS = 5;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** How one attempt ended, when it did not throw an UpdaterError. */
type AttemptEnd = { kind: 'body-read' } | Extract<ResponseStep, { kind: 'complete' | 'retry' }>;

/** Drops an answer's body without an unhandled 'error' event from undici. */
function discard(res: Dispatcher.ResponseData): void {
  res.body.on('error', () => undefined);
  res.body.destroy();
}

/**
 * Brings the part file from `start.offset` to `size` bytes with MD5 and SHA-256 computed on the
 * way in. Resumes with Range + If-Range, restarts from 0 on a 200, never appends a 206 that does
 * not start exactly at the offset, retries transient failures with backoff. Throws UpdaterError.
 * What to do with each answer is `classifyResponse`'s decision, when to try again `decideRetry`'s:
 * this loop only does the I/O.
 */
export async function transfer(options: TransferOptions): Promise<Digests> {
  const policy: RetryPolicy = {
    maxRetries: options.retryAttempts,
    baseMs: options.retryBaseMs,
    retryAfterMaxMs: options.retryAfterMaxMs,
    retryStatuses: RETRY_STATUSES,
    random: options.random,
  };
  const part = await PartFile.open(options.partFile, options.start);
  const { position } = part;
  try {
    await part.hashHeldBytes();
    let failures = 0;
    let fromZeroNext = false; // the last ranged answer was unusable: ask for the whole file
    while (position.offset < options.size) {
      const before = position.offset;
      let end: AttemptEnd;
      try {
        if (fromZeroNext && position.offset > 0) await part.restartFromZero();
        fromZeroNext = false;
        end = await attempt(options, part, policy);
      } catch (e) {
        if (options.signal.aborted) throw options.signal.reason;
        if (e instanceof UpdaterError) throw e;
        end = { kind: 'retry', reason: networkFailureReason(e), retryAfterMs: null, fromZero: false };
      }
      if (end.kind === 'body-read') continue;
      if (end.kind === 'complete') break;
      if (options.signal.aborted) throw options.signal.reason;
      fromZeroNext = end.fromZero;
      failures = position.offset > before ? 1 : failures + 1;
      const decision = decideRetry(policy, failures, end.reason, end.retryAfterMs);
      if (decision.kind === 'give-up') throw decision.error;
      options.onRetry?.({ attempt: failures, delayMs: decision.delayMs, reason: end.reason, offset: position.offset });
      await sleep(decision.delayMs, options.signal);
    }
    return await part.finish();
  } finally {
    await part.close();
  }
}

/** One request and, when its answer is usable, its body into the part file. */
async function attempt(options: TransferOptions, part: PartFile, policy: RetryPolicy): Promise<AttemptEnd> {
  const res = await get(options, part.position);
  try {
    return await readAnswer(options, part, policy, res);
  } catch (e) {
    // an answer left open by any failure (a disk error before its body was read, say) would
    // later emit 'error' with no listener: an uncaught exception that ends the process
    discard(res);
    throw e;
  }
}

/** What one answer brings: its classification and, when usable, its body into the part file. */
async function readAnswer(
  options: TransferOptions,
  part: PartFile,
  policy: RetryPolicy,
  res: Dispatcher.ResponseData,
): Promise<AttemptEnd> {
  const { position } = part;
  const step = classifyResponse(
    { ...position, size: options.size },
    { status: res.statusCode, headers: res.headers },
    policy.retryStatuses,
  );
  switch (step.kind) {
    case 'complete':
    case 'retry':
      discard(res);
      return step;
    case 'fail':
      discard(res);
      throw step.error;
    case 'restart':
      if (position.offset > 0) await part.restartFromZero();
      part.setValidators(step.etag, step.lastModified);
      break;
    case 'append':
      break;
    default:
      return step satisfies never;
  }
  const floor = options.rateFloor ? new RateFloor(options.rateFloor) : null;
  await readBody(res.body, part, {
    size: options.size,
    observe: floor ? (bytes) => floor.observe(bytes) : undefined,
    tooLong: () => sizeMismatch(options.size, `more than ${options.size} bytes`),
    afterWrite: () => {
      failpoint('fetcher.chunk-written');
      return options.onProgress({ ...position }, () => part.dataSync());
    },
  });
  if (position.offset < options.size) {
    const reason = `connection closed at ${position.offset} of ${options.size} bytes`;
    return { kind: 'retry', reason, retryAfterMs: null, fromZero: false };
  }
  return { kind: 'body-read' };
}

/** One GET, following redirects itself so each hop is checked against the scheme policy. */
async function get(options: TransferOptions, position: Position): Promise<Dispatcher.ResponseData> {
  let url = new URL(options.url);
  for (let hop = 0; ; hop++) {
    const headers: Record<string, string> = { 'accept-encoding': 'identity' };
    let range: string | null = null;
    if (position.offset > 0) {
      range = `bytes=${position.offset}-`;
      headers.range = range;
      const validator = ifRangeValue(position.etag, position.lastModified);
      if (validator) headers['if-range'] = validator;
    }
    options.onRequest?.({ url: url.toString(), range });
    const res = await httpGet(options.dispatcher, url, headers, options.signal);
    const location = header(res.headers, 'location');
    if (!REDIRECTS.has(res.statusCode) || !location) return res;
    discard(res);
    if (hop >= MAX_REDIRECTS) throw new UpdaterError('DOWNLOAD_FAILED', `more than ${MAX_REDIRECTS} redirects`);
    const next = new URL(location, url);
    if (next.protocol !== 'https:' && !(options.allowHttp && next.protocol === 'http:')) {
      throw new UpdaterError('DOWNLOAD_FAILED', `redirect to a refused URL scheme ${next.protocol}`);
    }
    url = next;
  }
}
