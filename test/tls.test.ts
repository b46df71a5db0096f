import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { call } from './helpers/api.js';
import { TestDevice } from './helpers/device.js';
import { Origin } from './helpers/origin.js';
import { makeTestCa } from './helpers/test-ca.js';

const ca = makeTestCa();
const origin = new Origin(300_000, ca);
before(() => origin.start());
after(() => origin.stop());

const request = () => ({
  version: '1.0.0',
  package_url: origin.url(),
  package_name: 'p.zip',
  package_size: 300_000,
  package_md5: origin.md5,
  package_sha256: origin.sha256,
});

test('over real TLS, trusting the test CA: the package arrives, plain http is refused', async () => {
  const device = new TestDevice({ TOPE_ALLOW_HTTP: '0', NODE_EXTRA_CA_CERTS: ca.caFile });
  try {
    await device.start('fetcher', 'api-gateway');
    const plain = await call(device.base, 'POST', '/api/v1.0/download', {
      ...request(),
      package_url: 'http://127.0.0.1:9/p.zip',
    });
    assert.equal(plain.body.msg, 'VALIDATION_ERROR: package_url: must be an https URL');
    origin.sequence({ kind: 'cut', after: 100_000 });
    assert.equal((await call(device.base, 'POST', '/api/v1.0/download', request())).body.code, 200);
    await device.waitStage('toInstall');
    assert.ok((await fsp.readFile(path.join(device.packagesDir, 'p.zip'))).equals(origin.body));
    assert.match(origin.requests.at(-1)!.range ?? '', /^bytes=\d+-$/, 'resumed over TLS');
  } finally {
    await device.stop();
  }
});

test('a server certificate from an unknown authority is refused: DOWNLOAD_FAILED', async () => {
  const device = new TestDevice({ TOPE_ALLOW_HTTP: '0', TOPE_RETRY_ATTEMPTS: '1' });
  try {
    await device.start('fetcher', 'api-gateway');
    origin.sequence();
    await call(device.base, 'POST', '/api/v1.0/download', request());
    const failed = await device.waitStage('failed');
    assert.match(failed.data.error, /^DOWNLOAD_FAILED: network error: .*(certificate|self.signed|issuer)/i);
    assert.deepEqual(await fsp.readdir(device.packagesDir), []);
  } finally {
    await device.stop();
  }
});
