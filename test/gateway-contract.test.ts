import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import type net from 'node:net';
import path from 'node:path';
import { after, afterEach, before, test } from 'node:test';
import { createCommandServer, type Command, type Reply } from '../shared/protocol.js';
import type { FetcherRecord, InstallerRecord } from '../shared/worker-records.js';
import { MAX_HEADER_BYTES } from '../services/api-gateway/connection-limits.js';
import { call } from './helpers/api.js';
import { rawRequest, requestText } from './helpers/raw-http.js';
import { TestDevice } from './helpers/device.js';
import { waitFor } from './helpers/wait.js';

// The gateway as a real process over seeded worker records. The installer is a recording
// stand-in on its Unix socket (the real one runs in end-to-end.test.ts); the fetcher is real.

const device = new TestDevice();
const installerCommands: Command[] = [];
let installerReply: Reply = { ok: true };
let standIn: net.Server;
const job = {
  version: '1.0.0',
  package_url: 'http://127.0.0.1:9/p.zip',
  package_name: 'p.zip',
  package_size: 10,
  package_md5: 'a'.repeat(32),
};
const st = (stage: FetcherRecord['status']['stage'], progress = 0, error: string | null = null) => ({
  stage,
  progress,
  message: `m-${stage}`,
  error,
});

before(async () => {
  standIn = createCommandServer(
    async (c) => {
      installerCommands.push(c);
      return installerReply;
    },
    () => undefined,
  );
  await new Promise<void>((ok) => standIn.listen(device.env.TOPE_INSTALLER_SOCKET, ok));
  await device.start('fetcher', 'api-gateway');
});
after(async () => {
  await device.stop();
  standIn.close();
});
afterEach(() => {
  installerCommands.length = 0;
  installerReply = { ok: true };
});

const dl = (body: unknown) => call(device.base, 'POST', '/api/v1.0/download', body);
const up = (body: unknown) => call(device.base, 'POST', '/api/v1.0/update', body);

async function seed(fetch: Partial<FetcherRecord> | null, install: Partial<InstallerRecord> | null) {
  await device.fetcherStore.remove();
  await device.installerStore.remove();
  if (fetch)
    await device.seedFetcher({
      seq: 1,
      job,
      checkpoint: null,
      verifiedAt: null,
      packageFile: null,
      status: st('idle'),
      ...fetch,
    });
  if (install) await device.seedInstaller({ seq: 2, version: '1.0.0', status: st('installing'), ...install });
}

test('GET / is the health body with the service and its version', async () => {
  const r = await call(device.base, 'GET', '/');
  assert.equal(r.http, 200);
  assert.equal(r.body.status, 'ok');
  assert.equal(r.body.service, 'tope-updater');
  assert.match(r.body.version, /^\d+\.\d+\.\d+$/);
});

test('GET /api/v1.0/openapi.json documents the three endpoints from the validating schemas', async () => {
  const r = await call(device.base, 'GET', '/api/v1.0/openapi.json');
  assert.equal(r.body.openapi, '3.1.0');
  assert.deepEqual(Object.keys(r.body.paths).sort(), [
    '/',
    '/api/v1.0/download',
    '/api/v1.0/progress',
    '/api/v1.0/update',
  ]);
  const download = r.body.paths['/api/v1.0/download'].post.requestBody.content['application/json'].schema;
  assert.deepEqual(download.required.sort(), ['package_md5', 'package_name', 'package_size', 'package_url', 'version']);
  assert.equal(download.properties.package_md5.pattern, '^[a-f0-9]{32}$');
  assert.equal(download.properties.version.pattern, '^[0-9]+\\.[0-9]+\\.[0-9]+$');
});

