import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, test } from 'node:test';
import { settingOrDefault } from '../shared/config.js';
import { sendCommand } from '../shared/protocol.js';
import { call } from './helpers/api.js';
import { TestDevice } from './helpers/device.js';
import { distDir, freePort, mainOf, Service, socketActivation } from './helpers/services.js';
import { waitFor } from './helpers/wait.js';

// A bad value in the environment (/etc/default/tope-updater on a device) no longer stops the
// processes: each answers CONFIG_INVALID naming the variable, and socket-activated it ends after
// TOPE_CONFIG_RECHECK_MS so that its next start reads the corrected file.

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const typo = { TOPE_RETRY_ATTEMPTS: 'three' };
const named = /^CONFIG_INVALID: invalid configuration: TOPE_RETRY_ATTEMPTS="three": /;

function started(name: string, env: Record<string, string>, command?: { file: string; args: string[] }): Service {
  const s = new Service(name, env, command);
  cleanups.push(() => s.kill('SIGKILL'));
  return s;
}

/** Every line the process wrote is JSON, and nothing went to stderr. */
function allJson(s: Service): void {
  assert.deepEqual(
    s.lines.filter((l) => 'raw' in l),
    [],
  );
  assert.equal(s.stderr, '');
}

test('a bad value: the gateway stays up and every route answers CONFIG_INVALID naming the variable; /progress shows it as a failure; the log line is JSON', async () => {
  const device = new TestDevice(typo);
  const port = await freePort();
  const gw = started('api-gateway', { ...device.env, TOPE_LISTEN_PORT: String(port) });
  const logged = await gw.waitLog('configuration invalid');
  assert.equal(logged.code, 'CONFIG_INVALID');
  assert.equal(logged.level, 50);
  assert.deepEqual(logged.variables, ['TOPE_RETRY_ATTEMPTS']);
  const base = `http://127.0.0.1:${port}`;
  const progress = await waitFor('an answer', () => call(base, 'GET', '/api/v1.0/progress'));
  assert.equal(progress.http, 200);
  assert.equal(progress.body.code, 500);
  assert.match(progress.body.msg, /^Update failed: CONFIG_INVALID: invalid configuration: TOPE_RETRY_ATTEMPTS="three"/);
  assert.equal(progress.body.data.stage, 'failed');
  assert.match(progress.body.data.error, named);
  const download = await call(base, 'POST', '/api/v1.0/download', {
    version: '1.0.0',
    package_url: 'http://127.0.0.1:9/p',
    package_name: 'p',
    package_size: 5,
    package_md5: 'c'.repeat(32),
  });
  assert.equal(download.body.code, 500);
  assert.match(download.body.msg, named);
  assert.match((await call(base, 'POST', '/api/v1.0/update', { version: '1.0.0' })).body.msg, named);
  assert.match((await call(base, 'GET', '/')).body.msg, named);
  // started by hand, nothing would start it again: it keeps answering
  assert.equal(gw.child.exitCode, null);
  allJson(gw);
});

test('socket-activated with a typo in the environment file: CONFIG_INVALID, then the file is fixed and the API works, every exit a clean one', async () => {
  const device = new TestDevice();
  const envFile = path.join(device.root, 'tope-updater.env');
  const write = (extra: Record<string, string>) =>
    writeFileSync(
      envFile,
      Object.entries({ ...device.env, TOPE_CONFIG_RECHECK_MS: '300', ...extra })
        .map(([k, v]) => `${k}=${v}\n`)
        .join(''),
    );
  write(typo);
  const port = await freePort();
  // what tope-api-gateway.socket and EnvironmentFile= do: the file is read at each start
  const holder = spawn(
    'python3',
    [
      path.join(distDir, '..', 'test/helpers/socket-holder.py'),
      String(port),
      '/bin/sh',
      '-c',
      `set -a; . '${envFile}'; exec '${process.execPath}' '${mainOf('api-gateway')}'`,
    ],
    { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  cleanups.push(() => void holder.kill('SIGKILL'));
  let out = '';
  holder.stdout.setEncoding('utf8').on('data', (c: string) => {
    out += c;
  });
  await waitFor('the socket holder', () => out.includes('listening'));
  const base = `http://127.0.0.1:${port}`;
  const bad = await call(base, 'GET', '/api/v1.0/progress');
  assert.match(bad.body.data.error, named);
  write({});
  const good = await waitFor(
    'the corrected file to take effect',
    async () => {
      const r = await call(base, 'GET', '/api/v1.0/progress');
      return r.body.code === 200 ? r : null;
    },
    10_000,
  );
  assert.equal(good.body.data.stage, 'idle');
  assert.match(out, /start 2\n/);
  assert.deepEqual(
    out.match(/exit \d+/g)?.filter((e) => e !== 'exit 0'),
    [],
    'no start ended in an error',
  );
});

test('a worker with a bad value refuses each command with CONFIG_INVALID; the gateway says so; socket-activated, it ends with status 0 to read the file again', async () => {
  const device = new TestDevice();
  // the gateway started before the file went bad; the fetcher after
  await device.start('api-gateway');
  const fetcher = started('fetcher', { ...device.env, ...typo });
  await fetcher.waitLog('fetcher serving the configuration error');
  const reply = await sendCommand(device.env.TOPE_FETCHER_SOCKET, { type: 'discard', seq: 1, reason: 'x' });
  assert.equal(reply.ok, false);
  assert.equal(!reply.ok && reply.code, 'CONFIG_INVALID');
  const r = await call(device.base, 'POST', '/api/v1.0/download', {
    version: '1.0.0',
    package_url: 'http://127.0.0.1:9/p',
    package_name: 'p',
    package_size: 5,
    package_md5: 'c'.repeat(32),
  });
  assert.equal(r.body.code, 500);
  assert.match(r.body.msg, named);
  allJson(fetcher);
  await device.stop();

  // under socket activation (systemd-socket-activate holds the unix socket), it ends by itself
  const sock = path.join(device.root, 'run/installer-activated.sock');
  const installer = started(
    'installer',
    {},
    socketActivation(sock, { ...device.env, ...typo, TOPE_CONFIG_RECHECK_MS: '200' }, [
      process.execPath,
      mainOf('installer'),
    ]),
  );
  const refused = await waitFor('the activated installer', () =>
    sendCommand(sock, { type: 'install', seq: 1, version: '1.0.0' }).catch(() => null),
  );
  assert.equal(!refused.ok && refused.code, 'CONFIG_INVALID');
  assert.deepEqual(await installer.exited, { code: 0, signal: null });
  assert.deepEqual(
    installer.lines.filter((l) => 'raw' in l),
    [],
    "every stdout line is JSON (stderr is systemd-socket-activate's)",
  );
  assert.ok(installer.logged('configuration invalid'));
});

test('a bad value of a setting the error needs (where to listen, how to log) falls back to its default there', () => {
  assert.equal(settingOrDefault('TOPE_LISTEN_PORT', { TOPE_LISTEN_PORT: 'http' }), 12315);
  assert.equal(settingOrDefault('TOPE_LISTEN_PORT', { TOPE_LISTEN_PORT: '8080' }), 8080);
  assert.equal(settingOrDefault('TOPE_LOG_LEVEL', { TOPE_LOG_LEVEL: 'loud' }), 'info');
  assert.equal(settingOrDefault('TOPE_CONFIG_RECHECK_MS', {}), 5000);
});
