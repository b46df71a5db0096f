import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backoffDelay, sleep } from '../services/fetcher/backoff.js';
import {
  ifRangeValue,
  parseContentLength,
  parseContentRange,
  parseRetryAfter,
} from '../services/fetcher/http-headers.js';

test('Content-Range: valid forms parse, malformed ones are null', () => {
  assert.deepEqual(parseContentRange('bytes 10-99/100'), { start: 10, end: 99, total: 100 });
  assert.deepEqual(parseContentRange('bytes 0-0/*'), { start: 0, end: 0, total: null });
  for (const bad of [
    undefined,
    '',
    'bytes 10-99',
    'bytes 99-10/100',
    'bytes 10-100/100',
    'items 0-1/2',
    'bytes -1-5/10',
    'bytes 1-2/3, bytes 4-5/6',
    'bytes 0-99999999999999999/1',
    ' bytes  1-2/3',
  ]) {
    assert.equal(parseContentRange(bad), null, String(bad));
  }
});

test('Retry-After: seconds or an HTTP date', () => {
  assert.equal(parseRetryAfter('3'), 3000);
  assert.equal(parseRetryAfter('Thu, 26 Nov 2026 10:00:05 GMT', Date.parse('Thu, 26 Nov 2026 10:00:00 GMT')), 5000);
  assert.equal(parseRetryAfter('Thu, 26 Nov 2026 10:00:05 GMT', Date.parse('Thu, 26 Nov 2026 11:00:00 GMT')), 0);
  assert.equal(parseRetryAfter('soon'), null);
  assert.equal(parseRetryAfter(undefined), null);
});

test('Content-Length and If-Range validators', () => {
  assert.equal(parseContentLength('42'), 42);
  assert.equal(parseContentLength('4 2'), null);
  assert.equal(parseContentLength('-1'), null);
  assert.equal(ifRangeValue('"abc"', 'date'), '"abc"');
  assert.equal(ifRangeValue('W/"abc"', 'date'), 'date', 'a weak ETag cannot be used in If-Range');
  assert.equal(ifRangeValue(null, null), null);
});

test('backoff doubles with bounded jitter', () => {
  assert.equal(
    backoffDelay(1, 1000, () => 0.5),
    1000,
  );
  assert.equal(
    backoffDelay(2, 1000, () => 0.5),
    2000,
  );
  assert.equal(
    backoffDelay(3, 1000, () => 0.5),
    4000,
  );
  assert.equal(
    backoffDelay(3, 1000, () => 0),
    3200,
  );
  assert.equal(
    backoffDelay(3, 1000, () => 1),
    4800,
  );
});

test('sleep is cut short by its abort signal', async () => {
  const c = new AbortController();
  const started = Date.now();
  const p = sleep(10_000, c.signal);
  c.abort(new Error('stop'));
  await assert.rejects(p, /stop/);
  assert.ok(Date.now() - started < 1000);
  await assert.rejects(sleep(1, c.signal), /stop/);
});
