import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterEach, test } from 'node:test';
import { chooseSandbox, escapeForExecStart, plainPath } from '../services/installer/post-cmd-sandbox.js';
import { InstallDevice } from './helpers/install-device.js';
import { buildPackage } from './helpers/packages.js';
import { distDir } from './helpers/services.js';
import { waitFor } from './helpers/wait.js';

// Where post_cmds run, tried through the installer as a real process over a sysroot in a temp dir
// (the recording systemctl stand-in, no systemd here). Their systemd sandbox itself is tried under
// a real systemd in test/system-post-cmds.test.ts.

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function device(extra: Record<string, string> = {}) {
  const d = new InstallDevice(extra);
  cleanups.push(() => d.stop());
  await d.seedVersion('v1.0.0', { 'bin/a': 'a 1.0.0\n' }, ['current']);
  await d.setUnits({ 'a.service': { active: true } });
  return d;
}

const withPostCmds = (post_cmds: string[]) => [
  { name: 'a', dst: '/opt/tope/bin/a', process_name: 'a.service', post_cmds },
];

/** A NOTIFY_SOCKET stand-in (a real unix datagram socket, as systemd's) and every message it got. */
async function notifyListener(dir: string) {
  const sock = path.join(dir, 'notify.sock');
  const script = path.join(distDir, '..', 'test/helpers/notify-listener.py');
  const listener = spawn('python3', [script, sock], { stdio: ['ignore', 'pipe', 'inherit'] });
  cleanups.push(() => void listener.kill());
  let out = '';
  listener.stdout.setEncoding('utf8').on('data', (c: string) => {
    out += c;
  });
  await waitFor('the notify listener', () => out.includes('listening'));
  return { sock, received: () => out };
}

test('auto: systemd as PID 1 and root gives the systemd sandbox; anything else refuses, never runs unsandboxed', () => {
  assert.deepEqual(chooseSandbox('auto', { booted: true, root: true }), { sandbox: 'systemd' });
  for (const host of [
    { booted: false, root: true },
    { booted: true, root: false },
    { booted: false, root: false },
  ]) {
    const choice = chooseSandbox('auto', host);
    assert.ok('refused' in choice, JSON.stringify(host));
    assert.match(choice.refused, /TOPE_POST_CMD_SANDBOX=none runs them unsandboxed/);
  }
  assert.deepEqual(chooseSandbox('none', { booted: true, root: true }), { sandbox: 'none' });
  assert.deepEqual(chooseSandbox('systemd', { booted: false, root: false }), { sandbox: 'systemd' });
});

test('a unit property gets only plain absolute paths; ExecStart= gets the command with its dollars kept', () => {
  assert.ok(plainPath('/opt/tope/versions/v2.0.0~3'));
  for (const bad of ['opt/tope', '/opt/to pe', '/opt/"x"', '/opt/tope/../etc', '-/opt', '/opt\n'])
    assert.ok(!plainPath(bad), bad);
  assert.equal(escapeForExecStart('echo "${v}$TOPE_VERSION $$" 100%'), 'echo "$${v}$$TOPE_VERSION $$$$" 100%');
});

test('[systemctl stand-in] under TOPE_POST_CMD_SANDBOX=auto without systemd, a post_cmd is not run: POST_CMD_FAILED, nothing changed', async () => {
  const d = await device({ TOPE_POST_CMD_SANDBOX: 'auto' });
  const installer = (await d.start('installer', 'api-gateway'))[0]!;
  await d.verified(await buildPackage('2.0.0', withPostCmds(['echo ran > ran.txt'])), '2.0.0');
  await d.update('2.0.0');
  const end = await d.finished();
  assert.equal(end.stage, 'failed');
  assert.match(end.error!, /^POST_CMD_FAILED: 'echo ran > ran\.txt' was not run: no sandbox for post_cmds: /);
  assert.equal(await d.link('current'), 'v1.0.0');
  assert.ok(!(await fsp.readdir(d.versionsDir)).includes('v2.0.0'));
  assert.ok(installer.lines.some((l) => l.setting === 'auto' && String(l.msg).startsWith('no sandbox for post_cmds')));
});

