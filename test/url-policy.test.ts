import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Agent, request } from 'undici';
import { AddressPolicy, checkedConnector, type Resolve } from '../services/fetcher/url-policy.js';
import { call } from './helpers/api.js';
import { TestDevice } from './helpers/device.js';
import { Origin } from './helpers/origin.js';

// Package URLs may not lead to the printer itself, its link-local neighbours (a cloud metadata
// address) or, unless allowed, the private LAN: checked on the address connected to, for the
// URL and every redirect hop, with a real fetcher and a real origin on loopback.

const origin = new Origin(50_000);
before(() => origin.start());
after(() => origin.stop());

const job = (url: string) => ({
  version: '1.2.3',
  package_url: url,
  package_name: 'p.zip',
  package_size: origin.body.length,
  package_md5: origin.md5,
});

async function downloadOn(env: Record<string, string>, url: string): Promise<{ error: string; requests: number }> {
  const device = new TestDevice({ TOPE_RETRY_ATTEMPTS: '3', ...env });
  const seen = origin.requests.length;
  try {
    await device.start('fetcher', 'api-gateway');
    assert.equal((await call(device.base, 'POST', '/api/v1.0/download', job(url))).body.code, 200);
    const failed = await device.waitStage('failed');
    return { error: failed.data.error, requests: origin.requests.length - seen };
  } finally {
    await device.stop();
  }
}

const loopbackRefused = { TOPE_ALLOWED_URL_NETS: '' };

test('a loopback package URL is refused unless allowed, at once (no retries) and without a request', async () => {
  origin.sequence();
  const r = await downloadOn(loopbackRefused, origin.url());
  assert.match(
    r.error,
    /^DOWNLOAD_FAILED: package URL refused: 127\.0\.0\.1: 127\.0\.0\.1 is a loopback address \(allowed only by TOPE_ALLOWED_URL_NETS\)$/,
  );
  assert.equal(r.requests, 0);
});

test('a name that resolves to loopback (localhost, by the system resolver) is refused the same', async () => {
  origin.sequence();
  const r = await downloadOn(loopbackRefused, origin.url().replace('127.0.0.1', 'localhost'));
  assert.match(r.error, /^DOWNLOAD_FAILED: package URL refused: localhost: (127\.0\.0\.1|::1) is a loopback address/);
  assert.equal(r.requests, 0);
});

test('an IPv4-mapped IPv6 literal is the IPv4 address it maps', async () => {
  origin.sequence();
  const r = await downloadOn(loopbackRefused, origin.url().replace('127.0.0.1', '[::ffff:127.0.0.1]'));
  assert.match(r.error, /^DOWNLOAD_FAILED: package URL refused: ::ffff:7f00:1: 127\.0\.0\.1 is a loopback address/);
  assert.equal(r.requests, 0);
});

test('every redirect hop is checked: to a private address, to the link-local metadata address even with private allowed', async () => {
  const redirectFirst = (to: string) => {
    const first = origin.requests.length; // the origin counts requests across tests
    origin.script((n) => (n === first ? { kind: 'redirect', to } : { kind: 'serve' }));
  };
  redirectFirst('http://10.11.12.13/p.zip');
  const toPrivate = await downloadOn({}, origin.url());
  assert.match(
    toPrivate.error,
    /^DOWNLOAD_FAILED: package URL refused: 10\.11\.12\.13: 10\.11\.12\.13 is a private address \(allowed only by TOPE_ALLOWED_URL_NETS or TOPE_ALLOW_PRIVATE_URLS\)$/,
  );
  assert.equal(toPrivate.requests, 1, 'the redirect only');
  redirectFirst('http://169.254.169.254/latest/meta-data/');
  const toMetadata = await downloadOn({ TOPE_ALLOW_PRIVATE_URLS: '1' }, origin.url());
  assert.match(
    toMetadata.error,
    /^DOWNLOAD_FAILED: package URL refused: 169\.254\.169\.254: 169\.254\.169\.254 is a link-local address/,
  );
});

test('the address policy: kinds, allowed nets, private by the setting', () => {
  const strict = new AddressPolicy({ allowedNets: [], allowPrivate: false });
  for (const a of [
    '127.0.0.1',
    '127.255.0.9',
    '::1',
    '169.254.1.1',
    'fe80::1',
    '0.0.0.0',
    '::',
    '10.0.0.1',
    '172.16.5.5',
    '192.168.1.1',
    '100.64.0.1',
    'fd00::1',
    '224.0.0.1',
    '::ffff:10.0.0.1',
    '::ffff:a9fe:a9fe',
  ]) {
    assert.ok(strict.refusal(a), a);
  }
  for (const a of ['93.184.216.34', '172.32.0.1', '2606:4700::1111', '8.8.8.8'])
    assert.equal(strict.refusal(a), null, a);
  const lan = new AddressPolicy({ allowedNets: ['127.0.0.0/8'], allowPrivate: true });
  assert.equal(lan.refusal('192.168.1.1'), null);
  assert.equal(lan.refusal('127.0.0.1'), null);
  assert.match(lan.refusal('::1')!, /loopback/);
  assert.match(lan.refusal('169.254.169.254')!, /link-local/);
});

test('[DNS stand-in] the address connected to is the one checked: a name that rebinds to a refused address after a first answer gets no connection', async () => {
  const port = new URL(origin.url()).port;
  origin.sequence();
  const answers = ['127.0.0.1', '169.254.169.254'];
  const resolve: Resolve = async () => [{ address: answers.shift() ?? '169.254.169.254', family: 4 }];
  const policy = new AddressPolicy({ allowedNets: ['127.0.0.0/8'], allowPrivate: false });
  const get = async () => {
    // a fresh Agent each time: a new connection, so a new resolution
    const agent = new Agent({ connect: checkedConnector(policy, { timeout: 2000 }, resolve) });
    try {
      const res = await request(`http://rebind.test:${port}/pkg.zip`, { dispatcher: agent });
      await res.body.arrayBuffer();
      return res.statusCode;
    } finally {
      await agent.close();
    }
  };
  const seen = origin.requests.length;
  assert.equal(await get(), 200, 'the first answer is allowed');
  await assert.rejects(get(), /package URL refused: rebind\.test: 169\.254\.169\.254 is a link-local address/);
  assert.equal(origin.requests.length - seen, 1);
  // and a name with an allowed and a refused address connects only to the allowed one
  const mixed: Resolve = async () => [
    { address: '10.0.0.1', family: 4 },
    { address: '127.0.0.1', family: 4 },
  ];
  const agent = new Agent({ connect: checkedConnector(policy, { timeout: 2000 }, mixed) });
  const res = await request(`http://mixed.test:${port}/pkg.zip`, { dispatcher: agent });
  await res.body.arrayBuffer();
  assert.equal(res.statusCode, 200);
  await agent.close();
});
