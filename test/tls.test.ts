import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
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

// A refused certificate names the check that refused it (OpenSSL's code, or Node's for the
// name), so that a fleet's failures can be told apart: a CDN's broken chain, a device whose clock
// is wrong, a URL whose host the certificate does not name.
const refusals: Array<{ title: string; ca: ReturnType<typeof makeTestCa> | null; code: string }> = [
  // the test CA's certificate, not trusted (no NODE_EXTRA_CA_CERTS)
  { title: 'from an unknown authority', ca: null, code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' },
  // the rest from an authority the device trusts
  {
    title: 'for another name',
    ca: makeTestCa({ altNames: 'DNS:updates.example.com' }),
    code: 'ERR_TLS_CERT_ALTNAME_INVALID',
  },
  { title: 'that has expired', ca: makeTestCa({ days: -1 }), code: 'CERT_HAS_EXPIRED' },
];
for (const { title, ca: trusted, code } of refusals) {
  test(`a server certificate ${title} is refused: DOWNLOAD_FAILED naming ${code}, nothing kept`, async () => {
    const server = trusted ? await new Origin(300_000, trusted).start() : origin;
    const device = new TestDevice({
      TOPE_ALLOW_HTTP: '0',
      TOPE_RETRY_ATTEMPTS: '1',
      TOPE_RETRY_BASE_MS: '20',
      ...(trusted ? { NODE_EXTRA_CA_CERTS: trusted.caFile } : {}),
    });
    try {
      await device.start('fetcher', 'api-gateway');
      server.sequence();
      await call(device.base, 'POST', '/api/v1.0/download', { ...request(), package_url: server.url() });
      const failed = await device.waitStage('failed');
      assert.match(
        failed.data.error,
        new RegExp(`^DOWNLOAD_FAILED: network error: ${code}: .+ \\(gave up after 2 attempts\\)$`),
      );
      assert.deepEqual(await fsp.readdir(device.packagesDir), []);
    } finally {
      await device.stop();
      if (server !== origin) await server.stop();
    }
  });
}

// The fetcher's client speaks HTTP/1.1 only (services/fetcher/http-client.ts): its bundle carries
// no HTTP/2 (scripts/bundle.ts), so its TLS handshake must not offer h2, even to a server that
// prefers it, as CDNs do. Offered h2, this server picks it (and the fetcher fails to use it).
test('an origin that prefers HTTP/2 is downloaded over HTTP/1.1', async () => {
  const versions: string[] = [];
  const server = http2.createSecureServer({ key: ca.key, cert: ca.cert, allowHTTP1: true }, (req, res) => {
    versions.push(req.httpVersion);
    res.writeHead(200, { 'content-length': origin.body.length }).end(origin.body);
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const device = new TestDevice({ TOPE_ALLOW_HTTP: '0', NODE_EXTRA_CA_CERTS: ca.caFile });
  try {
    await device.start('fetcher', 'api-gateway');
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/p.zip`;
    assert.equal(
      (await call(device.base, 'POST', '/api/v1.0/download', { ...request(), package_url: url })).body.code,
      200,
    );
    await device.waitStage('toInstall');
    assert.ok((await fsp.readFile(path.join(device.packagesDir, 'p.zip'))).equals(origin.body));
    assert.deepEqual(versions, ['1.1']);
  } finally {
    await device.stop();
    await new Promise<void>((ok) => server.close(() => ok()));
  }
});