test('the OpenAPI document has the answers the gateway gives before any route: 403, 415 on POSTs, 408, 431, 400, each answered so by the running gateway', async () => {
  const doc = (await call(device.base, 'GET', '/api/v1.0/openapi.json')).body;
  const port = Number(new URL(device.base).port);
  const host = `127.0.0.1:${port}`;
  const documented = (route: string, method: string, status: number) =>
    doc.paths[route][method].responses[String(status)]?.content['application/json'].schema;
  const refused = [
    {
      route: '/api/v1.0/progress',
      method: 'get',
      text: requestText('GET', '/api/v1.0/progress', { host: 'evil.example' }),
      error: 'HOST_NOT_ALLOWED',
    },
    {
      route: '/api/v1.0/update',
      method: 'post',
      text: requestText(
        'POST',
        '/api/v1.0/update',
        { host, origin: 'http://evil.example', 'content-type': 'application/json' },
        '{}',
      ),
      error: 'CROSS_ORIGIN_REFUSED',
    },
    {
      route: '/api/v1.0/download',
      method: 'post',
      text: requestText('POST', '/api/v1.0/download', { host, 'content-type': 'text/plain' }, '{}'),
      error: 'UNSUPPORTED_MEDIA_TYPE',
    },
    {
      route: '/',
      method: 'get',
      text: requestText('GET', '/', { host, 'x-filler': 'x'.repeat(MAX_HEADER_BYTES) }),
      error: 'HEADERS_TOO_LARGE',
    },
  ];
  for (const { route, method, text, error } of refused) {
    const answer = await rawRequest(port, text);
    assert.ok(answer.body.msg.startsWith(`${error}: `), answer.raw);
    const schema = documented(route, method, answer.status);
    assert.ok(schema, `${method} ${route}: ${answer.status} is not documented`);
    assert.equal(schema.properties.code.const, answer.status);
    assert.match(schema.properties.msg.description, new RegExp(error));
  }
  // every route: 403 (both codes), 408, 431 and 400; 415 on the POSTs only
  for (const [route, methods] of Object.entries(doc.paths) as Array<[string, Record<string, any>]>) {
    for (const [method, operation] of Object.entries(methods)) {
      const statuses = Object.keys(operation.responses).sort();
      assert.deepEqual(
        statuses,
        method === 'post' ? ['200', '400', '403', '408', '415', '431'] : ['200', '400', '403', '408', '431'],
        `${method} ${route}`,
      );
      assert.match(
        operation.responses['403'].content['application/json'].schema.properties.msg.description,
        /HOST_NOT_ALLOWED or CROSS_ORIGIN_REFUSED/,
      );
      assert.match(operation.responses['408'].description, /REQUEST_TIMEOUT/);
    }
  }
  // the envelope's code can be any the API gives
  const code = doc.paths['/api/v1.0/progress'].get.responses['200'].content['application/json'].schema.properties.code;
  assert.deepEqual(
    code.anyOf.map((c: { const: number }) => c.const),
    [200, 400, 403, 404, 408, 409, 410, 415, 431, 500],
  );
});

test('fresh start: /progress is exactly the idle body of the contract', async () => {
  await seed(null, null);
  const r = await call(device.base, 'GET', '/api/v1.0/progress');
  assert.deepEqual(r, {
    http: 200,
    body: {
      code: 200,
      msg: 'success',
      data: { stage: 'idle', progress: 0, message: 'Updater ready', error: null },
      stage: null,
      progress: null,
    },
  });
});

test('/progress while failed: code 500 and "Update failed: <error>"; without an error just "Update failed"', async () => {
  await seed({ status: st('failed', 42, 'DOWNLOAD_FAILED: HTTP 404 from the package server') }, null);
  const r = await call(device.base, 'GET', '/api/v1.0/progress');
  assert.deepEqual(r.body, {
    code: 500,
    msg: 'Update failed: DOWNLOAD_FAILED: HTTP 404 from the package server',
    data: st('failed', 42, 'DOWNLOAD_FAILED: HTTP 404 from the package server'),
    stage: 'failed',
    progress: 42,
  });
  await seed({ status: st('failed', 0) }, null);
  assert.equal((await call(device.base, 'GET', '/api/v1.0/progress')).body.msg, 'Update failed');
});

test('the status of the worker that took the latest command is shown', async () => {
  await seed({ seq: 5, status: st('toInstall', 100) }, { seq: 4, status: st('success', 100) });
  assert.equal((await call(device.base, 'GET', '/api/v1.0/progress')).body.data.stage, 'toInstall');
  await seed({ seq: 5, status: st('toInstall', 100) }, { seq: 6, status: st('installing', 40) });
  assert.equal((await call(device.base, 'GET', '/api/v1.0/progress')).body.data.stage, 'installing');
});

