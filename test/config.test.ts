import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from '../shared/config.js';

test('defaults are the production values README lists', () => {
  const c = loadConfig({});
  assert.equal(c.TOPE_LISTEN_PORT, 12315);
  assert.equal(c.TOPE_LISTEN_HOST, '127.0.0.1');
  assert.equal(c.TOPE_DEVICE_API_URL, 'http://127.0.0.1:9080');
  assert.equal(c.TOPE_VERSIONS_DIR, '/opt/tope/versions');
  assert.deepEqual(c.TOPE_ALLOWED_ROOTS, ['/opt/tope']);
  assert.equal(c.TOPE_ALLOW_HTTP, false);
  assert.equal(c.TOPE_TRUST_WINDOW_MS, 86_400_000);
  assert.equal(c.TOPE_REPORT_TIMEOUT_MS, 500);
});

test('environment variables override the defaults', () => {
  const c = loadConfig({
    TOPE_LISTEN_PORT: '18080',
    TOPE_ALLOW_HTTP: 'yes',
    TOPE_ALLOWED_ROOTS: '/opt/tope:/etc/tope',
  });
  assert.equal(c.TOPE_LISTEN_PORT, 18080);
  assert.equal(c.TOPE_ALLOW_HTTP, true);
  assert.deepEqual(c.TOPE_ALLOWED_ROOTS, ['/opt/tope', '/etc/tope']);
});

test('a bad value is refused with a message naming the variable', () => {
  assert.throws(() => loadConfig({ TOPE_LISTEN_PORT: 'http' }), /TOPE_LISTEN_PORT="http"/);
  assert.throws(() => loadConfig({ TOPE_FETCHER_STATE_DIR: 'relative/dir' }), /TOPE_FETCHER_STATE_DIR.*absolute/);
  assert.throws(() => loadConfig({ TOPE_ALLOW_HTTP: 'maybe' }), /TOPE_ALLOW_HTTP/);
});
