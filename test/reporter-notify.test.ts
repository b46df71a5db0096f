import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import pino from 'pino';
import { LatestOnly } from '../shared/latest-only.js';
import { Notifier } from '../shared/notify.js';
import { Reporter } from '../shared/reporter.js';
import type { Status } from '../shared/status.js';
import { DeviceApi } from './helpers/device-api.js';
import { call } from './helpers/api.js';
import { TestDevice } from './helpers/device.js';
import { distDir } from './helpers/services.js';
import { waitFor } from './helpers/wait.js';

const log = pino({ level: 'silent' });
const s = (progress: number): Status => ({ stage: 'downloading', progress, message: 'm', error: null });
const deviceApi = new DeviceApi();
before(() => deviceApi.start());
after(() => deviceApi.stop());

test('reports reach device-api with the original payload', async () => {
  deviceApi.reports.length = 0;
  const r = new Reporter(deviceApi.url, 500, log);
  r.report({ stage: 'failed', progress: 12, message: 'Download failed', error: 'DOWNLOAD_FAILED: x' });
  await r.close();
  assert.deepEqual(deviceApi.reports, [{ stage: 'failed', progress: 12, message: 'Download failed', error: 'DOWNLOAD_FAILED: x' }]);
});

test('a hanging device-api: report() returns at once, each post ends at its deadline, the newest state wins', async () => {
  deviceApi.reports.length = 0;
  deviceApi.hang = true;
  try {
    const r = new Reporter(deviceApi.url, 200, log);
    const t0 = Date.now();
    for (let p = 0; p <= 100; p += 5) r.report(s(p));
    assert.ok(Date.now() - t0 < 50, 'report() never waits for the network');
    await r.close();
    assert.deepEqual(deviceApi.reports.map((x) => x.progress), [0, 100], 'the first post, then only the newest');
  } finally {
    deviceApi.hang = false;
  }
});

test('a dead device-api costs a log line, not an exception', async () => {
  const lines: string[] = [];
  const r = new Reporter('http://127.0.0.1:9', 200, pino({ level: 'warn' }, { write: (l: string) => lines.push(l) }));
  r.report(s(1));
  await r.close();
  assert.match(lines.join(''), /report to device-api failed; carrying on/);
});

test('a slow receiver: progress within a stage coalesces, every stage change still goes, in order', async () => {
  const sent: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  const q = new LatestOnly<[string, number]>(async ([stage, p]) => {
    sent.push(`${stage}:${p}`);
    if (sent.length === 1) await gate;
  }, ([stage]) => stage);
  q.push(['downloading', 0]);
  for (let p = 5; p <= 100; p += 5) q.push(['downloading', p]);
  q.push(['verifying', 0]);
  q.push(['toInstall', 100]);
  q.push(['installing', 0]);
  q.push(['installing', 40]);
  release();
  await q.idle();
  assert.deepEqual(sent, ['downloading:0', 'downloading:100', 'verifying:0', 'toInstall:100', 'installing:40']);
});

test('LatestOnly keeps sending after a failed send', async () => {
  const sent: number[] = [];
  const q = new LatestOnly<number>(async (n) => {
    sent.push(n);
    if (n === 1) throw new Error('boom');
  });
  q.push(1);
  q.push(2);
  q.push(3);
  await q.idle();
  assert.deepEqual(sent, [1, 3]);
});

test('outside systemd the notifier does nothing and never throws', async () => {
  const n = new Notifier(log, {});
  assert.equal(n.enabled, false);
  n.ready('x');
  n.status('y');
  await n.idle();
});

test('under a NOTIFY_SOCKET the fetcher sends READY=1 and STATUS= lines, through systemd-notify', async () => {
  const device = new TestDevice();
  const sock = path.join(device.root, 'notify.sock');
  const listener = spawn('python3', [path.join(distDir, '..', 'test/helpers/notify-listener.py'), sock], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  listener.stdout.setEncoding('utf8').on('data', (c: string) => { out += c; });
  try {
    await waitFor('the notify listener', () => out.includes('listening'));
    device.env.NOTIFY_SOCKET = sock;
    await fsp.symlink('v1.0.0~2', path.join(device.env.TOPE_ROOT_PREFIX, 'opt/tope/versions/current'));
    await device.start('fetcher', 'api-gateway');
    await waitFor('READY=1 from both', () => (out.match(/READY=1/g) ?? []).length >= 2);
    assert.match(out, /STATUS=Ready: idle/);
    // the gateway's: the stage and the version the printer runs
    assert.match(out, /READY=1\|STATUS=idle; running 1\.0\.0\|/);
    await call(device.base, 'POST', '/api/v1.0/download', { version: '1.0.0', package_url: 'http://127.0.0.1:9/p', package_name: 'p', package_size: 5, package_md5: 'c'.repeat(32) });
    await waitFor('a STATUS line about the failure', () => /STATUS=failed: Download failed/.test(out));
    await call(device.base, 'GET', '/api/v1.0/progress');
    await waitFor("the gateway's STATUS line about the failure", () => /^STATUS=failed 1\.0\.0 \(DOWNLOAD_FAILED: .*\); running 1\.0\.0\|/m.test(out));
  } finally {
    await device.stop();
    listener.kill();
  }
});