test('unknown routes and methods: HTTP 404 with the envelope', async () => {
  for (const [m, p] of [
    ['GET', '/nope'],
    ['GET', '/api/v1.0/download'],
    ['POST', '/api/v1.0/progress'],
  ] as const) {
    const r = await call(device.base, m, p, m === 'POST' ? {} : undefined);
    assert.equal(r.http, 404);
    assert.equal(r.body.code, 404);
    assert.match(r.body.msg, /^NOT_FOUND: no route/);
  }
});

const valid = {
  version: '1.2.3',
  package_url: 'http://127.0.0.1:9/x.zip',
  package_name: 'x.zip',
  package_size: 468,
  package_md5: '6952a5946abfa612106825c86f97805d',
};
const badBodies: Array<[string, unknown, RegExp]> = [
  ['version not x.y.z', { ...valid, version: '1.2' }, /^VALIDATION_ERROR: version: must look like 1\.2\.3$/],
  ['version with non-ASCII digits', { ...valid, version: '１.2.3' }, /^VALIDATION_ERROR: version:/],
  ['version missing', { ...valid, version: undefined }, /^VALIDATION_ERROR: version:/],
  [
    'url not a URL',
    { ...valid, package_url: 'not a url' },
    /^VALIDATION_ERROR: package_url: must be an http or https URL$/,
  ],
  ['url of another scheme', { ...valid, package_url: 'ftp://h/x.zip' }, /^VALIDATION_ERROR: package_url:/],
  ['name with a slash', { ...valid, package_name: '../../etc/cron.d/x' }, /^VALIDATION_ERROR: package_name:/],
  ['name ..', { ...valid, package_name: '..' }, /^VALIDATION_ERROR: package_name: must not be \. or \.\.$/],
  ['name .', { ...valid, package_name: '.' }, /^VALIDATION_ERROR: package_name:/],
  ['name too long', { ...valid, package_name: 'a'.repeat(129) }, /^VALIDATION_ERROR: package_name:/],
  ['size as a string', { ...valid, package_size: '468' }, /^VALIDATION_ERROR: package_size:/],
  ['size 0', { ...valid, package_size: 0 }, /^VALIDATION_ERROR: package_size: must be at least 1$/],
  ['size fractional', { ...valid, package_size: 1.5 }, /^VALIDATION_ERROR: package_size: must be an integer$/],
  [
    'md5 upper-case',
    { ...valid, package_md5: valid.package_md5.toUpperCase() },
    /^VALIDATION_ERROR: package_md5: must be 32 lower-case hex characters$/,
  ],
  ['sha256 short', { ...valid, package_sha256: 'abc' }, /^VALIDATION_ERROR: package_sha256:/],
  ['an array', [valid], /^VALIDATION_ERROR: body:/],
  ['null', null, /^VALIDATION_ERROR: body:/],
];

for (const [name, body, msg] of badBodies) {
  test(`POST /download refuses ${name} with code 400 and changes nothing`, async () => {
    await seed(null, null);
    const r = await dl(body);
    assert.equal(r.http, 200);
    assert.equal(r.body.code, 400);
    assert.match(r.body.msg, msg);
    assert.equal((await call(device.base, 'GET', '/api/v1.0/progress')).body.data.stage, 'idle');
    assert.equal(await device.fetcherStore.read(), null);
  });
}

test('malformed JSON, an empty body and a body over 64 KiB are code 400', async () => {
  await seed(null, null);
  assert.match(
    (await call(device.base, 'POST', '/api/v1.0/download', undefined, '{"version": ')).body.msg,
    /^VALIDATION_ERROR: body: not valid JSON/,
  );
  assert.match(
    (await call(device.base, 'POST', '/api/v1.0/download', undefined, '')).body.msg,
    /^VALIDATION_ERROR: body: empty/,
  );
  const big = JSON.stringify({ ...valid, pad: 'x'.repeat(70_000) });
  const r = await call(device.base, 'POST', '/api/v1.0/update', undefined, big);
  assert.deepEqual([r.http, r.body.code], [200, 400]);
  assert.equal(r.body.msg, 'VALIDATION_ERROR: body: larger than 65536 bytes');
  assert.equal(await device.fetcherStore.read(), null);
});

