import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UpdaterError } from '../shared/errors.js';
import {
  classifyResponse,
  type RequestState,
  type ResponseHead,
  type ResponseStep,
} from '../services/fetcher/response-step.js';
import { decideRetry, RETRY_STATUSES, type RetryPolicy } from '../services/fetcher/retry-policy.js';

// The resume loop's decisions, one row per answer a package server (or a proxy, or a CDN) can give.

const SIZE = 1000;
const ETAG = '"build-1"';
const DATE = 'Thu, 26 Nov 2026 10:00:00 GMT';
const NOW = Date.parse('Thu, 26 Nov 2026 10:00:00 GMT');
const fresh: RequestState = { offset: 0, size: SIZE, etag: null, lastModified: null };
const resumed: RequestState = { offset: 400, size: SIZE, etag: ETAG, lastModified: DATE };
const resumedByDate: RequestState = { offset: 400, size: SIZE, etag: null, lastModified: DATE };

/** An expected step; a failure is written as its wire text. */
type Expected = Exclude<ResponseStep, { kind: 'fail' }> | { kind: 'fail'; wire: string };

const retry = (reason: string, fromZero: boolean, retryAfterMs: number | null = null): Expected => ({
  kind: 'retry',
  reason,
  retryAfterMs,
  fromZero,
});
const fail = (wire: string): Expected => ({ kind: 'fail', wire });
const answer = (status: number, headers: ResponseHead['headers'] = {}): ResponseHead => ({ status, headers });
/** A 206 with this Content-Range. */
const partial = (contentRange: string, headers: ResponseHead['headers'] = {}): ResponseHead =>
  answer(206, { 'content-range': contentRange, ...headers });
const append: Expected = { kind: 'append' };
const restart = (etag: string | null, lastModified: string | null): Expected => ({
  kind: 'restart',
  etag,
  lastModified,
});

const cases: Array<[name: string, request: RequestState, response: ResponseHead, expected: Expected]> = [
  // 200: the whole file, whatever was asked
  [
    '200 to a first request',
    fresh,
    answer(200, { 'content-length': '1000', etag: ETAG, 'last-modified': DATE }),
    restart(ETAG, DATE),
  ],
  ['200 without validators or length (chunked)', fresh, answer(200), restart(null, null)],
  [
    '200 to a Range (server ignores Range, or If-Range saw a new build)',
    resumed,
    answer(200, { 'content-length': '1000', etag: '"build-2"' }),
    restart('"build-2"', null),
  ],
  [
    '200 with a Content-Length other than the package size',
    resumed,
    answer(200, { 'content-length': '999' }),
    fail('PACKAGE_SIZE_MISMATCH: expected 1000 bytes, but the server offers 999'),
  ],
  [
    '200 with an unreadable Content-Length: the end of the body decides',
    fresh,
    answer(200, { 'content-length': '1 000' }),
    restart(null, null),
  ],

  // a content coding: the body is not the package's bytes, whatever its length
  [
    '200 with Content-Encoding gzip though identity was asked',
    fresh,
    answer(200, { 'content-encoding': 'gzip', 'content-length': '1000' }),
    fail(
      'DOWNLOAD_FAILED: the server sent the package with Content-Encoding gzip (identity was asked for); serve it as is',
    ),
  ],
  [
    '206 with Content-Encoding br',
    resumed,
    partial('bytes 400-999/1000', { etag: ETAG, 'content-encoding': 'br' }),
    fail(
      'DOWNLOAD_FAILED: the server sent the package with Content-Encoding br (identity was asked for); serve it as is',
    ),
  ],
  [
    '200 with Content-Encoding identity (allowed, if unusual)',
    fresh,
    answer(200, { 'content-encoding': 'Identity', etag: ETAG }),
    restart(ETAG, null),
  ],
  [
    '404 with Content-Encoding gzip: the status decides',
    fresh,
    answer(404, { 'content-encoding': 'gzip' }),
    fail('DOWNLOAD_FAILED: HTTP 404 from the package server'),
  ],

  // 206: appended only when it continues exactly our bytes
  ['206 at the right offset', resumed, partial('bytes 400-999/1000', { etag: ETAG }), append],
  ['206 at the right offset, total unknown', resumed, partial('bytes 400-999/*'), append],
  ['206 at the right offset, no ETag in the answer', resumed, partial('bytes 400-999/1000'), append],
  [
    '206 carrying an ETag when ours had none (If-Range by date)',
    resumedByDate,
    partial('bytes 400-999/1000', { etag: ETAG }),
    append,
  ],
  [
    '206 with another Last-Modified: the server evaluated If-Range by date, the digests judge the result',
    resumedByDate,
    partial('bytes 400-999/1000', { 'last-modified': 'Fri, 27 Nov 2026 10:00:00 GMT' }),
    append,
  ],
  [
    '206 starting before the offset',
    resumed,
    partial('bytes 10-999/1000', { etag: ETAG }),
    retry('unusable 206 (Content-Range bytes 10-999/1000) for offset 400', true),
  ],
  [
    '206 starting after the offset',
    resumed,
    partial('bytes 500-999/1000', { etag: ETAG }),
    retry('unusable 206 (Content-Range bytes 500-999/1000) for offset 400', true),
  ],
  [
    '206 with a changed ETag',
    resumed,
    partial('bytes 400-999/1000', { etag: '"build-2"' }),
    retry('unusable 206 (Content-Range bytes 400-999/1000) for offset 400', true),
  ],
  [
    '206 without Content-Range',
    resumed,
    answer(206, { etag: ETAG }),
    retry('unusable 206 (Content-Range missing) for offset 400', true),
  ],
  [
    '206 with a malformed Content-Range',
    resumed,
    partial('bytes 400-999'),
    retry('unusable 206 (Content-Range bytes 400-999) for offset 400', true),
  ],
  [
    '206 with a multipart range list',
    resumed,
    partial('bytes 400-499/1000, bytes 500-999/1000'),
    retry('unusable 206 (Content-Range bytes 400-499/1000, bytes 500-999/1000) for offset 400', true),
  ],
  [
    '206 whose total is not the package size',
    resumed,
    partial('bytes 400-1099/1100'),
    fail('PACKAGE_SIZE_MISMATCH: expected 1000 bytes, but the server offers 1100'),
  ],
  ['206 to a first request, from byte 0', fresh, partial('bytes 0-999/1000'), append],

  // 416: nothing to send from that offset
  [
    '416 with every byte held',
    { ...resumed, offset: SIZE },
    answer(416, { 'content-range': 'bytes */1000' }),
    { kind: 'complete' },
  ],
  ['416 part way: start again from zero', resumed, answer(416), retry('HTTP 416 at offset 400', true)],
  ['416 for the whole file', fresh, answer(416), fail('DOWNLOAD_FAILED: HTTP 416 for the whole file')],

  // worth another attempt from the same offset, at the server's pace when it names one
  ['500', resumed, answer(500), retry('HTTP 500', false)],
  ['502', fresh, answer(502), retry('HTTP 502', false)],
  ['503 + Retry-After seconds', resumed, answer(503, { 'retry-after': '3' }), retry('HTTP 503', false, 3000)],
  ['599', resumed, answer(599), retry('HTTP 599', false)],
  [
    '429 + Retry-After date',
    resumed,
    answer(429, { 'retry-after': 'Thu, 26 Nov 2026 10:00:05 GMT' }),
    retry('HTTP 429', false, 5000),
  ],
  ['429 + unreadable Retry-After', resumed, answer(429, { 'retry-after': 'soon' }), retry('HTTP 429', false)],
  ['408', resumed, answer(408), retry('HTTP 408', false)],

  // not worth another attempt
  ['404', fresh, answer(404), fail('DOWNLOAD_FAILED: HTTP 404 from the package server')],
  ['410', resumed, answer(410), fail('DOWNLOAD_FAILED: HTTP 410 from the package server')],
  ['403', fresh, answer(403), fail('DOWNLOAD_FAILED: HTTP 403 from the package server')],
  ['401', fresh, answer(401), fail('DOWNLOAD_FAILED: HTTP 401 from the package server')],
  ['204', fresh, answer(204), fail('DOWNLOAD_FAILED: HTTP 204 from the package server')],
  // redirects with a Location are followed by the request itself; one without reaches the classifier
  ['302 without Location', fresh, answer(302), fail('DOWNLOAD_FAILED: HTTP 302 from the package server')],
  ['304 (a stray conditional answer)', resumed, answer(304), fail('DOWNLOAD_FAILED: HTTP 304 from the package server')],
];

