import assert from 'node:assert/strict';
import type net from 'node:net';
import { after, before, test } from 'node:test';
import { MAX_HEADER_BYTES } from '../services/api-gateway/connection-limits.js';
import { createCommandServer, type Command } from '../shared/protocol.js';
import { TestDevice } from './helpers/device.js';
import { rawRequest, requestText } from './helpers/raw-http.js';

// Only the printer may ask: the gateway (a real process, listening on every address as a LAN
// drop-in would have it) answers only requests a web page cannot forge. Both workers are
// recording stand-ins on their sockets, so the test sees every command that got through.

const device = new TestDevice({ TOPE_LISTEN_HOST: '0.0.0.0', TOPE_API_HOST_NAMES: 'printer.local' });
const commands: Command[] = [];
const standIns: net.Server[] = [];
let port = 0;
const job = JSON.stringify({
  version: '1.0.0',
  package_url: 'http://127.0.0.1:9/p.zip',
  package_name: 'p.zip',
  package_size: 10,
  package_md5: 'a'.repeat(32),
});

before(async () => {
  for (const socket of [device.env.TOPE_FETCHER_SOCKET, device.env.TOPE_INSTALLER_SOCKET]) {
    const s = createCommandServer(
      async (c) => {
        commands.push(c);
        return { ok: true };
      },
      () => undefined,
    );
    await new Promise<void>((ok) => s.listen(socket, ok));
    standIns.push(s);
  }
  await device.start('api-gateway');
  port = Number(device.env.TOPE_LISTEN_PORT);
});
after(async () => {
  await device.stop();
  for (const s of standIns) s.close();
});

const post = (headers: Record<string, string>, body = job) =>
  rawRequest(port, requestText('POST', '/api/v1.0/download', { host: `127.0.0.1:${port}`, ...headers }, body));
const get = (headers: Record<string, string>, address = '127.0.0.1') =>
  rawRequest(port, requestText('GET', '/api/v1.0/progress', headers), 10_000, address);

async function refused(
  answer: Promise<Awaited<ReturnType<typeof rawRequest>>>,
  status: number,
  msg: RegExp,
): Promise<void> {
  const r = await answer;
  assert.equal(r.status, status, r.raw);
  assert.equal(r.body.code, status);
  assert.match(r.body.msg, msg);
  assert.doesNotMatch(r.headers, /access-control-allow/i, 'CORS is never granted');
  assert.deepEqual(commands, [], 'no command reached a worker');
}

test('[worker stand-ins] Host must name this gateway: a DNS-rebinding name, another port, no Host at all', async () => {
  await refused(
    post({ host: `rebind.attacker.example:${port}`, 'content-type': 'application/json' }),
    403,
    /^HOST_NOT_ALLOWED: Host "rebind\.attacker\.example:\d+" does not name this gateway$/,
  );
  await refused(
    post({ host: `127.0.0.1:${port + 1}`, 'content-type': 'application/json' }),
    403,
    /^HOST_NOT_ALLOWED: /,
  );
  await refused(post({ host: 'localhost', 'content-type': 'application/json' }), 403, /^HOST_NOT_ALLOWED: /);
  await refused(rawRequest(port, `GET /api/v1.0/progress HTTP/1.0\r\n\r\n`), 403, /^HOST_NOT_ALLOWED: Host null/);
  await refused(rawRequest(port, `GET /api/v1.0/progress HTTP/1.1\r\n\r\n`), 403, /^HOST_NOT_ALLOWED: Host null/);
  await refused(get({ host: `127.0.0.9:${port}` }, '127.0.0.2'), 403, /^HOST_NOT_ALLOWED: /);
});

test('[worker stand-ins] Host may be loopback, the configured names, or the address the connection arrived on (a LAN drop-in)', async () => {
  for (const host of [
    `127.0.0.1:${port}`,
    `localhost:${port}`,
    `LOCALHOST:${port}`,
    `[::1]:${port}`,
    `printer.local:${port}`,
  ]) {
    const r = await get({ host });
    assert.equal(r.status, 200, `${host}: ${r.raw}`);
    assert.equal(r.body.code, 200);
  }
  // listening on 0.0.0.0: reached at 127.0.0.2, as a LAN client reaches the printer's own address
  assert.equal((await get({ host: `127.0.0.2:${port}` }, '127.0.0.2')).body.code, 200);
});

test('[worker stand-ins] a POST must say application/json: text/plain, a form, none at all are 415', async () => {
  await refused(
    post({ 'content-type': 'text/plain' }),
    415,
    /^UNSUPPORTED_MEDIA_TYPE: Content-Type must be application\/json, not "text\/plain"$/,
  );
  await refused(post({ 'content-type': 'application/x-www-form-urlencoded' }), 415, /^UNSUPPORTED_MEDIA_TYPE: /);
  await refused(post({ 'content-type': 'multipart/form-data; boundary=x' }), 415, /^UNSUPPORTED_MEDIA_TYPE: /);
  await refused(post({}), 415, /^UNSUPPORTED_MEDIA_TYPE: Content-Type must be application\/json, not null$/);
  await refused(post({ 'content-type': 'application/jsonx' }), 415, /^UNSUPPORTED_MEDIA_TYPE: /);
});

test('[worker stand-ins] any Origin, any preflight, any request a browser marks cross-site: 403, no CORS', async () => {
  const json = { 'content-type': 'application/json' };
  await refused(
    post({ ...json, origin: 'http://evil.example' }),
    403,
    /^CROSS_ORIGIN_REFUSED: requests from web pages are not served \(no CORS\)$/,
  );
  await refused(post({ ...json, origin: 'null' }), 403, /^CROSS_ORIGIN_REFUSED: /);
  await refused(post({ ...json, origin: `http://127.0.0.1:${port}` }), 403, /^CROSS_ORIGIN_REFUSED: /);
  await refused(get({ host: `127.0.0.1:${port}`, origin: 'http://evil.example' }), 403, /^CROSS_ORIGIN_REFUSED: /);
  await refused(get({ host: `127.0.0.1:${port}`, 'sec-fetch-site': 'cross-site' }), 403, /^CROSS_ORIGIN_REFUSED: /);
  await refused(
    rawRequest(
      port,
      requestText('OPTIONS', '/api/v1.0/download', {
        host: `127.0.0.1:${port}`,
        origin: 'http://evil.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type',
      }),
    ),
    403,
    /^CROSS_ORIGIN_REFUSED: /,
  );
});

test("[worker stand-ins] Node's own refusals carry the envelope: headers too large (431), a malformed request (400)", async () => {
  await refused(
    rawRequest(
      port,
      requestText('GET', '/api/v1.0/progress', { host: `127.0.0.1:${port}`, 'x-big': 'x'.repeat(MAX_HEADER_BYTES) }),
    ),
    431,
    /^HEADERS_TOO_LARGE: request headers larger than 8192 bytes$/,
  );
  await refused(rawRequest(port, 'GARBAGE\r\n\r\n'), 400, /^VALIDATION_ERROR: malformed HTTP request \(HPE_/);
  await refused(
    rawRequest(
      port,
      `POST /api/v1.0/download HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n`,
    ),
    400,
    /^VALIDATION_ERROR: malformed HTTP request/,
  );
});

test('[worker stand-ins] what the printer sends still gets through (the control for the refusals above)', async () => {
  const r = await post({ 'content-type': 'application/json; charset=utf-8' });
  assert.equal(r.status, 200, r.raw);
  assert.equal(r.body.code, 200);
  assert.equal(commands.length, 1);
  assert.equal(commands[0].type, 'download');
  commands.length = 0;
});