test('unknown fields are ignored', async () => {
  await seed({ status: st('installing', 10) }, null);
  const r = await dl({ ...valid, extra: 1 });
  assert.equal(r.body.code, 409);
});

test('POST /update refuses bad versions with code 400', async () => {
  for (const body of [{}, { version: 'v1' }, { version: 1 }, 'x']) {
    const r = await up(body);
    assert.equal(r.body.code, 400);
    assert.match(r.body.msg, /^VALIDATION_ERROR: (version|body):/);
  }
});

test('[installer stand-in] POST /update stage x command table', async () => {
  const fresh = new Date().toISOString();
  const stale = new Date(Date.now() - 25 * 3600_000).toISOString();
  const rows: Array<
    [string, Partial<FetcherRecord> | null, Partial<InstallerRecord> | null, string, number, RegExp | null, boolean]
  > = [
    ['idle', null, null, '1.0.0', 404, /^PACKAGE_NOT_FOUND: Package not found: 1\.0\.0$/, false],
    ['toInstall, same version', { status: st('toInstall', 100), verifiedAt: fresh }, null, '1.0.0', 200, null, true],
    [
      'toInstall, other version',
      { status: st('toInstall', 100), verifiedAt: fresh },
      null,
      '2.0.0',
      404,
      /^PACKAGE_NOT_FOUND/,
      false,
    ],
    [
      'downloading, same version',
      { status: st('downloading', 40) },
      null,
      '1.0.0',
      409,
      /^DOWNLOAD_INCOMPLETE: /,
      false,
    ],
    [
      'verifying, other version',
      { status: st('verifying') },
      null,
      '2.0.0',
      409,
      /^OPERATION_IN_PROGRESS: Operation already in progress: verifying$/,
      false,
    ],
    [
      'installing, same version (a repeat)',
      { status: st('toInstall', 100) },
      { seq: 2, status: st('installing', 30) },
      '1.0.0',
      200,
      null,
      false,
    ],
    [
      'installing, other version',
      { status: st('toInstall', 100) },
      { seq: 2, status: st('installing', 30) },
      '2.0.0',
      409,
      /^OPERATION_IN_PROGRESS/,
      false,
    ],
    [
      'failed install, package still verified',
      { status: st('toInstall', 100), verifiedAt: fresh },
      { seq: 2, status: st('failed', 0, 'UPDATE_FAILED: x') },
      '1.0.0',
      200,
      null,
      true,
    ],
    [
      'failed download of that version',
      { status: st('failed', 30, 'DOWNLOAD_FAILED: x') },
      null,
      '1.0.0',
      409,
      /^DOWNLOAD_INCOMPLETE: /,
      false,
    ],
    [
      'failed download, other version',
      { status: st('failed', 30, 'DOWNLOAD_FAILED: x') },
      null,
      '3.0.0',
      404,
      /^PACKAGE_NOT_FOUND/,
      false,
    ],
    [
      'success of that version (a repeat)',
      { status: st('toInstall', 100) },
      { seq: 2, status: st('success', 100) },
      '1.0.0',
      200,
      null,
      false,
    ],
    [
      'success, other version',
      { status: st('toInstall', 100) },
      { seq: 2, status: st('success', 100) },
      '2.0.0',
      404,
      /^PACKAGE_NOT_FOUND/,
      false,
    ],
  ];
  for (const [name, fetch, install, version, code, msg, installs] of rows) {
    await seed(fetch, install);
    installerCommands.length = 0;
    const r = await up({ version });
    assert.equal(r.body.code, code, name);
    if (msg) assert.match(r.body.msg, msg, name);
    else assert.deepEqual(r.body, { code: 200, msg: 'success', data: null }, name);
    if (code === 409) assert.equal(typeof r.body.stage, 'string', `${name}: 409 carries the stage`);
    if (code === 404) assert.ok(!('stage' in r.body), `${name}: 404 has no stage`);
    assert.equal(installerCommands.length, installs ? 1 : 0, `${name}: install command sent`);
    const seq = Math.max(fetch?.seq ?? 1, install ? (install.seq ?? 2) : 0) + 1;
    if (installs) assert.deepEqual(installerCommands[0], { type: 'install', seq, version }, name);
  }

  // expired: 410, the package is deleted by the fetcher, and nothing is installed
  const pkg = path.join(device.packagesDir, 'p.zip');
  await fsp.writeFile(pkg, 'zip');
  await seed({ status: st('toInstall', 100), verifiedAt: stale, packageFile: pkg }, null);
  const r = await up({ version: '1.0.0' });
  assert.equal(r.body.code, 410);
  assert.equal(r.body.msg, 'PACKAGE_EXPIRED: Package expired (>24h after verification)');
  assert.equal(r.body.stage, 'idle');
  assert.equal(installerCommands.length, 0);
  assert.deepEqual(await fsp.readdir(device.packagesDir), []);
  assert.match((await call(device.base, 'GET', '/api/v1.0/progress')).body.data.message, /expired/);
});

