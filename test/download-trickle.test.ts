import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, before, test } from 'node:test';
import { RateFloor } from '../services/fetcher/rate-floor.js';
import { UpdaterError } from '../shared/errors.js';
import { call } from './helpers/api.js';
import { TestDevice } from './helpers/device.js';
import { Origin } from './helpers/origin.js';

// A server that trickles (a few bytes each time, always inside the stall timeout) cannot hold
// the fetcher for ever: under the configured floor for a whole window, the download ends as a
// resumable DOWNLOAD_FAILED, and the next /download goes on from the bytes kept.

const origin = new Origin(200_000);
before(() => origin.start());
after(() => origin.stop());

const windowMs = 800;
const stallMs = 1000;

test('a real trickling server (10 bytes every 100 ms, inside the 1 s stall timeout) ends as resumable DOWNLOAD_FAILED within a window and a stall', async () => {
  const device = new TestDevice({
    TOPE_HTTP_TIMEOUT_MS: String(stallMs),
    TOPE_DOWNLOAD_MIN_BYTES_PER_S: '2000',
    TOPE_DOWNLOAD_RATE_WINDOW_MS: String(windowMs),
  });
  try {
    await device.start('fetcher', 'api-gateway');
    origin.script(() => ({ kind: 'serve', throttle: { bytes: 10, everyMs: 100 } }));
    const job = {
      version: '1.2.3',
      package_url: origin.url(),
      package_name: 'p.zip',
      package_size: origin.body.length,
      package_md5: origin.md5,
    };
    const started = performance.now();
    assert.equal((await call(device.base, 'POST', '/api/v1.0/download', job)).body.code, 200);
    const failed = await device.waitStage('failed', 20_000);
    const tookMs = performance.now() - started;
    assert.match(
      failed.data.error,
      /^DOWNLOAD_FAILED: too slow: \d+ bytes in \d+ ms, below the floor of 2000 bytes\/s \(resumable: the bytes so far are kept\)$/,
    );
    assert.ok(tookMs < windowMs + stallMs + 3000, `ended after ${Math.round(tookMs)} ms`);
    const kept = (await fsp.stat(path.join(device.packagesDir, 'p.zip.part'))).size;
    assert.ok(kept > 0, 'the bytes so far are kept');
    // resumable: the next /download asks for the rest
    const requests = origin.requests.length;
    origin.script(() => ({ kind: 'serve' }));
    assert.equal((await call(device.base, 'POST', '/api/v1.0/download', job)).body.code, 200);
    await device.waitStage('toInstall');
    assert.match(origin.requests[requests].range ?? '', /^bytes=[1-9]\d*-$/, 'resumed from the bytes kept');
    assert.ok((await fsp.readFile(path.join(device.packagesDir, 'p.zip'))).equals(origin.body));
  } finally {
    await device.stop();
  }
});

test('the floor: a window at or above it passes and starts the next; 0 turns it off (injected clock)', () => {
  let now = 0;
  const floor = new RateFloor({ minBytesPerS: 1000, windowMs: 1000 }, () => now);
  now = 500;
  floor.observe(10); // inside the first window: not judged yet
  now = 1000;
  floor.observe(990); // 1000 bytes in 1 s: exactly the floor
  now = 2500;
  assert.throws(
    () => floor.observe(1000),
    (e: unknown) =>
      e instanceof UpdaterError && e.code === 'DOWNLOAD_FAILED' && /1000 bytes in 1500 ms/.test(e.message),
  );
  const off = new RateFloor({ minBytesPerS: 0, windowMs: 1 }, () => now);
  now = 1e9;
  off.observe(1);
});