test('[systemctl stand-in] under TOPE_POST_CMD_SANDBOX=systemd, a transient unit that cannot be made fails the post_cmd; it never falls back to running unsandboxed', async () => {
  const d = await device({ TOPE_POST_CMD_SANDBOX: 'systemd', TOPE_SYSTEMD_RUN: '/nonexistent/systemd-run' });
  await d.start('installer', 'api-gateway');
  await d.verified(await buildPackage('2.0.0', withPostCmds(['echo ran > /tmp/tope-post-cmd-ran'])), '2.0.0');
  await d.update('2.0.0');
  const end = await d.finished();
  assert.equal(end.stage, 'failed');
  assert.match(
    end.error!,
    /^POST_CMD_FAILED: 'echo ran > \/tmp\/tope-post-cmd-ran' could not run: spawn \/nonexistent\/systemd-run ENOENT/,
  );
  await assert.rejects(fsp.stat('/tmp/tope-post-cmd-ran'), { code: 'ENOENT' });
  assert.equal(await d.link('current'), 'v1.0.0');
});

test("[systemctl stand-in] TOPE_POST_CMD_SANDBOX=none: a post_cmd gets none of the installer's environment, so it cannot speak to systemd as the installer", async () => {
  const d = await device({ TOPE_POST_CMD_SANDBOX: 'none' });
  const notify = await notifyListener(d.root);
  // what systemd hands the installer's unit: a post_cmd must get none of it
  Object.assign(d.env, {
    NOTIFY_SOCKET: notify.sock,
    WATCHDOG_USEC: '30000000',
    LISTEN_FDS: '1',
    LISTEN_PID: '1',
    LISTEN_FDNAMES: 'installer.sock',
    INVOCATION_ID: '0123456789abcdef0123456789abcdef',
  });
  const installer = (await d.start('installer', 'api-gateway'))[0]!;
  await waitFor("the installer's own READY=1", () => notify.received().includes('READY=1'));
  const cmds = [
    'env > env.txt',
    // as the installer does: it must reach nothing
    'systemd-notify --status=post-cmd-was-here; echo $? > notify.status',
  ];
  await d.verified(await buildPackage('2.0.0', withPostCmds(cmds)), '2.0.0');
  await d.update('2.0.0');
  assert.equal((await d.finished()).stage, 'success');
  const env = Object.fromEntries(
    (await d.file('/opt/tope/versions/v2.0.0/env.txt'))!
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  // PATH and what the package is told; the shell adds PWD (and some shells SHLVL, _). Under
  // make test's c8 Node's spawn itself adds NODE_V8_COVERAGE to every child, whatever env it is
  // given (child_process's normalizeSpawnArguments); a device's installer runs without it.
  const added = ['PWD', 'SHLVL', '_', 'OLDPWD', ...(process.env.NODE_V8_COVERAGE ? ['NODE_V8_COVERAGE'] : [])];
  const told = { TOPE_VERSION: '2.0.0', TOPE_VERSION_DIR: path.join(d.versionsDir, 'v2.0.0') };
  assert.deepEqual(
    Object.keys(env)
      .filter((k) => !added.includes(k))
      .sort(),
    ['PATH', 'TOPE_VERSION', 'TOPE_VERSION_DIR'],
  );
  assert.deepEqual({ TOPE_VERSION: env.TOPE_VERSION, TOPE_VERSION_DIR: env.TOPE_VERSION_DIR }, told);
  assert.notEqual(await d.file('/opt/tope/versions/v2.0.0/notify.status'), '0\n', 'systemd-notify had nowhere to send');
  assert.ok(installer.lines.some((l) => l.sandbox === 'none' && /unsandboxed/.test(String(l.msg))));
  // the installer's own status after the install goes out through the same socket, after any a post_cmd sent
  await waitFor("the installer's status of the end", () =>
    /STATUS=success: Successfully installed version 2\.0\.0/.test(notify.received()),
  );
  assert.ok(!notify.received().includes('post-cmd-was-here'), notify.received());
});
