import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterEach, test } from 'node:test';
import type { FetcherRecord } from '../shared/worker-records.js';
import { sendCommand } from '../shared/protocol.js';
import { call } from './helpers/api.js';
import { DeviceApi } from './helpers/device-api.js';
import { TestDevice } from './helpers/device.js';
import { InstallDevice } from './helpers/install-device.js';
import { Origin } from './helpers/origin.js';
import { buildPackage } from './helpers/packages.js';
import { distDir, freePort, mainOf, Service, socketActivation } from './helpers/services.js';
import { waitFor } from './helpers/wait.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** `name` behind systemd-socket-activate listening on `address`, as its .socket unit starts it: at the first connection. */
function activated(name: string, env: Record<string, string>, address: string): Service {
  const s = new Service(name, {}, socketActivation(address, env, [process.execPath, mainOf(name)]));
  cleanups.push(() => s.kill('SIGKILL'));
  return s;
}

const ready: FetcherRecord = {
  seq: 7,
  job: {
    version: '3.1.4',
    package_url: 'https://h/p.zip',
    package_name: 'p.zip',
    package_size: 1,
    package_md5: 'b'.repeat(32),
  },
  checkpoint: null,
  verifiedAt: new Date().toISOString(),
  packageFile: null,
  status: { stage: 'toInstall', progress: 100, message: 'Package ready to install: 3.1.4', error: null },
};

test('the gateway serves on the socket systemd-socket-activate passes it (LISTEN_FDS, fd 3)', async () => {
  const device = new TestDevice();
  await device.seedFetcher(ready);
  const port = await freePort();
  // TOPE_LISTEN_PORT=1 would fail to bind: an answer proves the inherited socket is used
  const gw = activated('api-gateway', { ...device.env, TOPE_LISTEN_PORT: '1' }, `127.0.0.1:${port}`);
  const base = `http://127.0.0.1:${port}`;
  // the first connection waits in the backlog until node is up
  const r = await waitFor('an answer on the activated socket', () => call(base, 'GET', '/api/v1.0/progress'));
  assert.equal(r.body.data.stage, 'toInstall');
  const started = await gw.waitLog('api-gateway ready');
  assert.equal(started.where, 'inherited fd 3');
});

