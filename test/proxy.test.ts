import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { ConfigError, loadConfig, withoutPassword } from '../shared/config.js';
import { createLogger } from '../shared/log.js';
import { httpGet } from '../services/fetcher/http-client.js';
import { directInNets, proxiedAgent, splitNoProxy } from '../services/fetcher/proxy.js';
import { AddressPolicy, checkedConnector, nameRefusal, type Resolve } from '../services/fetcher/url-policy.js';
import { call } from './helpers/api.js';
import { TestDevice } from './helpers/device.js';
import { Origin, type Behaviour } from './helpers/origin.js';
import { missing, startTinyproxy, type RealProxy } from './helpers/real-origins.js';
import { Service } from './helpers/services.js';
import { makeTestCa } from './helpers/test-ca.js';
import { waitFor } from './helpers/wait.js';

// A printer behind a proxy: the fetcher's downloads go through the one HTTPS_PROXY / HTTP_PROXY
// name, against tinyproxy as Debian ships it, a proxy no one here wrote: a CONNECT tunnel for
// https:// (the origin's certificate still checked), absolute-form requests for http://,
// NO_PROXY, Basic credentials, a cut resumed through the proxy, the download's timeout on the
// proxy's answer, and the address policy applied as far as the printer can see.

const ca = makeTestCa();
const secureOrigin = new Origin(3 * 1024 * 1024, ca);
// a certificate for another name, signed by a CA the fetcher trusts (its own NODE_EXTRA_CA_CERTS)
const otherCa = makeTestCa({ altNames: 'DNS:other.example' });
const misnamedOrigin = new Origin(64 * 1024, otherCa);
const plainOrigin = new Origin(1024 * 1024);
const user = 'tope';
const password = 'pr0xy-s3cret';
let proxy: RealProxy;
let authProxy: RealProxy;
const skip = missing('tinyproxy');

