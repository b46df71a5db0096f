import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import pino from 'pino';
import { LatestOnly } from '../shared/latest-only.js';
import { Notifier } from '../shared/notify.js';
import { REPORT_PATH } from '../shared/device-api.js';
import { Reporter } from '../shared/reporter.js';
import type { Status } from '../shared/status.js';
import { DeviceApi } from './helpers/device-api.js';
import { recordedReports } from './system/recorded-reports.js';
import { call } from './helpers/api.js';
import { TestDevice } from './helpers/device.js';
import { distDir, freePort } from './helpers/services.js';
import { waitFor } from './helpers/wait.js';
import { tempDir } from './helpers/temp-dir.js';

const log = pino({ level: 'silent' });
const s = (progress: number): Status => ({ stage: 'downloading', progress, message: 'm', error: null });
const deviceApi = new DeviceApi();
before(() => deviceApi.start());
after(() => deviceApi.stop());

test("reports reach device-api with the contract's payload {stage, progress, message, error}", async () => {
  deviceApi.reports.length = 0;
  const r = new Reporter(deviceApi.url, 500, log);
  r.report({ stage: 'failed', progress: 12, message: 'Download failed', error: 'DOWNLOAD_FAILED: x' });
  await r.close();
  assert.deepEqual(deviceApi.reports, [
    { stage: 'failed', progress: 12, message: 'Download failed', error: 'DOWNLOAD_FAILED: x' },
  ]);
});

test("the sandbox's and the power-cut VM's device-api stand-in keeps what the product reports, and only that", async () => {
  // the stand-in is copied alone into those machines and knows no path: the checkers pick the
  // reports out of what it recorded by the product's REPORT_PATH (recordedReports)
  const dir = tempDir('tope-recorder-');
  const recordFile = path.join(dir, 'reports.jsonl');
  const port = await freePort();
  const recorder = spawn(process.execPath, [path.join(distDir, 'test/system/device-api-recorder.js')], {
    env: { ...process.env, RECORD_FILE: recordFile, RECORD_PORT: String(port) },
    stdio: 'ignore',
  });
  try {
    const base = `http://127.0.0.1:${port}`;
    await waitFor(
      'the stand-in to listen',
      () =>
        fetch(base).then(
          () => true,
          () => false,
        ),
      10_000,
    );
    const reporter = new Reporter(base, 2000, log);
    reporter.report({ stage: 'downloading', progress: 40, message: 'Downloading', error: null });
    reporter.report({ stage: 'failed', progress: 40, message: 'Download failed', error: 'DOWNLOAD_FAILED: x' });
    await reporter.close();
    await fetch(`${base}/api/v1.0/elsewhere`, { method: 'POST', body: '{"stage":"success"}' });
    // a power cut in the middle of an append leaves a torn last line, of a report never acknowledged
    await fsp.appendFile(recordFile, JSON.stringify({ method: 'POST', path: REPORT_PATH, body: '{}' }).slice(0, -20));
    assert.deepEqual(recordedReports(await fsp.readFile(recordFile, 'utf8')), [
      { stage: 'downloading', progress: 40, message: 'Downloading', error: null },
      { stage: 'failed', progress: 40, message: 'Download failed', error: 'DOWNLOAD_FAILED: x' },
    ]);
  } finally {
    recorder.kill('SIGKILL');
  }
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
    assert.deepEqual(
      deviceApi.reports.map((x) => x.progress),
      [0, 100],
      'the first post, then only the newest',
    );
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
  const gate = new Promise<void>((r) => {
    release = r;
  });
  const q = new LatestOnly<[string, number]>(
    async ([stage, p]) => {
      sent.push(`${stage}:${p}`);
      if (sent.length === 1) await gate;
    },
    ([stage]) => stage,
  );
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

test('LatestOnly keeps sending after a failed send, and keeps the first failure for a caller that must stop', async () => {
  const sent: number[] = [];
  const q = new LatestOnly<number>(async (n) => {
    sent.push(n);
    if (n === 1 || n === 3) throw new Error(`boom ${n}`);
  });
  const before = q.failure;
  assert.equal(before, null);
  q.push(1);
  q.push(2);
  q.push(3);
  await q.idle();
  assert.deepEqual(sent, [1, 3]);
  assert.match(String(q.failure?.error), /boom 1$/);
});

test('LatestOnly never makes the caller wait: values pushed while a send is held are one pending value, the newest', async () => {
  const sent: number[] = [];
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const q = new LatestOnly<number>(async (n) => {
    sent.push(n);
    if (n === 10) await held;
  });
  for (let n = 10; n <= 60; n++) q.push(n); // as the installer's staging offers a figure per percent
  assert.deepEqual(sent, [10]);
  release();
  await q.idle();
  assert.deepEqual(sent, [10, 60]);
});

test('outside systemd the notifier does nothing and never throws', async () => {
  const n = new Notifier(log, {});
  assert.equal(n.enabled, false);
  n.ready('x');
  n.status('y');
  await n.idle();
});

/** A NOTIFY_SOCKET stand-in (a real unix datagram socket) and what it has received so far. */
async function notifyListener(dir: string) {
  const sock = path.join(dir, 'notify.sock');
  const script = path.join(distDir, '..', 'test/helpers/notify-listener.py');
  const listener = spawn('python3', [script, sock], { stdio: ['ignore', 'pipe', 'inherit'] });
  const received = { lines: [] as Array<{ text: string; at: number }>, sock, stop: () => listener.kill() };
  let partial = '';
  listener.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop()!;
    for (const text of lines) received.lines.push({ text, at: Date.now() });
  });
  await waitFor('the notify listener', () => received.lines.some((l) => l.text === 'listening'));
  return received;
}
const pings = (lines: Array<{ text: string; at: number }>) => lines.filter((l) => l.text === 'WATCHDOG=1');

