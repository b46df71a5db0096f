import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { promises as fsp, utimesSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { call } from './helpers/api.js';
import { CuttingProxy } from './helpers/cutting-proxy.js';
import { TestDevice } from './helpers/device.js';
import { packageOfSize } from './helpers/packages.js';
import {
  missing,
  startNginx,
  startOpensslWww,
  startPythonHttp,
  tlsFiles,
  type RealOrigin,
} from './helpers/real-origins.js';
import type { Service } from './helpers/services.js';
import { makeTestCa } from './helpers/test-ca.js';
import { waitFor } from './helpers/wait.js';
import { tempDir } from './helpers/temp-dir.js';

// The fetcher against servers no one here wrote, each as Debian ships it: a large download, one
// cut mid-body (by a relay that resets or closes the TCP connection) and resumed or restarted as
// that server allows, and several downloads in a row by one fetcher process. The servers close
// connections in their own ways (HTTP/1.0, close after the body, Connection: close on the n-th
// answer of a kept-alive connection): a fetcher that survives these survives a CDN's.

const MiB = 1024 * 1024;
const ca = makeTestCa();
const tls = tlsFiles(ca);
const docroot = tempDir('origin-root-');
const files = new Map<string, { size: number; md5: string; sha256: string }>();

/** A signed package of `size` bytes (the fetcher accepts nothing else) served as `name`. */
async function addFile(name: string, size: number): Promise<void> {
  const bytes = await packageOfSize(size);
  await fsp.writeFile(path.join(docroot, name), bytes);
  files.set(name, {
    size,
    md5: createHash('md5').update(bytes).digest('hex'),
    sha256: createHash('sha256').update(bytes).digest('hex'),
  });
}

before(async () => {
  await addFile('large.bin', 48 * MiB);
  await addFile('cut.bin', 24 * MiB);
  for (const n of [1, 2, 3, 4]) await addFile(`row-${n}.bin`, 3 * MiB);
  await addFile('touched.bin', 8 * MiB);
  await addFile('gz.bin', 2 * MiB);
  // only the nginx below with gzip_static serves this one, in place of gz.bin
  await fsp.writeFile(path.join(docroot, 'gz.bin.gz'), gzipSync(await fsp.readFile(path.join(docroot, 'gz.bin'))));
});

/** POST /download of the served file `name` from `url` as `version`; the gateway took it. */
async function requestDownload(device: TestDevice, name: string, version: string, url: string): Promise<void> {
  const f = files.get(name)!;
  const answer = await call(device.base, 'POST', '/api/v1.0/download', {
    version,
    package_url: url,
    package_name: name,
    package_size: f.size,
    package_md5: f.md5,
    package_sha256: f.sha256,
  });
  assert.equal(answer.body.code, 200, JSON.stringify(answer.body));
}

/** The status once the download of `version` failed or its package is ready to install. */
function downloadEnd(device: TestDevice, version: string, timeoutMs: number) {
  return waitFor(
    `${version} ended`,
    async () => {
      const { data } = (await device.progress()).body;
      return data.stage === 'failed' || (data.stage === 'toInstall' && data.message.endsWith(version)) ? data : null;
    },
    timeoutMs,
    50,
  );
}

interface Case {
  start: () => Promise<RealOrigin>;
  skip: string | null;
  /** What the server answers a resumed request with: 206 (Range honoured) or 200 (the whole file again). */
  resumeStatus: 206 | 200;
}

const cases: Case[] = [
  { start: () => startNginx(docroot, undefined, 2), skip: missing('nginx'), resumeStatus: 206 },
  { start: () => startNginx(docroot, tls, 2), skip: missing('nginx'), resumeStatus: 206 },
  { start: () => startOpensslWww(docroot, tls), skip: missing('openssl'), resumeStatus: 200 },
  { start: () => startPythonHttp(docroot), skip: missing('python3'), resumeStatus: 200 },
];
const titles = [
  'nginx (plain HTTP/1.1, keepalive_requests 2)',
  'nginx over TLS (keepalive_requests 2)',
  'openssl s_server -WWW (HTTP/1.0 over TLS, closes after the body)',
  'python3 -m http.server (HTTP/1.0)',
];

cases.forEach((c, i) =>
  describe(`a real origin: ${titles[i]}`, { skip: c.skip ?? undefined }, () => {
    let origin: RealOrigin;
    let proxy: CuttingProxy;
    let device: TestDevice;
    let fetcher: Service;
    let version = 0;

    before(async () => {
      origin = await c.start();
      proxy = await new CuttingProxy(origin.port).start();
      device = new TestDevice({ TOPE_ALLOW_HTTP: '1', NODE_EXTRA_CA_CERTS: ca.caFile, TOPE_RETRY_BASE_MS: '20' });
      [fetcher] = await device.start('fetcher', 'api-gateway');
    });
    after(async () => {
      await device?.stop();
      await proxy?.stop();
      await origin?.stop();
    });

    const url = (name: string, port = origin.port) => `${origin.scheme}://127.0.0.1:${port}/${name}`;

    /** One /download of `name` to toInstall; the fetcher verified MD5 and SHA-256 on the way. */
    async function download(name: string, at = url(name), timeoutMs = 180_000): Promise<void> {
      const f = files.get(name)!;
      version++;
      await requestDownload(device, name, `1.0.${version}`, at);
      const ready = `Package ready to install: 1.0.${version}`;
      // ends at once when the fetcher dies (undici 7 did, on these servers) or the download fails
      const end = await waitFor(
        ready,
        async () => {
          if (!fetcher.alive()) return { stage: 'dead', message: fetcher.stderr.slice(-600) };
          const { data } = (await device.progress()).body;
          return data.stage === 'failed' || (data.stage === 'toInstall' && data.message === ready) ? data : null;
        },
        timeoutMs,
        50,
      );
      assert.equal(end.message, ready, JSON.stringify(end));
      const held = await fsp.readFile(path.join(device.packagesDir, name));
      assert.equal(createHash('md5').update(held).digest('hex'), f.md5);
    }

    const requests = () => fetcher.lines.filter((l) => l.msg === 'GET') as Array<{ url: string; range: string | null }>;

    test('a large download (48 MiB) arrives whole', async () => {
      await download('large.bin');
    });

    test('a download cut mid-body (TCP reset, then FIN) resumes as the server allows', async () => {
      const before = requests().length;
      proxy.cutNext(9 * MiB, 'reset');
      proxy.cutNext(5 * MiB, 'fin');
      await download('cut.bin', url('cut.bin', proxy.port));
      const mine = requests().slice(before);
      assert.equal(mine.length, 3, JSON.stringify(mine));
      assert.equal(mine[0].range, null);
      assert.match(mine[1].range ?? '', /^bytes=[1-9]\d*-$/, 'the second request asks for the rest');
      const log = await origin.log();
      if (c.resumeStatus === 206) {
        // nginx honours Range when If-Range is its own (strong) ETag: only the missing bytes came again
        const partial = log.split('\n').filter((l) => l.startsWith('206 '));
        assert.ok(partial.length >= 2, log);
        assert.match(
          partial[0],
          /range="bytes=\d+-" if_range="(\\x22|")[0-9a-f]+-[0-9a-f]+(\\x22|")" etag="(\\x22|")[0-9a-f]+-[0-9a-f]+(\\x22|")"/,
        );
      } else if (origin.name.startsWith('python')) {
        assert.ok(log.split('\n').filter((l) => /"GET \/cut\.bin HTTP\/1\.1" 200/.test(l)).length >= 3, log);
      }
    });

    test('several downloads in a row by the same fetcher process, over kept-alive and closed connections', async () => {
      const pid = fetcher.child.pid;
      for (const n of [1, 2, 3, 4]) await download(`row-${n}.bin`);
      assert.ok(fetcher.alive(), 'the fetcher process never died');
      assert.equal(fetcher.child.pid, pid);
      assert.equal(fetcher.stderr, '', 'nothing on stderr (an uncaught exception would be there)');
      if (origin.name.startsWith('nginx')) {
        // keepalive_requests 2: the second answer on each kept-alive connection says Connection: close
        const log = await origin.log();
        assert.match(log, /connection="close" request=2/);
        assert.match(log, /connection="keep-alive" request=1/);
      }
    });
  }),
);

// nginx's own answers where a CDN's differ from a test server's: a file replaced on the server
// between two attempts (the same bytes, deployed again: a new mtime, so a new ETag), and a
// precompressed copy sent whatever the request accepts (gzip_static always, as an object stored
// with Content-Encoding metadata is served).
describe(
  'nginx: If-Range against a redeployed file, and a compressed answer to an identity request',
  {
    skip: missing('nginx') ?? undefined,
  },
  () => {
    let origin: RealOrigin;
    let proxy: CuttingProxy;
    let device: TestDevice;
    let fetcher: Service;
    before(async () => {
      origin = await startNginx(docroot, undefined, 100, 'gzip_static always;');
      proxy = await new CuttingProxy(origin.port).start();
      device = new TestDevice({ TOPE_ALLOW_HTTP: '1', TOPE_RETRY_BASE_MS: '20' });
      [fetcher] = await device.start('fetcher', 'api-gateway');
    });
    after(async () => {
      await device?.stop();
      await proxy?.stop();
      await origin?.stop();
    });

    async function download(name: string, version: string, at: string) {
      await requestDownload(device, name, version, at);
      return downloadEnd(device, version, 120_000);
    }
    const requests = () => fetcher.lines.filter((l) => l.msg === 'GET') as Array<{ url: string; range: string | null }>;

    test('cut, then the file redeployed (new mtime, new ETag): If-Range gets a 200 and the fetcher starts over from byte 0', async () => {
      const before = requests().length;
      const file = path.join(docroot, 'touched.bin');
      proxy.cutNext(3 * MiB, 'reset', () => utimesSync(file, new Date(), new Date(Date.now() + 60_000)));
      const end = await download('touched.bin', '2.0.0', `http://127.0.0.1:${proxy.port}/touched.bin`);
      assert.equal(end.stage, 'toInstall', JSON.stringify(end));
      const mine = requests().slice(before);
      assert.equal(mine.length, 2, JSON.stringify(mine));
      assert.match(mine[1].range ?? '', /^bytes=[1-9]\d*-$/);
      // nginx compared If-Range with the file's new ETag and sent the whole file
      const lines = (await origin.log()).split('\n').filter((l) => l.includes('range="bytes='));
      assert.equal(lines.length, 1, lines.join('\n'));
      const [, ifRange, etag] = /^200 range="bytes=\d+-" if_range="(.+)" etag="(.+)" connection/.exec(lines[0]) ?? [];
      assert.ok(ifRange && etag && ifRange !== etag, lines[0]);
    });

    test('a gzip-encoded answer to an identity request is refused at once, naming the encoding, nothing kept', async () => {
      const before = requests().length;
      const end = await download('gz.bin', '2.0.1', `http://127.0.0.1:${origin.port}/gz.bin`);
      assert.equal(
        end.error,
        'DOWNLOAD_FAILED: the server sent the package with Content-Encoding gzip (identity was asked for); serve it as is',
      );
      assert.equal(requests().length - before, 1, 'no retry: another attempt gets the same answer');
      assert.deepEqual(
        await fsp.readdir(device.packagesDir),
        [],
        'the verified one it replaced is gone too, as any new download does',
      );
    });
  },
);

describe(
  'a real origin reachable over IPv6 only: nginx listening on [::1] alone',
  { skip: missing('nginx') ?? undefined },
  () => {
    let origin: RealOrigin;
    before(async () => {
      origin = await startNginx(docroot, undefined, 100, '', '::1');
    });
    after(() => origin?.stop());

    /** One /download of `name` from the IPv6 literal URL on a device with `env`; the stage it ends at. */
    async function downloadOverIpv6(name: string, version: string, env: Record<string, string>) {
      const device = new TestDevice({ TOPE_ALLOW_HTTP: '1', TOPE_RETRY_BASE_MS: '20', ...env });
      try {
        await device.start('fetcher', 'api-gateway');
        await requestDownload(device, name, version, `http://[::1]:${origin.port}/${name}`);
        const end = await downloadEnd(device, version, 60_000);
        const held =
          end.stage === 'toInstall'
            ? createHash('md5').update(await fsp.readFile(path.join(device.packagesDir, name)))
            : null;
        return { end, heldMd5: held?.digest('hex') ?? null };
      } finally {
        await device.stop();
      }
    }

    test('downloaded and verified from http://[::1]:PORT/ where ::1 is an allowed net', async () => {
      const { end, heldMd5 } = await downloadOverIpv6('row-2.bin', '3.0.0', { TOPE_ALLOWED_URL_NETS: '::1/128' });
      assert.equal(end.stage, 'toInstall', JSON.stringify(end));
      assert.equal(heldMd5, files.get('row-2.bin')!.md5);
      assert.match(await origin.log(), /^200 range="-"/m, 'nginx served it over IPv6');
    });

    test('refused without a request where only IPv4 loopback is allowed (::1 is checked as loopback too)', async () => {
      const served = (await origin.log()).split('\n').filter(Boolean).length;
      const { end } = await downloadOverIpv6('row-3.bin', '3.0.1', { TOPE_ALLOWED_URL_NETS: '127.0.0.0/8' });
      assert.match(end.error, /^DOWNLOAD_FAILED: package URL refused: ::1: ::1 is a loopback address/);
      assert.equal((await origin.log()).split('\n').filter(Boolean).length, served, 'no request reached the origin');
    });
  },
);