test('POST /download while installing is 409; in success or failed it starts', async () => {
  await seed({ status: st('toInstall', 100) }, { seq: 2, status: st('installing', 30) });
  const busy = await dl(valid);
  assert.equal(busy.body.code, 409);
  assert.equal(busy.body.msg, 'OPERATION_IN_PROGRESS: Operation already in progress: installing');
  assert.deepEqual([busy.body.stage, busy.body.progress], ['installing', 30]);
  for (const stage of ['success', 'failed'] as const) {
    await seed({ status: st('toInstall', 100) }, { seq: 2, status: st(stage, 100) });
    assert.equal((await dl(valid)).body.code, 200, stage);
    const rec = await device.fetcherStore.read();
    assert.equal(rec?.seq, 3, 'the new command outranks the installer record');
    assert.equal(rec?.job?.version, '1.2.3');
    // the package URL is dead: wait for the fetcher to give up before seeding again
    await waitFor('the download to fail', async () => (await device.fetcherStore.read())?.status.stage === 'failed');
  }
});

test('[installer stand-in] a worker refusal after the gateway decided keeps its API code: 404 PACKAGE_NOT_FOUND, 410 PACKAGE_EXPIRED', async () => {
  // the race: the gateway read toInstall, but the installer's own check (package gone, or the
  // window passed in between) refuses; README promises 404 / 410, not 500
  const cases: Array<[Reply & { ok: false }, number]> = [
    [{ ok: false, code: 'PACKAGE_NOT_FOUND', message: 'Package not found: 1.0.0' }, 404],
    [{ ok: false, code: 'PACKAGE_EXPIRED', message: 'Package expired (>24h after verification)' }, 410],
    [{ ok: false, code: 'OPERATION_IN_PROGRESS', message: 'installing 0.9.0' }, 409],
  ];
  for (const [reply, code] of cases) {
    await seed({ status: st('toInstall', 100), verifiedAt: new Date().toISOString() }, null);
    installerReply = reply;
    const r = await up({ version: '1.0.0' });
    assert.equal(installerCommands.length, 1, `${reply.code}: the installer was asked`);
    installerCommands.length = 0;
    assert.deepEqual([r.body.code, r.body.msg], [code, `${reply.code}: ${reply.message}`]);
  }
});

test('[installer stand-in] an unreachable worker is code 500 SERVICE_UNAVAILABLE and nothing changes', async () => {
  await seed({ status: st('toInstall', 100), verifiedAt: new Date().toISOString() }, null);
  standIn.close();
  await fsp.rm(device.env.TOPE_INSTALLER_SOCKET, { force: true });
  const r = await up({ version: '1.0.0' });
  assert.equal(r.body.code, 500);
  assert.match(r.body.msg, /^SERVICE_UNAVAILABLE: cannot reach .*installer\.sock: ENOENT$/);
  assert.equal((await call(device.base, 'GET', '/api/v1.0/progress')).body.data.stage, 'toInstall');
});
