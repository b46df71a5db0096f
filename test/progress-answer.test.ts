import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { sendText } from '../services/api-gateway/envelope.js';
import { PROGRESS_PATH, ProgressAnswer, progressFirst } from '../services/api-gateway/progress-answer.js';
import type { View } from '../services/api-gateway/status-view.js';
import * as statuses from '../shared/status.js';
import type { Status } from '../shared/status.js';

// The /progress poll answered ahead of the app's router, on a real loopback server. The app is a
// stand-in here (a listener that says it was reached); the real gateway's bytes for the same
// path, through either way, are the contract tests' (gateway-contract.test.ts).

const viewOf = (status: Status): View => ({
  seq: 1,
  status,
  active: 'fetcher',
  records: { fetcher: null, installer: null },
});

async function serve(progress: ProgressAnswer) {
  const toApp: string[] = [];
  const server = http.createServer(
    progressFirst((req, res) => {
      toApp.push(`${req.method} ${req.url}`);
      sendText(res, 'app');
    }, progress),
  );
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const get = async (url: string, method = 'GET') => {
    const r = await fetch(`${base}${url}`, { method });
    return { status: r.status, type: r.headers.get('content-type'), body: await r.text() };
  };
  return { toApp, get, close: () => server.close() };
}

test('the same status is serialized once; a new status object is serialized again', async () => {
  let status = statuses.downloading('1.2.3', 10, 100);
  const progress = new ProgressAnswer(async () => viewOf(status));
  const first = await progress.text();
  assert.equal(await progress.text(), first);
  assert.equal(first, JSON.stringify({ code: 200, msg: 'success', data: status, stage: null, progress: null }));
  status = statuses.failed('DISK_FULL: no space', 'Update failed', 10);
  assert.deepEqual(JSON.parse(await progress.text()), {
    code: 500,
    msg: 'Update failed: DISK_FULL: no space',
    data: status,
    stage: 'failed',
    progress: 10,
  });
});

test('GET of the exact path is answered here; any other request, and a failed read, go to the app', async (t) => {
  let fail = false;
  const progress = new ProgressAnswer(async () => {
    if (fail) throw new Error('records unreadable');
    return viewOf(statuses.idle());
  });
  const s = await serve(progress);
  t.after(s.close);
  const polled = await s.get(PROGRESS_PATH);
  assert.deepEqual(polled, { status: 200, type: 'application/json; charset=utf-8', body: await progress.text() });
  assert.deepEqual(s.toApp, []);
  await s.get(`${PROGRESS_PATH}?x=1`);
  await s.get(PROGRESS_PATH, 'HEAD');
  await s.get('/api/v1.0/openapi.json');
  fail = true;
  assert.equal((await s.get(PROGRESS_PATH)).body, 'app');
  assert.deepEqual(s.toApp, [
    `GET ${PROGRESS_PATH}?x=1`,
    `HEAD ${PROGRESS_PATH}`,
    'GET /api/v1.0/openapi.json',
    `GET ${PROGRESS_PATH}`,
  ]);
});
