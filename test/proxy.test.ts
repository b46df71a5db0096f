import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { loadConfig, ConfigError } from '../shared/config.js';
import { call } from './helpers/api.js';
import { TestDevice } from './helpers/device.js';
import { Origin } from './helpers/origin.js';
import { missing, startTinyproxy, type RealProxy } from './helpers/real-origins.js';
import type { Service } from './helpers/services.js';
import { makeTestCa } from './helpers/test-ca.js';
import { waitFor } from './helpers/wait.js';

// A printer behind a proxy: the fetcher's downloads go through the one HTTPS_PROXY / HTTP_PROXY
// name (as the Python updater's httpx did), against tinyproxy as Debian ships it, a proxy no one
// here wrote: a CONNECT tunnel for https://, absolute-form requests for http://, NO_PROXY,
// Basic credentials, a cut resumed through the proxy, and the address policy still applied.

const ca = makeTestCa();
const secureOrigin = new Origin(3 * 1024 * 1024, ca);
const plainOrigin = new Origin(1024 * 1024);
const user = 'tope';
const password = 'pr0xy-s3cret';
let proxy: RealProxy;
let authProxy: RealProxy;
const skip = missing('tinyproxy');

before(async () => {
  if (skip) return;
  await secureOrigin.start();
  await plainOrigin.start();
  proxy = await startTinyproxy();
  authProxy = await startTinyproxy({ user, password });
});
after(async () => {
  await proxy?.stop();
  await authProxy?.stop();
  if (skip) return;
  await secureOrigin.stop();
  await plainOrigin.stop();
});

const job = (origin: Origin, url: string, version: string) => ({
  version,
  package_url: url,
  package_name: 'p.zip',
  package_size: origin.body.length,
  package_md5: origin.md5,
  package_sha256: origin.sha256,
});

interface Outcome {
  data: { stage: string; error: string; message: string };
  fetcher: Service;
}

/** One /download of `url` by a fresh fetcher with `env`, to its end (toInstall or failed). */
async function downloadThrough(env: Record<string, string>, origin: Origin, url: string): Promise<Outcome> {
  const device = new TestDevice({ NODE_EXTRA_CA_CERTS: ca.caFile, TOPE_RETRY_BASE_MS: '20', ...env });
  try {
    const [fetcher] = await device.start('fetcher', 'api-gateway');
    const answer = await call(device.base, 'POST', '/api/v1.0/download', job(origin, url, '4.0.0'));
    assert.equal(answer.body.code, 200, JSON.stringify(answer.body));
    const data = await waitFor(
      'the download ended',
      async () => {
        const { data } = (await device.progress()).body;
        return data.stage === 'toInstall' || data.stage === 'failed' ? data : null;
      },
      60_000,
    );
    return { data, fetcher };
  } finally {
    await device.stop();
  }
}

const proxyUrl = (p: RealProxy, credentials = '') => `http://${credentials}127.0.0.1:${p.port}`;
const newRequests = async (p: RealProxy, seen: number) => (await p.requests()).slice(seen);