before(async () => {
  // the origins serve the tests that need no tinyproxy too
  await secureOrigin.start();
  await plainOrigin.start();
  await misnamedOrigin.start();
  if (skip) return;
  proxy = await startTinyproxy();
  authProxy = await startTinyproxy({ user, password });
});
after(async () => {
  await proxy?.stop();
  await authProxy?.stop();
  await secureOrigin.stop();
  await plainOrigin.stop();
  await misnamedOrigin.stop();
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

/** The fetcher's proxied dispatcher in the test's own process, each lookup given (the screen's, the direct connection's). */
function agentInThisProcess(
  httpsProxy: string,
  noProxy: string,
  policy: AddressPolicy,
  resolve: { connect: Resolve; screen: Resolve },
) {
  const timeoutMs = 2000;
  const direct = checkedConnector(policy, { timeout: timeoutMs }, resolve.connect);
  const settings = { httpsProxy, httpProxy: undefined, noProxy };
  return proxiedAgent(settings, policy, direct, timeoutMs, createLogger('test', 'silent'), resolve.screen);
}

/** `origin` answers its next request with `behaviour` (its plans count every request it took), then serves. */
function nextAnswer(origin: Origin, behaviour: Behaviour): void {
  const next = origin.requests.length;
  origin.script((n) => (n === next ? behaviour : { kind: 'serve' }));
}

const proxyUrl = (p: RealProxy, credentials = '') => `http://${credentials}127.0.0.1:${p.port}`;
const newRequests = async (p: RealProxy, seen: number) => (await p.requests()).slice(seen);

test('NO_PROXY split: names, .domains, * and host:port for undici; IPv4 and IPv6 nets apart; a net that is not one stays a name', () => {
  const { hosts, nets } = splitNoProxy(
    'printer.lan, .example.com,*:8080 10.0.0.0/8,[fd00::]/8,::1/128,10.1.0.0/33,host:443',
  );
  assert.equal(hosts, 'printer.lan,.example.com,*:8080,10.1.0.0/33,host:443');
  assert.ok(nets);
  assert.equal(nets.ipv4.check('10.200.3.4', 'ipv4'), true);
  assert.equal(nets.ipv4.check('11.0.0.1', 'ipv4'), false);
  assert.equal(nets.ipv6.check('fd12::1', 'ipv6'), true);
  assert.equal(nets.ipv6.check('::1', 'ipv6'), true);
  assert.equal(nets.ipv6.check('fe80::1', 'ipv6'), false);
  assert.deepEqual(splitNoProxy('printer.lan'), { hosts: 'printer.lan', nets: null });
});

test('NO_PROXY nets route by the address in the URL, of its own family: IPv6 literals, an IPv4-mapped one, a name', () => {
  const { nets } = splitNoProxy('10.0.0.0/8,fd00::/8');
  assert.ok(nets);
  const routed: string[] = [];
  const direct = { dispatch: () => routed.push('direct') } as unknown as Parameters<typeof directInNets>[1];
  const dispatch = directInNets(nets, direct)(() => routed.push('proxy') > 0);
  const handler = {} as Parameters<typeof dispatch>[1];
  for (const origin of [
    'https://10.1.2.3',
    'https://[fd00::5]:8443',
    'https://[::ffff:10.0.0.1]', // an IPv4-mapped IPv6 address: not in 10.0.0.0/8 for curl, nor here
    'https://11.0.0.1',
    'https://printer-updates.example',
  ])
    dispatch({ origin, path: '/', method: 'GET' }, handler);
  assert.deepEqual(routed, ['direct', 'direct', 'proxy', 'proxy', 'proxy']);
});

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

  test("the origin's certificate is checked inside the tunnel: one for another name is refused", async () => {
    const seen = (await proxy.requests()).length;
    const { data } = await downloadThrough(
      { HTTPS_PROXY: proxyUrl(proxy), NODE_EXTRA_CA_CERTS: otherCa.caFile, TOPE_RETRY_ATTEMPTS: '0' },
      misnamedOrigin,
      misnamedOrigin.url(),
    );
    assert.equal(data.stage, 'failed');
    assert.match(data.error, /^DOWNLOAD_FAILED: network error: .*ERR_TLS_CERT_ALTNAME_INVALID/);
    const port = new URL(misnamedOrigin.url()).port;
    assert.deepEqual(await newRequests(proxy, seen), [`CONNECT 127.0.0.1:${port} HTTP/1.1`]);
  });

  test('a download cut mid-body resumes through the proxy with a Range request in a new tunnel', async () => {
    const requestsBefore = secureOrigin.requests.length;
    nextAnswer(secureOrigin, { kind: 'cut', after: 1024 * 1024 });
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

  test('a host in NO_PROXY is reached directly, under the whole address policy (a name resolved by the fetcher)', async () => {
    secureOrigin.sequence();
    const seen = (await proxy.requests()).length;
    const direct = { HTTPS_PROXY: proxyUrl(proxy), NO_PROXY: 'printer-updates.example,localhost' };
    const byName = secureOrigin.url().replace('127.0.0.1', 'localhost');
    const { data } = await downloadThrough(direct, secureOrigin, byName);
    assert.equal(data.stage, 'toInstall', JSON.stringify(data));
    // where loopback is not allowed, the direct connection's own lookup refuses the name
    const refused = await downloadThrough({ ...direct, TOPE_ALLOWED_URL_NETS: '' }, secureOrigin, byName);
    assert.match(
      refused.data.error,
      /^DOWNLOAD_FAILED: package URL refused: localhost: (127\.0\.0\.1|::1) is a loopback/,
    );
    assert.deepEqual(await newRequests(proxy, seen), [], 'the proxy was never asked');
  });

  test('NO_PROXY nets as curl reads them: an address in one is reached directly, one outside goes through the proxy', async () => {
    secureOrigin.sequence();
    const seen = (await proxy.requests()).length;
    const inNet = await downloadThrough(
      { HTTPS_PROXY: proxyUrl(proxy), NO_PROXY: 'printer-updates.example, 127.0.0.0/8' },
      secureOrigin,
      secureOrigin.url(),
    );
    assert.equal(inNet.data.stage, 'toInstall', JSON.stringify(inNet.data));
    assert.deepEqual(await newRequests(proxy, seen), [], 'the proxy was never asked');
    const outside = await downloadThrough(
      { HTTPS_PROXY: proxyUrl(proxy), NO_PROXY: '10.0.0.0/8,[::1]/128,127.0.0.0/33' },
      secureOrigin,
      secureOrigin.url(),
    );
    assert.equal(outside.data.stage, 'toInstall', JSON.stringify(outside.data));
    const port = new URL(secureOrigin.url()).port;
    assert.deepEqual(await newRequests(proxy, seen), [`CONNECT 127.0.0.1:${port} HTTP/1.1`]);
  });

  test('through the proxy, what the policy refuses is refused before the proxy is asked: an address, a name the printer resolves, a redirect', async () => {
    const seen = (await proxy.requests()).length;
    const viaProxy = { HTTPS_PROXY: proxyUrl(proxy) };
    const literal = await downloadThrough(viaProxy, secureOrigin, 'https://169.254.169.254/latest/p.zip');
    assert.equal(
      literal.data.error,
      'DOWNLOAD_FAILED: package URL refused: 169.254.169.254: 169.254.169.254 is a link-local address (allowed only by TOPE_ALLOWED_URL_NETS)',
    );
    const named = await downloadThrough(
      { ...viaProxy, TOPE_ALLOWED_URL_NETS: '' },
      secureOrigin,
      secureOrigin.url().replace('127.0.0.1', 'localhost'),
    );
    assert.match(
      named.data.error,
      /^DOWNLOAD_FAILED: package URL refused: localhost: (127\.0\.0\.1|::1) is a loopback/,
    );
    assert.deepEqual(await newRequests(proxy, seen), []);
    // the first hop through the proxy, its redirect to the metadata address refused
    nextAnswer(secureOrigin, { kind: 'redirect', to: 'https://169.254.169.254/latest/p.zip' });
    const redirected = await downloadThrough(viaProxy, secureOrigin, secureOrigin.url());
    assert.equal(redirected.data.error, literal.data.error);
    const port = new URL(secureOrigin.url()).port;
    assert.deepEqual(await newRequests(proxy, seen), [`CONNECT 127.0.0.1:${port} HTTP/1.1`]);
  });

  test("the proxy's Basic credentials from its URL; wrong ones end DOWNLOAD_FAILED with the proxy's answer; no password in a log line", async () => {
    secureOrigin.sequence();
    const good = await downloadThrough(
      { HTTPS_PROXY: proxyUrl(authProxy, `${user}:${password}@`) },
      secureOrigin,
      secureOrigin.url(),
    );
    assert.equal(good.data.stage, 'toInstall', JSON.stringify(good.data));
    assert.deepEqual(good.fetcher.logged('downloads go through a proxy')?.proxy, {
      https: proxyUrl(authProxy, '***@'),
    });
    const bad = await downloadThrough(
      { HTTPS_PROXY: proxyUrl(authProxy, `${user}:wrong-${password}@`), TOPE_RETRY_ATTEMPTS: '1' },
      secureOrigin,
      secureOrigin.url(),
    );
    assert.equal(bad.data.stage, 'failed');
    // tinyproxy 1.11 answers a CONNECT with wrong credentials 401 (RFC 9110 would have 407)
    assert.match(
      bad.data.error,
      /^DOWNLOAD_FAILED: network error: .*Proxy response \(40[17]\) !== 200 when HTTP Tunneling/,
    );
    for (const { fetcher } of [good, bad])
      assert.ok(!JSON.stringify(fetcher.lines).includes(password), 'the password is not logged');
  });
});

describe('the proxied dispatcher in this process (tinyproxy)', { skip: skip ?? undefined }, () => {
  test("a NO_PROXY host is connected to through the policy's own lookup: a DNS answer that changed after the screen is refused", async () => {
    const policy = new AddressPolicy({ allowedNets: [], allowPrivate: false });
    // the screen's lookup sees a public address, the connection's own lookup then loopback (DNS rebinding)
    const screenSees: Resolve = async () => [{ address: '93.184.216.34', family: 4 }];
    const connectSees: Resolve = async () => [{ address: '127.0.0.1', family: 4 }];
    const seen = (await proxy.requests()).length;
    const agent = agentInThisProcess(proxyUrl(proxy), 'rebound.example', policy, {
      connect: connectSees,
      screen: screenSees,
    });
    try {
      await assert.rejects(
        httpGet(
          agent,
          new URL(`https://rebound.example:${new URL(secureOrigin.url()).port}/p.zip`),
          {},
          AbortSignal.timeout(10_000),
        ),
        /^Error: package URL refused: rebound\.example: 127\.0\.0\.1 is a loopback address/,
      );
      assert.deepEqual(await newRequests(proxy, seen), [], 'not sent through the proxy either');
    } finally {
      await agent.close();
    }
  });
});

describe('a proxy that takes the connection and never answers', () => {
  let silent: net.Server;
  const held: net.Socket[] = [];
  before(async () => {
    silent = net.createServer((socket) => held.push(socket));
    await new Promise<void>((ok) => silent.listen(0, '127.0.0.1', ok));
  });
  after(async () => {
    for (const socket of held) socket.destroy();
    await new Promise((ok) => silent.close(ok));
  });

  test("the download's timeout (TOPE_HTTP_TIMEOUT_MS) bounds the wait for its answer to CONNECT", async () => {
    const { port } = silent.address() as net.AddressInfo;
    // without the timeout on the CONNECT's own pool the answer is awaited for undici's 300 s
    const { data } = await downloadThrough(
      { HTTPS_PROXY: `http://127.0.0.1:${port}`, TOPE_HTTP_TIMEOUT_MS: '300', TOPE_RETRY_ATTEMPTS: '0' },
      secureOrigin,
      secureOrigin.url(),
    );
    assert.equal(data.stage, 'failed');
    assert.match(data.error, /^DOWNLOAD_FAILED: network error: UND_ERR_HEADERS_TIMEOUT/);
    assert.ok(held.length >= 1, 'the fetcher connected to the proxy');
  });
});

describe('a proxy setting only another tool understands', () => {
  test('the fetcher answers CONFIG_INVALID naming it (so /download does), the gateway goes on answering /progress', async () => {
    const device = new TestDevice({ https_proxy: 'socks5h://printer:hunter2@proxy.lan:1080' });
    await device.start('api-gateway');
    const fetcher = new Service('fetcher', device.env);
    try {
      await fetcher.waitLog('fetcher serving the configuration error');
      const answer = await call(
        device.base,
        'POST',
        '/api/v1.0/download',
        job(plainOrigin, plainOrigin.url(), '4.0.1'),
      );
      assert.equal(answer.body.code, 500, JSON.stringify(answer.body));
      assert.equal(
        answer.body.msg,
        'CONFIG_INVALID: invalid configuration: https_proxy="socks5h://***@proxy.lan:1080": must be an http:// proxy URL like http://proxy.lan:3128',
      );
      assert.equal((await device.progress()).body.data.stage, 'idle');
      assert.ok(!JSON.stringify(fetcher.lines).includes('hunter2'));
    } finally {
      await fetcher.kill('SIGKILL');
      await device.stop();
    }
  });
});

describe('the proxy settings', () => {
  test("only the fetcher reads them; the lower-case name wins over the upper-case one, as curl's and undici's", () => {
    const env = { https_proxy: 'http://a.lan:3128', HTTPS_PROXY: 'http://b.lan:3128', no_proxy: '' };
    const config = loadConfig(env, 'fetcher');
    assert.equal(config.HTTPS_PROXY, 'http://a.lan:3128');
    assert.equal(config.HTTP_PROXY, undefined);
    assert.equal(config.NO_PROXY, undefined);
    assert.equal(loadConfig({ HTTP_PROXY: 'http://c.lan:8080', NO_PROXY: '.lan' }, 'fetcher').NO_PROXY, '.lan');
    // curl's reading of a proxy without a scheme
    assert.equal(loadConfig({ http_proxy: 'proxy.lan:3128' }, 'fetcher').HTTP_PROXY, 'http://proxy.lan:3128');
    // a value only another tool understands leaves the gateway and the installer as they are
    const socks = { https_proxy: 'socks5h://proxy.lan:1080' };
    assert.equal(loadConfig(socks).HTTPS_PROXY, undefined);
    assert.equal(loadConfig(socks, 'installer').HTTPS_PROXY, undefined);
    assert.throws(() => loadConfig(socks, 'fetcher'), ConfigError);
  });

  test('a proxy that is not an http:// URL is CONFIG_INVALID naming the variable as it was set, its credentials hidden', () => {
    const refusedWith = (env: Record<string, string>, variable: string, shown: string) =>
      assert.throws(
        () => loadConfig(env, 'fetcher'),
        (e: unknown) =>
          e instanceof ConfigError &&
          e.variables.join() === variable &&
          e.message.includes(`${variable}=${JSON.stringify(shown)}`) &&
          !/hunter2|pa\/ss/.test(e.message),
      );
    refusedWith(
      { https_proxy: 'socks5://printer:hunter2@proxy.lan:1080', HTTPS_PROXY: 'http://ok.lan:3128' },
      'https_proxy',
      'socks5://***@proxy.lan:1080',
    );
    // a port out of range, written without a scheme: still no password shown
    refusedWith({ HTTP_PROXY: 'printer:hunter2@proxy.lan:99999' }, 'HTTP_PROXY', '***@proxy.lan:99999');
    refusedWith({ HTTP_PROXY: 'https://u:pa/ss@proxy.lan:3128' }, 'HTTP_PROXY', 'https://***@proxy.lan:3128');
    // what undici could not start with: a % in the credentials that is not %XX, a path
    refusedWith(
      { HTTPS_PROXY: 'http://printer:hunter2%zz@proxy.lan:3128' },
      'HTTPS_PROXY',
      'http://***@proxy.lan:3128',
    );
    refusedWith({ HTTPS_PROXY: 'http://proxy.lan:3128/pac' }, 'HTTPS_PROXY', 'http://proxy.lan:3128/pac');
    // another variable's bad value is shown whole (only the proxy variables hold credentials)
    assert.throws(
      () => loadConfig({ TOPE_MANAGED_UNITS: 'printer@1.service,b c' }),
      /TOPE_MANAGED_UNITS="printer@1\.service,b c"/,
    );
  });

  test('through a proxy, localhost names are loopback without a lookup, a name is screened once per process, an unresolvable one is left to the proxy', async () => {
    const policy = new AddressPolicy({ allowedNets: [], allowPrivate: false });
    const noDns: Resolve = () => Promise.reject(new Error('EAI_AGAIN'));
    for (const name of ['localhost', 'localhost.', 'updates.localhost'])
      assert.match(String(await nameRefusal(policy, name, 1000, noDns)), /is a loopback address/, name);
    assert.equal(await nameRefusal(policy, 'outside.example', 1000, noDns), null);
    let lookups = 0;
    const lan: Resolve = async () => {
      lookups++;
      return [{ address: '10.1.2.3', family: 4 }];
    };
    const agent = agentInThisProcess('http://127.0.0.1:9', '', policy, { connect: lan, screen: lan });
    try {
      for (const path of ['/a.zip', '/b.zip'])
        await assert.rejects(
          httpGet(agent, new URL(`https://printer-updates.lan${path}`), {}, AbortSignal.timeout(5000)),
          /package URL refused: printer-updates\.lan: 10\.1\.2\.3 is a private address/,
        );
      assert.equal(lookups, 1);
    } finally {
      await agent.close();
    }
  });

  test('a password with an @ in it: the log line shows none of it', () => {
    assert.equal(withoutPassword('http://u:p@ss@proxy.lan:3128'), 'http://***@proxy.lan:3128');
    assert.equal(withoutPassword('http://proxy.lan:3128'), 'http://proxy.lan:3128');
  });
});