test('idle, the gateway exits by itself; the next connection starts it again and nothing is lost', async () => {
  const device = new TestDevice({ TOPE_IDLE_EXIT_MS: '300' });
  await device.seedFetcher(ready);
  const port = await freePort();
  const holder = spawn(
    'python3',
    [path.join(distDir, '..', 'test/helpers/socket-holder.py'), String(port), process.execPath, mainOf('api-gateway')],
    { env: { PATH: process.env.PATH ?? '', ...device.env }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  cleanups.push(async () => {
    holder.kill('SIGKILL');
  });
  let out = '';
  holder.stdout.setEncoding('utf8').on('data', (c: string) => {
    out += c;
  });
  await waitFor('the socket holder', () => out.includes('listening'));
  const base = `http://127.0.0.1:${port}`;

  assert.equal((await call(base, 'GET', '/api/v1.0/progress')).body.data.stage, 'toInstall');
  await waitFor('the idle gateway to exit with 0', () => /start 1\n(.*\n)*exit 0\n/.test(out), 5000);
  const again = await call(base, 'GET', '/api/v1.0/progress');
  assert.equal(again.body.data.stage, 'toInstall');
  assert.equal(again.body.data.message, 'Package ready to install: 3.1.4');
  assert.match(out, /start 2\n/);
});

test('while work runs, the idle gateway stays up', async () => {
  const device = new TestDevice({ TOPE_IDLE_EXIT_MS: '200' });
  await device.seedFetcher({
    ...ready,
    status: { stage: 'downloading', progress: 10, message: 'Downloading', error: null },
  });
  const port = await freePort();
  const gw = activated('api-gateway', device.env, `127.0.0.1:${port}`);
  await waitFor('an answer on the activated socket', () =>
    call(`http://127.0.0.1:${port}`, 'GET', '/api/v1.0/progress'),
  );
  // it checks at each idle period; after several it is still serving
  await waitFor('three idle periods', () => gw.lines.length > 0 && Date.now() > Number(gw.lines[0].time) + 800, 5000);
  assert.equal(gw.child.exitCode, null);
  await device.seedFetcher({ ...ready, seq: 8 });
  const { code } = await gw.exited;
  assert.equal(code, 0, 'once the work ended it exits');
  assert.ok(gw.logged('stopping'));
});

test('started without socket activation, the idle gateway stays up: nothing would start it again', async () => {
  const device = new TestDevice({ TOPE_IDLE_EXIT_MS: '200' });
  await device.seedFetcher(ready);
  const [gw] = await device.start('api-gateway');
  cleanups.push(() => device.stop());
  await call(device.base, 'GET', '/api/v1.0/progress');
  await waitFor('five idle periods', () => Date.now() > Number(gw.logged('api-gateway ready')!.time) + 1000, 5000);
  assert.equal(gw.child.exitCode, null);
  assert.equal(gw.logged('stopping'), undefined);
  assert.equal((await call(device.base, 'GET', '/api/v1.0/progress')).body.data.stage, 'toInstall');
});

/**
 * A fetcher behind systemd-socket-activate with `idleMs` as its idle period, started by a download
 * command from a local origin (`throttled`: ~0.8 s long) that it has taken.
 */
async function activatedDownload(
  idleMs: number,
  version: string,
  throttled: boolean,
  env: Record<string, string> = {},
) {
  const device = new TestDevice({ TOPE_IDLE_EXIT_MS: String(idleMs), ...env });
  const origin = await new Origin(256 * 1024).start();
  if (throttled) origin.script(() => ({ kind: 'serve', throttle: { bytes: 16 * 1024, everyMs: 50 } }));
  cleanups.push(() => origin.stop());
  const socket = device.env.TOPE_FETCHER_SOCKET;
  const fetcher = activated('fetcher', device.env, socket);
  const job = {
    version,
    package_url: origin.url(),
    package_name: 'p.zip',
    package_size: origin.body.length,
    package_md5: origin.md5,
  };
  const reply = await waitFor('the activated fetcher to take a command', () =>
    sendCommand(socket, { type: 'download', seq: 1, job }).catch(() => null),
  );
  assert.deepEqual(reply, { ok: true });
  return { device, fetcher, origin, job };
}

test('socket-activated, an idle worker exits by itself, but never while its work runs', async () => {
  const { device, fetcher } = await activatedDownload(300, '5.0.0', true);
  assert.equal((await fetcher.waitLog('fetcher ready')).where, 'inherited fd 3');
  const record = await waitFor(
    'the download to end',
    async () => {
      const r = await device.fetcherStore.read();
      return r?.status.stage === 'toInstall' ? r : null;
    },
    10_000,
  );
  const { code } = await fetcher.exited;
  assert.equal(code, 0);
  // judged from the log's own times, not from when this test happened to look: under load the
  // idle exit may already have come by the time the poll sees the finished download
  const startedAt = Number((await fetcher.waitLog('fetcher ready')).time);
  const finishedAt = Date.parse(record.verifiedAt!);
  const stoppedAt = Number(fetcher.logged('stopping')?.time);
  assert.ok(finishedAt - startedAt > 300, 'the download lasted longer than the idle time');
  assert.ok(stoppedAt >= finishedAt, 'it stayed up for the whole download and stopped only after it');
  assert.equal(fetcher.logged('stopping')?.signal, 'idle');
});

/** Resolves with the exit once `service` has exited, failing after `timeoutMs`. */
async function exitOf(service: Service, timeoutMs: number): Promise<{ code: number | null }> {
  let exit: { code: number | null } | null = null;
  void service.exited.then((e) => (exit = e));
  return waitFor('the service to exit', () => exit, timeoutMs);
}

test('socket-activated, a worker whose work has ended exits at once, not an idle period later', async () => {
  // an idle period far longer than the test's deadline: only the work's end can make it exit in time
  const { device, fetcher } = await activatedDownload(600_000, '5.0.1', false);
  const { code } = await exitOf(fetcher, 20_000);
  assert.equal(code, 0);
  assert.equal(fetcher.logged('stopping')?.signal, 'idle');
  // it ended after its work, with the work's last status written
  const record = await device.fetcherStore.read();
  assert.equal(record?.status.stage, 'toInstall');
  assert.ok(Number(fetcher.logged('stopping')?.time) >= Date.parse(record!.verifiedAt!));
});

test('socket-activated, a command queued behind ending work is carried out, though its sender gave up waiting', async () => {
  // device-api hangs: the download's last report holds its end for a few seconds after toInstall
  const deviceApi = await new DeviceApi().start();
  deviceApi.hang = true;
  cleanups.push(() => deviceApi.stop());
  const env = { TOPE_DEVICE_API_URL: deviceApi.url, TOPE_REPORT_TIMEOUT_MS: '2000' };
  const { device, fetcher, job } = await activatedDownload(600_000, '5.0.1', false, env);
  await waitFor('the first download to be verified', async () => {
    const r = await device.fetcherStore.read();
    return r?.status.stage === 'toInstall';
  });
  // a second download waits for the first's end; its sender stops waiting long before that
  const second = { ...job, version: '5.0.2' };
  await assert.rejects(
    sendCommand(device.env.TOPE_FETCHER_SOCKET, { type: 'download', seq: 2, job: second }, { timeoutMs: 300 }),
  );
  deviceApi.hang = false; // the reports still held time out; the next ones are answered
  const record = await waitFor(
    'the second download to be verified',
    async () => {
      const r = await device.fetcherStore.read();
      return r?.job?.version === '5.0.2' && r.status.stage === 'toInstall' ? r : null;
    },
    20_000,
  );
  assert.equal(record.seq, 2);
  assert.equal((await exitOf(fetcher, 20_000)).code, 0);
});

test('socket-activated, a command that starts no work leaves the worker its whole idle period', async () => {
  const idleMs = 1500;
  const device = new TestDevice({ TOPE_IDLE_EXIT_MS: String(idleMs) });
  const socket = device.env.TOPE_FETCHER_SOCKET;
  const fetcher = activated('fetcher', device.env, socket);
  // a command the fetcher refuses: answered, no work started
  const reply = await waitFor('the activated fetcher to take a command', () =>
    sendCommand(socket, { type: 'install', seq: 8, version: '1.0.0' }).catch(() => null),
  );
  assert.equal(reply.ok, false);
  const { code } = await exitOf(fetcher, 20_000);
  assert.equal(code, 0);
  const commandAt = Number(fetcher.logged('command received')?.time);
  const stoppedAt = Number(fetcher.logged('stopping')?.time);
  assert.ok(stoppedAt - commandAt >= idleMs, `stopped ${stoppedAt - commandAt} ms after the command`);
});

/**
 * A device with v1.0.0 running one unit, the gateway up and the installer behind
 * systemd-socket-activate; ota-gui as a unit, or (`guiUnit` false) none.
 */
async function activatedInstaller(idleMs: number, guiUnit = true) {
  const d = new InstallDevice({ TOPE_IDLE_EXIT_MS: String(idleMs) });
  cleanups.push(() => d.stop());
  await d.seedVersion('v1.0.0', { 'bin/a': 'a 1.0.0\n' }, ['current']);
  await d.setUnits({ 'a.service': { active: true }, ...(guiUnit ? { 'ota-gui.service': { active: false } } : {}) });
  await d.start('api-gateway');
  const installer = activated('installer', d.env, d.env.TOPE_INSTALLER_SOCKET);
  const module = { name: 'a', dst: '/opt/tope/bin/a', process_name: 'a.service', restart_order: 1 };
  return { d, installer, module };
}

test('socket-activated, the installer exits once its install has succeeded, not an idle period later', async () => {
  const { d, installer, module } = await activatedInstaller(600_000);
  await d.verified(await buildPackage('2.0.0', [module]), '2.0.0');
  // the gateway's command starts it, as the .socket unit would
  assert.equal((await d.update('2.0.0')).body.code, 200);
  assert.equal((await d.finished()).stage, 'success');
  const { code } = await exitOf(installer, 20_000);
  assert.equal(code, 0);
  assert.equal(installer.logged('stopping')?.signal, 'idle');
  assert.equal(await d.file('/opt/tope/versions/current/bin/a'), 'a 2.0.0\n');
  // ota-gui's start was asked for before the process ended
  assert.ok((await d.calls()).some((c) => c.startsWith('start ota-gui.service')));
});

test('socket-activated, after a failure a worker keeps a whole idle period: device-api may try again at once', async () => {
  const idleMs = 1500;
  const { d, installer, module } = await activatedInstaller(idleMs);
  // refused at its first check, ~50 ms after the command
  await d.verified(await buildPackage('2.0.0', [module], [], { compatible: ['another-printer'] }), '2.0.0');
  assert.equal((await d.update('2.0.0')).body.code, 200);
  const end = await d.finished();
  assert.equal(end.stage, 'failed');
  assert.match(end.error, /^INCOMPATIBLE_PACKAGE/);
  const { code } = await exitOf(installer, 20_000);
  assert.equal(code, 0);
  const failedAt = Number(installer.logged('install failed')?.time);
  const stoppedAt = Number(installer.logged('stopping')?.time);
  assert.ok(stoppedAt - failedAt >= idleMs, `stopped ${stoppedAt - failedAt} ms after the failure`);
});

test('socket-activated, an installer whose ota-gui binary still runs ends a whole idle period after the install: its end would kill the GUI', async () => {
  const idleMs = 1500;
  const { d, installer, module } = await activatedInstaller(idleMs, false);
  // no ota-gui unit: the installer starts the binary itself, inside its own unit; this one is a
  // launcher that leaves the GUI running in the background and exits
  const gui = path.join(d.sysroot, 'opt/tope/ota-gui');
  await fsp.mkdir(path.dirname(gui), { recursive: true });
  const guiGroup = path.join(d.root, 'gui.pgid');
  await fsp.writeFile(gui, `#!/bin/sh\necho $$ > ${guiGroup}\nsleep 30 &\n`, { mode: 0o755 });
  cleanups.push(async () => {
    const group = Number(await fsp.readFile(guiGroup, 'utf8').catch(() => '0'));
    try {
      if (group) process.kill(-group, 'SIGKILL');
    } catch {
      // gone already
    }
  });
  await d.verified(await buildPackage('2.0.0', [module]), '2.0.0');
  assert.equal((await d.update('2.0.0')).body.code, 200);
  assert.equal((await d.finished()).stage, 'success');
  const { code } = await exitOf(installer, 20_000);
  assert.equal(code, 0);
  assert.ok(installer.logged('ota-gui started'));
  const succeededAt = Number(installer.logged('install succeeded')?.time);
  const stoppedAt = Number(installer.logged('stopping')?.time);
  assert.ok(stoppedAt - succeededAt >= idleMs, `stopped ${stoppedAt - succeededAt} ms after the install`);
});