describe('downloads through a proxy (tinyproxy)', { skip: skip ?? undefined }, () => {
  test('an https:// package through HTTPS_PROXY: a CONNECT tunnel, TLS to the origin inside it, verified', async () => {
    secureOrigin.sequence();
    const seen = (await proxy.requests()).length;
    const { data, fetcher } = await downloadThrough({ HTTPS_PROXY: proxyUrl(proxy) }, secureOrigin, secureOrigin.url());
    assert.equal(data.stage, 'toInstall', JSON.stringify(data));
    const port = new URL(secureOrigin.url()).port;
    assert.deepEqual(await newRequests(proxy, seen), [`CONNECT 127.0.0.1:${port} HTTP/1.1`]);
    assert.deepEqual(fetcher.logged('downloads go through a proxy')?.proxy, { https: proxyUrl(proxy) });
  });

  test('a download cut mid-body resumes through the proxy with a Range request in a new tunnel', async () => {
    const requestsBefore = secureOrigin.requests.length;
    secureOrigin.script((n) => (n === requestsBefore ? { kind: 'cut', after: 1024 * 1024 } : { kind: 'serve' }));
    const seen = (await proxy.requests()).length;
    const { data } = await downloadThrough({ https_proxy: proxyUrl(proxy) }, secureOrigin, secureOrigin.url());
    assert.equal(data.stage, 'toInstall', JSON.stringify(data));
    const mine = secureOrigin.requests.slice(requestsBefore);
    assert.equal(mine.length, 2, JSON.stringify(mine));
    assert.match(mine[1].range ?? '', /^bytes=[1-9]\d*-$/);
    assert.equal((await newRequests(proxy, seen)).filter((r) => r.startsWith('CONNECT ')).length, 2);
  });

  test('an http:// package through HTTP_PROXY is forwarded in absolute form', async () => {
    plainOrigin.sequence();
    const seen = (await proxy.requests()).length;
    const { data } = await downloadThrough(
      { TOPE_ALLOW_HTTP: '1', HTTP_PROXY: proxyUrl(proxy) },
      plainOrigin,
      plainOrigin.url(),
    );
    assert.equal(data.stage, 'toInstall', JSON.stringify(data));
    assert.deepEqual(await newRequests(proxy, seen), [`GET ${plainOrigin.url()} HTTP/1.1`]);
  });

  test('a host in NO_PROXY is reached directly, under the address policy as without a proxy', async () => {
    secureOrigin.sequence();
    const seen = (await proxy.requests()).length;
    const direct = { HTTPS_PROXY: proxyUrl(proxy), NO_PROXY: 'printer-updates.example,127.0.0.1' };
    const { data } = await downloadThrough(direct, secureOrigin, secureOrigin.url());
    assert.equal(data.stage, 'toInstall', JSON.stringify(data));
    assert.deepEqual(await newRequests(proxy, seen), []);
    // direct, loopback is refused where the policy does not allow it
    const refused = await downloadThrough({ ...direct, TOPE_ALLOWED_URL_NETS: '' }, secureOrigin, secureOrigin.url());
    assert.match(refused.data.error, /^DOWNLOAD_FAILED: package URL refused: 127\.0\.0\.1: 127\.0\.0\.1 is a loopback/);
  });

  test('an address the policy refuses, written in the URL, is refused before the proxy is asked', async () => {
    const seen = (await proxy.requests()).length;
    const { data } = await downloadThrough(
      { HTTPS_PROXY: proxyUrl(proxy) },
      secureOrigin,
      'https://169.254.169.254/latest/p.zip',
    );
    assert.equal(
      data.error,
      'DOWNLOAD_FAILED: package URL refused: 169.254.169.254: 169.254.169.254 is a link-local address (allowed only by TOPE_ALLOWED_URL_NETS)',
    );
    assert.deepEqual(await newRequests(proxy, seen), []);
  });

  test("the proxy's Basic credentials from its URL; wrong ones end DOWNLOAD_FAILED with the proxy's answer, the password in no log line", async () => {
    secureOrigin.sequence();
    const good = await downloadThrough(
      { HTTPS_PROXY: proxyUrl(authProxy, `${user}:${password}@`) },
      secureOrigin,
      secureOrigin.url(),
    );
    assert.equal(good.data.stage, 'toInstall', JSON.stringify(good.data));
    assert.deepEqual(good.fetcher.logged('downloads go through a proxy')?.proxy, {
      https: proxyUrl(authProxy, `${user}:***@`),
    });
    assert.ok(!JSON.stringify(good.fetcher.lines).includes(password), 'the password is not logged');

    const bad = await downloadThrough(
      { HTTPS_PROXY: proxyUrl(authProxy, `${user}:wrong@`), TOPE_RETRY_ATTEMPTS: '1' },
      secureOrigin,
      secureOrigin.url(),
    );
    assert.equal(bad.data.stage, 'failed');
    // tinyproxy answers a CONNECT with wrong credentials 401 (not 407, as RFC 9110 would have it)
    assert.match(
      bad.data.error,
      /^DOWNLOAD_FAILED: network error: .*Proxy response \(401\) !== 200 when HTTP Tunneling/,
    );
  });
});

describe('the proxy settings', () => {
  test('the lower-case name wins over the upper-case one, as curl and undici read them; empty is unset', () => {
    const config = loadConfig({ https_proxy: 'http://a.lan:3128', HTTPS_PROXY: 'http://b.lan:3128', no_proxy: '' });
    assert.equal(config.HTTPS_PROXY, 'http://a.lan:3128');
    assert.equal(config.HTTP_PROXY, undefined);
    assert.equal(config.NO_PROXY, '');
    assert.equal(loadConfig({ HTTP_PROXY: 'http://c.lan:8080', NO_PROXY: '.lan' }).NO_PROXY, '.lan');
    // curl's reading of a proxy without a scheme
    assert.equal(loadConfig({ http_proxy: 'proxy.lan:3128' }).HTTP_PROXY, 'http://proxy.lan:3128');
  });

  test('a proxy that is not an http(s) URL is CONFIG_INVALID naming the variable, its password hidden', () => {
    assert.throws(
      () => loadConfig({ HTTPS_PROXY: 'socks5://printer:hunter2@proxy.lan:1080' }),
      (e: unknown) =>
        e instanceof ConfigError &&
        e.variables.join() === 'HTTPS_PROXY' &&
        e.message.includes('HTTPS_PROXY="socks5://printer:***@proxy.lan:1080"') &&
        !e.message.includes('hunter2'),
    );
  });
});
