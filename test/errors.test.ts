import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeDuration, expiredText, UpdaterError, wireOf } from '../shared/errors.js';

// The trust window's text comes from its configured value (TOPE_TRUST_WINDOW_MS), not from a
// "24h" written where it is shown; and any failure becomes an UpdaterError in one way.

test('the trust window reads as configured: whole days from two, else hours, minutes, seconds, milliseconds', () => {
  const cases: Array<[number, string]> = [
    [24 * 3600_000, '24h'],
    [36 * 3600_000, '36h'],
    [48 * 3600_000, '2d'],
    [90 * 60_000, '90min'],
    [45_000, '45s'],
    [1500, '1500ms'],
  ];
  assert.deepEqual(
    cases.map(([ms]) => describeDuration(ms)),
    cases.map(([, text]) => text),
  );
  assert.equal(expiredText(90 * 60_000, '1.2.3'), 'Package 1.2.3 expired (>90min after verification)');
  assert.equal(expiredText(24 * 3600_000), 'Package expired (>24h after verification)');
});

test('UpdaterError.from keeps an UpdaterError as it is and puts anything else under the fallback code', () => {
  const refused = new UpdaterError('MD5_MISMATCH', 'expected x');
  assert.equal(UpdaterError.from(refused, 'DOWNLOAD_FAILED'), refused);
  const wrapped = UpdaterError.from(new Error('EIO: i/o error'), 'DOWNLOAD_FAILED', 'internal error: ');
  assert.equal(wrapped.wire, 'DOWNLOAD_FAILED: internal error: EIO: i/o error');
  assert.equal(wireOf('a string thrown', 'DEPLOYMENT_FAILED'), 'DEPLOYMENT_FAILED: a string thrown');
});
