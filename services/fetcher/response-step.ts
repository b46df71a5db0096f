import { UpdaterError } from '../../shared/errors.js';
import { header, parseContentLength, parseContentRange, parseRetryAfter } from './http-headers.js';
import { isRetryStatus, RETRY_STATUSES, type RetryStatuses } from './retry-policy.js';

// What the resume loop does with an answer, decided from the status and headers alone, before
// any byte of the body is read. Redirects never get here: the request follows them itself, each
// hop checked against the scheme policy.

/** What the loop holds when it asks: the good bytes so far and the validators they came with. */
export interface RequestState {
  offset: number;
  size: number;
  etag: string | null;
  lastModified: string | null;
}

export interface ResponseHead {
  status: number;
  headers: Record<string, string | string[] | undefined>;
}

export type ResponseStep =
  /** A 206 that starts exactly at the offset: its body continues the part file. */
  | { kind: 'append' }
  /** A 200: its body is the whole file; whatever is held goes, and these validators come with the new bytes. */
  | { kind: 'restart'; etag: string | null; lastModified: string | null }
  /** Every byte is already held (416 at full size): verify what is there. */
  | { kind: 'complete' }
  /** Worth another attempt, from zero when the held bytes cannot be resumed; the server may name a wait. */
  | { kind: 'retry'; reason: string; retryAfterMs: number | null; fromZero: boolean }
  /** Not worth another attempt. */
  | { kind: 'fail'; error: UpdaterError };

export const sizeMismatch = (expected: number, got: number | string): UpdaterError =>
  new UpdaterError('PACKAGE_SIZE_MISMATCH', `expected ${expected} bytes, but the server offers ${got}`);

// The request asks for `Accept-Encoding: identity`: the digests, the size and every Range offset
// are of the package's own bytes. A server that compresses anyway (a CDN's compression rule, an
// object stored with Content-Encoding metadata, nginx's gzip_static always) sends other bytes;
// writing them would end as a size or digest mismatch that names the wrong cause, and a Range
// into them means nothing. Not transient: no retry.
const contentCoding = (value: string | string[] | undefined): string | null => {
  const codings = [value ?? '']
    .flat()
    .join(',')
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity');
  return codings.length > 0 ? codings.join(', ') : null;
};

const encodedBody = (coding: string): UpdaterError =>
  new UpdaterError(
    'DOWNLOAD_FAILED',
    `the server sent the package with Content-Encoding ${coding} (identity was asked for); serve it as is`,
  );

export function classifyResponse(
  request: RequestState,
  response: ResponseHead,
  retryStatuses: RetryStatuses = RETRY_STATUSES,
  now = Date.now(),
): ResponseStep {
  const { status, headers } = response;
  if (status === 200 || status === 206) {
    const coding = contentCoding(headers['content-encoding']);
    if (coding) return { kind: 'fail', error: encodedBody(coding) };
  }
  if (status === 200) {
    const length = parseContentLength(header(headers, 'content-length'));
    if (length !== null && length !== request.size) return { kind: 'fail', error: sizeMismatch(request.size, length) };
    const etag = header(headers, 'etag') ?? null;
    return { kind: 'restart', etag, lastModified: header(headers, 'last-modified') ?? null };
  }
  if (status === 206) {
    const contentRange = header(headers, 'content-range');
    const range = parseContentRange(contentRange);
    const etag = header(headers, 'etag') ?? null;
    if (range && range.total !== null && range.total !== request.size) {
      return { kind: 'fail', error: sizeMismatch(request.size, range.total) };
    }
    // never append bytes that do not continue ours: elsewhere in the file, or from another build
    if (!range || range.start !== request.offset || (request.etag && etag && etag !== request.etag)) {
      const reason = `unusable 206 (Content-Range ${contentRange ?? 'missing'}) for offset ${request.offset}`;
      return { kind: 'retry', reason, retryAfterMs: null, fromZero: true };
    }
    return { kind: 'append' };
  }
  if (status === 416) {
    if (request.offset === request.size) return { kind: 'complete' };
    if (request.offset === 0) {
      return { kind: 'fail', error: new UpdaterError('DOWNLOAD_FAILED', 'HTTP 416 for the whole file') };
    }
    return { kind: 'retry', reason: `HTTP 416 at offset ${request.offset}`, retryAfterMs: null, fromZero: true };
  }
  if (isRetryStatus(retryStatuses, status)) {
    const retryAfterMs = parseRetryAfter(header(headers, 'retry-after'), now);
    return { kind: 'retry', reason: `HTTP ${status}`, retryAfterMs, fromZero: false };
  }
  return { kind: 'fail', error: new UpdaterError('DOWNLOAD_FAILED', `HTTP ${status} from the package server`) };
}