const comparable = (step: ResponseStep): Expected =>
  step.kind === 'fail' ? { kind: 'fail', wire: step.error.wire } : step;

test('every answer maps to one step: append, restart, complete, retry (after N ms, from zero or not), fail', () => {
  for (const [name, request, response, expected] of cases) {
    const step = classifyResponse(request, response, RETRY_STATUSES, NOW);
    if (step.kind === 'fail') assert.ok(step.error instanceof UpdaterError, name);
    assert.deepEqual(comparable(step), expected, name);
  }
});

test("which statuses are retried is the policy's data", () => {
  const statuses = { codes: [425], serverErrorsFrom: 600 };
  assert.deepEqual(classifyResponse(fresh, answer(425), statuses, NOW), retry('HTTP 425', false));
  assert.equal(classifyResponse(fresh, answer(503), statuses, NOW).kind, 'fail');
  assert.equal(classifyResponse(fresh, answer(429), statuses, NOW).kind, 'fail');
});

const policy: RetryPolicy = {
  maxRetries: 3,
  baseMs: 100,
  retryAfterMaxMs: 5000,
  retryStatuses: RETRY_STATUSES,
  random: () => 0.5,
};

test('retry decisions: backoff doubles per failure, Retry-After honoured up to its cap, then it gives up', () => {
  const rows: Array<[failures: number, retryAfterMs: number | null, expected: ReturnType<typeof decideRetry>]> = [
    [1, null, { kind: 'wait', delayMs: 100 }],
    [2, null, { kind: 'wait', delayMs: 200 }],
    [3, null, { kind: 'wait', delayMs: 400 }],
    [1, 3000, { kind: 'wait', delayMs: 3000 }], // the server's wait, longer than the backoff
    [3, 50, { kind: 'wait', delayMs: 400 }], // the backoff, longer than the server's wait
    [1, 3_600_000, { kind: 'wait', delayMs: 5000 }], // an hour asked, the cap given
    [4, null, { kind: 'give-up', error: new UpdaterError('DOWNLOAD_FAILED', 'HTTP 502 (gave up after 4 attempts)') }],
  ];
  for (const [failures, retryAfterMs, expected] of rows) {
    const decision = decideRetry(policy, failures, 'HTTP 502', retryAfterMs);
    assert.deepEqual(
      decision.kind === 'give-up' ? decision.error.wire : decision,
      expected.kind === 'give-up' ? expected.error.wire : expected,
      `failure ${failures}, Retry-After ${retryAfterMs}`,
    );
  }
  assert.equal(decideRetry({ ...policy, maxRetries: 0 }, 1, 'network error: ECONNRESET', null).kind, 'give-up');
});
