import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { symlinkSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { SECURITY_FLOOR_RECORD } from '../shared/trust/security-floor.js';
import { buildPackage, md5 } from './helpers/packages.js';
import { Sandbox, sandboxAvailable, holdSandboxLock } from './helpers/sandbox.js';
import { waitFor } from './helpers/wait.js';

// Under a real systemd (PID 1 in a systemd-nspawn container): the units as `make install`
// ships them, sandboxed as shipped; a stand-in printer service, package servers and a
// device-api recorder run as units inside.

const available = sandboxAvailable();
const skip = available === true ? false : available;
const sbx = skip ? null : new Sandbox('sys');

async function publish(version: string, opts: { blob?: number; crash?: boolean; security_version?: number } = {}) {
  const zip = await buildPackage(
    version,
    [
      {
        name: 'printerd',
        dst: '/opt/tope/bin/printerd',
        process_name: 'printerd.service',
        data: `printerd ${version}${opts.crash ? ' crash' : ''}\n`,
      },
      ...(opts.blob
        ? [{ name: 'blob', dst: '/opt/tope/share/blob', data: randomBytes(opts.blob), compress: false }]
        : []),
    ],
    [],
    { security_version: opts.security_version ?? 0 },
  );
  sbx!.testFile(`packages/tope-${version}.zip`, zip);
  return { version, package_name: `tope-${version}.zip`, package_size: zip.length, package_md5: md5(zip) };
}
const url = (slow: boolean, name: string) => `http://127.0.0.1:${slow ? 8001 : 8000}/${name}`;
const mainPid = (unit: string) => Number(sbx!.prop(unit, 'MainPID'));
const uid = (user: string) => sbx!.sh(`id -u ${user}`);
/** Waits for a status message, failing at once (with the error) if the stage becomes failed. */
const untilMessage = (message: string) =>
  waitFor(
    message,
    () => {
      const p = sbx!.api('GET', '/api/v1.0/progress').data;
      if (p.stage === 'failed' || p.stage === 'success')
        throw new Error(`ended before "${message}": ${JSON.stringify(p)}`);
      return p.message === message;
    },
    30_000,
    100,
  );

let releaseSandbox: (() => void) | null = null;
before(async () => {
  if (!sbx) return;
  releaseSandbox = await holdSandboxLock();
  sbx.optFile('versions/v1.0.0/bin/printerd', 'printerd 1.0.0\n');
  symlinkSync('v1.0.0', path.join(sbx.host, 'persist/opt-tope/versions/current'));
  sbx.env = { PROBATION_MS: '3000', IDLE_MS: '2000' };
  sbx.up();
});
after(() => {
  try {
    sbx?.down();
  } finally {
    releaseSandbox?.();
  }
});

test(
  'socket activation: nothing of ours runs at boot; a request starts the gateway; idle, it exits; the next one starts it again',
  { skip },
  async () => {
    const s = sbx!;
    for (const unit of ['tope-api-gateway.service', 'tope-fetcher.service', 'tope-installer.service'])
      assert.equal(s.active(unit), 'inactive', unit);
    for (const unit of ['tope-api-gateway.socket', 'tope-fetcher.socket', 'tope-installer.socket'])
      assert.equal(s.active(unit), 'active', unit);
    assert.equal(s.api('GET', '/api/v1.0/progress').data.stage, 'idle');
    assert.equal(s.active('tope-api-gateway.service'), 'active');
    assert.match(s.prop('tope-api-gateway.service', 'StatusText'), /^idle; running 1\.0\.0$/);
    await waitFor('the idle gateway to exit', () => s.active('tope-api-gateway.service') === 'inactive', 15_000, 200);
    assert.equal(s.prop('tope-api-gateway.service', 'Result'), 'success', 'an idle exit is not a failure');
    assert.equal(s.api('GET', '/').service, 'tope-updater');
  },
);

test(
  'a download and an install that restarts a real unit; progress polled as ota-gui does; reports received',
  { skip },
  async () => {
    const s = sbx!;
    const pkg = await publish('2.0.0');
    assert.equal(s.api('POST', '/api/v1.0/download', { ...pkg, package_url: url(false, pkg.package_name) }).code, 200);
    await s.stage('toInstall');
    const before = mainPid('printerd.service');
    assert.equal(s.sh('cat /run/printerd.version'), 'printerd 1.0.0');
    assert.equal(s.api('POST', '/api/v1.0/update', { version: '2.0.0' }).code, 200);
    const end = await s.stage('success');
    assert.equal(end.message, 'Successfully installed version 2.0.0');
    assert.equal(s.active('printerd.service'), 'active');
    assert.notEqual(mainPid('printerd.service'), before, 'restarted');
    assert.equal(s.sh('cat /run/printerd.version'), 'printerd 2.0.0');
    assert.equal(s.sh('readlink /opt/tope/versions/current'), 'v2.0.0');
    await waitFor('the success report', () => s.reports().at(-1)?.stage === 'success', 10_000, 200);
    const stages = s
      .reports()
      .map((r) => r.stage)
      .filter((x, i, a) => x !== a[i - 1]);
    assert.deepEqual(stages.slice(-5), ['downloading', 'verifying', 'toInstall', 'installing', 'success']);
    assert.match(s.prop('tope-installer.service', 'StatusText'), /success: Successfully installed version 2\.0\.0/);
    // idle, the workers end too: nothing of ours runs until the next command
    await waitFor(
      'the idle workers to exit',
      () => s.active('tope-fetcher.service') === 'inactive' && s.active('tope-installer.service') === 'inactive',
      20_000,
      200,
    );
    assert.equal(s.prop('tope-installer.service', 'Result'), 'success', 'an idle exit is not a failure');
  },
);

test(
  'privileges: each unit writes only its own paths; only the gateway reaches the worker sockets',
  { skip },
  async () => {
    const s = sbx!;
    const pkg = await publish('2.5.0', { blob: 3_000_000 });
    s.api('POST', '/api/v1.0/download', { ...pkg, package_url: url(true, pkg.package_name) });
    await waitFor(
      'fetcher and gateway running',
      () => s.active('tope-fetcher.service') === 'active' && s.active('tope-api-gateway.service') === 'active',
      10_000,
      100,
    );
    const as = (unit: string, user: string, cmd: string) =>
      s.status(`nsenter -t ${mainPid(unit)} -m -S ${uid(user)} -G ${uid(user)} -- sh -c '${cmd}' 2>/dev/null`);
    s.sh('install -m600 /dev/null /var/lib/tope-updater/installer/secret');
    // the fetcher
    assert.equal(
      as('tope-fetcher.service', 'tope-fetcher', 'touch /var/lib/tope-updater/fetcher/probe'),
      0,
      'its own state',
    );
    assert.notEqual(
      as('tope-fetcher.service', 'tope-fetcher', 'touch /opt/tope/versions/x'),
      0,
      'not the install roots',
    );
    assert.notEqual(as('tope-fetcher.service', 'tope-fetcher', 'touch /etc/x'), 0);
    assert.notEqual(
      as('tope-fetcher.service', 'tope-fetcher', 'cat /var/lib/tope-updater/installer/install.json'),
      0,
      "not the installer's files",
    );
    // the gateway
    assert.notEqual(as('tope-api-gateway.service', 'tope-gateway', 'touch /var/lib/tope-updater/fetcher/probe2'), 0);
    assert.notEqual(as('tope-api-gateway.service', 'tope-gateway', 'touch /opt/tope/versions/x'), 0);
    assert.notEqual(as('tope-api-gateway.service', 'tope-gateway', 'cat /var/lib/tope-updater/installer/secret'), 0);
    assert.equal(
      s.status(`nsenter -t ${mainPid('tope-api-gateway.service')} -n -- sh -c 'ip -o link | grep -v " lo:"'`),
      1,
      'the gateway has no network of its own',
    );
    // who may connect to the installer's socket
    const connect = (user: string, group = user) =>
      s.status(
        `setpriv --reuid=${user} --regid=${group} --init-groups node -e "require('net').connect('/run/tope-updater/installer.sock').on('connect',()=>process.exit(0)).on('error',()=>process.exit(9))"`,
      );
    assert.equal(connect('tope-gateway'), 0);
    assert.equal(connect('tope-fetcher'), 9);
    assert.equal(connect('nobody', 'nogroup'), 9);
    assert.match(s.prop('tope-fetcher.service', 'StatusText'), /^(Downloading 2\.5\.0: \d+%|toInstall: .*)$/);
    await s.stage('toInstall');
  },
);

test(
  'self-healing: each unit killed with SIGKILL mid-work is restarted by systemd and finishes the job',
  { skip },
  async () => {
    const s = sbx!;
    const pkg = await publish('3.0.0', { blob: 2_000_000 });
    s.api('POST', '/api/v1.0/download', { ...pkg, package_url: url(true, pkg.package_name) });
    await waitFor('the download under way', () => s.api('GET', '/api/v1.0/progress').data.progress >= 20, 30_000, 100);
    s.sh(`kill -KILL ${mainPid('tope-fetcher.service')}`);
    await waitFor(
      'systemd to restart the fetcher',
      () => Number(s.prop('tope-fetcher.service', 'NRestarts')) >= 1,
      10_000,
      100,
    );
    await s.stage('toInstall');

    s.sh(`kill -KILL ${mainPid('tope-api-gateway.service')}`);
    await waitFor(
      'the gateway to answer again',
      () => {
        try {
          return s.api('GET', '/api/v1.0/progress').data.stage === 'toInstall';
        } catch {
          return false;
        }
      },
      10_000,
      100,
    );

    assert.equal(s.api('POST', '/api/v1.0/update', { version: '3.0.0' }).code, 200);
    await untilMessage('Checking services...');
    s.sh(`kill -KILL ${mainPid('tope-installer.service')}`);
    await waitFor(
      'systemd to restart the installer',
      () => Number(s.prop('tope-installer.service', 'NRestarts')) >= 1,
      10_000,
      100,
    );
    await s.stage('success');
    assert.equal(s.sh('cat /run/printerd.version'), 'printerd 3.0.0');
    assert.equal(s.active('printerd.service'), 'active');
  },
);

test(
  'watchdog: a worker at work pings systemd; one whose event loop stops is killed, restarted, and finishes the job',
  { skip },
  async () => {
    const s = sbx!;
    const unit = 'tope-fetcher.service';
    const pkg = await publish('3.5.0', { blob: 20_000_000 });
    s.api('POST', '/api/v1.0/download', { ...pkg, package_url: url(true, pkg.package_name) });
    await waitFor('the download under way', () => s.api('GET', '/api/v1.0/progress').data.progress >= 5, 30_000, 100);
    assert.equal(s.prop(unit, 'WatchdogUSec'), '30s');
    const pingedAt = () => Number(s.prop(unit, 'WatchdogTimestampMonotonic'));
    const first = pingedAt();
    assert.ok(first > 0, 'systemd has counted a WATCHDOG=1 from the fetcher');
    await waitFor('a later ping', () => pingedAt() > first, 20_000, 200);
    // a stopped process runs no timer: the pings end, as they would for a blocked event loop
    const pid = mainPid(unit);
    const restarts = Number(s.prop(unit, 'NRestarts'));
    s.sh(`kill -STOP ${pid}`);
    // systemd sends SIGABRT (with a SIGCONT) once 30 s pass without a ping, then restarts the unit
    await waitFor(
      'systemd to restart the fetcher',
      () => Number(s.prop(unit, 'NRestarts')) > restarts && mainPid(unit) > 0,
      60_000,
      500,
    );
    assert.notEqual(mainPid(unit), pid);
    assert.match(
      s.sh(`journalctl --no-pager -o cat -u ${unit} | grep 'Watchdog timeout' || true`),
      /Watchdog timeout \(limit 30s\)/,
    );
    await s.stage('toInstall', 120_000);
  },
);

test('a power cut mid-download: at boot the download resumes with no API call', { skip }, async () => {
  const s = sbx!;
  const pkg = await publish('4.0.0', { blob: 3_000_000 });
  s.api('POST', '/api/v1.0/download', { ...pkg, package_url: url(true, pkg.package_name) });
  await waitFor('the download under way', () => s.api('GET', '/api/v1.0/progress').data.progress >= 20, 30_000, 100);
  s.reboot(true);
  await waitFor(
    'the fetcher started by its path unit',
    () =>
      s.active('tope-fetcher.service') === 'active' ||
      s.sh('cat /var/lib/tope-updater/fetcher/download.json').includes('toInstall'),
    20_000,
    100,
  );
  const done = await s.stage('toInstall');
  assert.equal(done.message, 'Package ready to install: 4.0.0');
  assert.match(s.journal('tope-fetcher.service'), /resuming the interrupted download/);
});

test(
  'a power cut mid-install: at boot the install ends on a complete version with the unit running',
  { skip },
  async () => {
    const s = sbx!;
    assert.equal(s.api('POST', '/api/v1.0/update', { version: '4.0.0' }).code, 200);
    await untilMessage('Checking services...');
    s.reboot(true);
    const end = await waitFor(
      'the install to end',
      () => {
        const p = s.api('GET', '/api/v1.0/progress').data;
        return ['success', 'failed'].includes(p.stage) ? p : null;
      },
      60_000,
      200,
    );
    const current = s.sh('readlink /opt/tope/versions/current');
    assert.ok(['v4.0.0', 'v3.0.0'].includes(current), current);
    assert.equal(end.stage, current === 'v4.0.0' ? 'success' : 'failed');
    assert.equal(s.sh('cat /opt/tope/versions/current/bin/printerd'), `printerd ${current.slice(1)}`);
    await waitFor('printerd running', () => s.active('printerd.service') === 'active', 20_000, 200);
    assert.equal(s.sh('cat /run/printerd.version'), `printerd ${current.slice(1)}`);
  },
);

// last: from here on the device refuses the other tests' packages (security_version 0)
test(
  'the security floor under the real units: written by the root installer after the probation, read by the unprivileged fetcher',
  { skip },
  async () => {
    const s = sbx!;
    const download = (pkg: Awaited<ReturnType<typeof publish>>) =>
      assert.equal(
        s.api('POST', '/api/v1.0/download', { ...pkg, package_url: url(false, pkg.package_name) }).code,
        200,
      );
    download(await publish('5.0.0', { security_version: 1 }));
    await s.stage('toInstall');
    assert.equal(s.api('POST', '/api/v1.0/update', { version: '5.0.0' }).code, 200);
    await s.stage('success');
    const floorFile = `/var/lib/tope-updater/installer/${SECURITY_FLOOR_RECORD}`;
    assert.equal(s.sh(`stat -c '%U:%G %a' ${floorFile}`), 'root:tope-installer 640');
    assert.match(s.sh(`cat ${floorFile}`), /"security_version":1,"version":"5\.0\.0"/);

    // the fetcher (tope-fetcher, in group tope-installer) reads it: an equal security_version is verified
    download(await publish('5.1.0', { security_version: 1 }));
    await s.stage('toInstall');
    // and an older package below it is refused at verifying, not for want of reading the floor
    download(await publish('4.9.0'));
    const refused = await s.stage('failed');
    assert.equal(
      refused.error,
      "DOWNGRADE_REFUSED: version 4.9.0 has security_version 0, below this device's security floor 1",
    );
    assert.equal(s.sh('ls -A /var/lib/tope-updater/fetcher/packages'), '', 'the refused package is removed');
  },
);