test('with WatchdogSec= (WATCHDOG_USEC), WATCHDOG=1 goes out every half of the interval', async () => {
  const dir = tempDir('watchdog-');
  const listener = await notifyListener(dir);
  try {
    const env = { ...process.env, NOTIFY_SOCKET: listener.sock, WATCHDOG_USEC: '400000' };
    const n = new Notifier(log, env);
    assert.equal(n.watchdogPingMs, 200);
    const startedAt = Date.now();
    n.startWatchdog();
    n.startWatchdog(); // a second call changes nothing
    await waitFor('four pings', () => pings(listener.lines).length >= 4);
    const times = pings(listener.lines).map((l) => l.at - startedAt);
    // the first at once, then one per 200 ms: the fourth cannot come before 600 ms
    assert.ok(times[3]! >= 550, `pings at ${times.join(', ')} ms`);
  } finally {
    listener.stop();
  }
});

test('no watchdog without WATCHDOG_USEC, or when WATCHDOG_PID names another process', () => {
  const base = { NOTIFY_SOCKET: '/nonexistent/notify.sock' };
  assert.equal(new Notifier(log, base).watchdogPingMs, null);
  assert.equal(new Notifier(log, { ...base, WATCHDOG_USEC: '0' }).watchdogPingMs, null);
  const thirtySeconds = { ...base, WATCHDOG_USEC: '30000000' };
  assert.equal(new Notifier(log, { ...thirtySeconds, WATCHDOG_PID: String(process.pid + 1) }).watchdogPingMs, null);
  assert.equal(new Notifier(log, { ...thirtySeconds, WATCHDOG_PID: String(process.pid) }).watchdogPingMs, 15_000);
  assert.equal(new Notifier(log, { WATCHDOG_USEC: '30000000' }).watchdogPingMs, null, 'outside systemd');
});

test('a worker started by the shared bootstrap under WatchdogSec= pings', async () => {
  const device = new TestDevice();
  const listener = await notifyListener(device.root);
  try {
    Object.assign(device.env, { NOTIFY_SOCKET: listener.sock, WATCHDOG_USEC: '300000' });
    await device.start('fetcher');
    await waitFor('three pings', () => pings(listener.lines).length >= 3);
  } finally {
    await device.stop();
    listener.stop();
  }
});

test('under a NOTIFY_SOCKET the fetcher sends READY=1 and STATUS= lines, through systemd-notify', async () => {
  const device = new TestDevice();
  const sock = path.join(device.root, 'notify.sock');
  const listener = spawn('python3', [path.join(distDir, '..', 'test/helpers/notify-listener.py'), sock], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  listener.stdout.setEncoding('utf8').on('data', (c: string) => {
    out += c;
  });
  try {
    await waitFor('the notify listener', () => out.includes('listening'));
    device.env.NOTIFY_SOCKET = sock;
    await fsp.symlink('v1.0.0~2', path.join(device.env.TOPE_ROOT_PREFIX, 'opt/tope/versions/current'));
    await device.start('fetcher', 'api-gateway');
    await waitFor('READY=1 from both', () => (out.match(/READY=1/g) ?? []).length >= 2);
    assert.match(out, /STATUS=Ready: idle/);
    // the gateway's: the stage and the version the printer runs
    assert.match(out, /READY=1\|STATUS=idle; running 1\.0\.0\|/);
    await call(device.base, 'POST', '/api/v1.0/download', {
      version: '1.0.0',
      package_url: 'http://127.0.0.1:9/p',
      package_name: 'p',
      package_size: 5,
      package_md5: 'c'.repeat(32),
    });
    await waitFor('a STATUS line about the failure', () => /STATUS=failed: Download failed/.test(out));
    await call(device.base, 'GET', '/api/v1.0/progress');
    await waitFor("the gateway's STATUS line about the failure", () =>
      /^STATUS=failed 1\.0\.0 \(DOWNLOAD_FAILED: .*\); running 1\.0\.0\|/m.test(out),
    );
  } finally {
    await device.stop();
    listener.kill();
  }
});
