import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { promises as fsp, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { call } from './helpers/api.js';
import { arm64Launcher, ELF_AARCH64, elfMachine, findArm64Runtime, type Arm64Runtime } from './helpers/arm64.js';
import { DeviceApi } from './helpers/device-api.js';
import { InstallDevice } from './helpers/install-device.js';
import { Origin } from './helpers/origin.js';
import { buildPackage, md5 } from './helpers/packages.js';
import { distDir } from './helpers/services.js';
import { waitFor } from './helpers/wait.js';

// The printer's boards are arm64 (RK3566). Here the three services run on
// the pinned Node's arm64 build under qemu-aarch64-static (user-mode emulation of the CPU; the
// kernel, file systems and sockets are the host's), through a whole update. Skipped, saying
// why, only where the emulator or the arm64 runtime cannot be had (make tools installs them).

const repo = path.join(distDir, '..');
let runtime: Arm64Runtime | { missing: string };
before(async () => {
  runtime = await findArm64Runtime();
  if ('missing' in runtime) console.log(`# arm64 test skipped: ${runtime.missing}`);
});

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

test('[systemctl stand-in] on arm64 Node under QEMU: download cut and resumed, verified, installed with post_cmds, switched, probation passed', async (t) => {
  if ('missing' in runtime) return t.skip(`no arm64 runtime: ${runtime.missing}`);
  const arm64 = runtime;
  const started = Date.now();
  const deviceApi = await new DeviceApi().start();
  const origin = await new Origin(1).start();
  const d = new InstallDevice({
    TOPE_DEVICE_API_URL: deviceApi.url,
    // emulated code runs several times slower: the device's own deadlines get room, the flow is the same
    TOPE_HTTP_TIMEOUT_MS: '20000',
    TOPE_PROBATION_MS: '1500',
    TOPE_UNIT_START_TIMEOUT_MS: '15000',
    TOPE_UNIT_STOP_TIMEOUT_MS: '15000',
  });
  d.launcher = arm64Launcher(arm64);
  cleanups.push(
    () => origin.stop(),
    () => deviceApi.stop(),
    () => d.stop(),
  );
  await d.seedVersion('v1.0.0', { 'bin/printerd': 'old\n' }, ['current']);
  await d.setUnits({ 'printerd.service': { active: true } });
  const payload = randomBytes(2 * 1024 * 1024); // a binary's worth, so the cut falls mid-body
  origin.body = await buildPackage('1.1.0', [
    {
      name: 'printerd',
      dst: '/opt/tope/bin/printerd',
      process_name: 'printerd.service',
      data: payload,
      compress: false,
      post_cmds: ['echo "$TOPE_VERSION" > post.txt'],
    },
  ]);
  const cutAt = 512 * 1024;
  origin.sequence({ kind: 'cut', after: cutAt });
  const [fetcher, installer, gateway] = await d.start('fetcher', 'installer', 'api-gateway');
  const readyAt = Date.now();

  // every service runs arm64 code: the process is QEMU running the arm64 Node, and the service says so
  assert.equal(elfMachine(arm64.node), ELF_AARCH64, `${arm64.node} is an AArch64 executable`);
  for (const [name, svc] of [
    ['fetcher', fetcher],
    ['installer', installer],
    ['api-gateway', gateway],
  ] as const) {
    const pid = svc.child.pid!;
    assert.equal(readlinkSync(`/proc/${pid}/exe`), realpathSync(arm64.qemu), `${name} is QEMU's process`);
    assert.ok(
      readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(arm64.node),
      `${name} runs ${arm64.node}`,
    );
    const ready = svc.logged(`${name} ready`)!;
    assert.equal(ready.arch, 'arm64', `${name} reports process.arch arm64: ${JSON.stringify(ready)}`);
  }

  const job = {
    version: '1.1.0',
    package_url: origin.url(),
    package_name: 'tope-1.1.0.zip',
    package_size: origin.body.length,
    package_md5: md5(origin.body),
  };
  assert.equal((await call(d.base, 'POST', '/api/v1.0/download', job)).body.code, 200);
  await d.waitStage('toInstall', 120_000);
  const verifiedAt = Date.now();
  // the connection died after cutAt bytes; the next request asked for the rest, not the whole
  assert.ok(origin.requests.length >= 2, `requests: ${JSON.stringify(origin.requests)}`);
  const resumedFrom = Number(/^bytes=(\d+)-$/.exec(origin.requests[1].range ?? '')?.[1]);
  assert.ok(resumedFrom > 0 && resumedFrom <= cutAt, `resumed with ${origin.requests[1].range}`);
  assert.ok(fetcher.logged('package verified'), 'the fetcher verified the package');

  assert.equal((await d.update('1.1.0')).body.code, 200);
  const end = await d.finished(120_000);
  assert.equal(end.stage, 'success', JSON.stringify(end));
  assert.equal(await d.link('current'), 'v1.1.0');
  assert.deepEqual(await fsp.readFile(path.join(d.sysroot, 'opt/tope/versions/current/bin/printerd')), payload);
  assert.equal(await d.file('/opt/tope/versions/v1.1.0/post.txt'), '1.1.0\n', 'post_cmds ran in the new snapshot');
  const calls = await d.calls();
  const restarted = calls.indexOf('start printerd.service current=1.1.0');
  assert.ok(restarted >= 0, `printerd started on the new version: ${calls.join(' | ')}`);
  assert.ok(
    calls.slice(restarted + 1).some((c) => c === 'is-active printerd.service current=1.1.0'),
    `probation watched printerd after the switch: ${calls.join(' | ')}`,
  );
  await waitFor('the success report', () => deviceApi.reports.at(-1)?.stage === 'success', 30_000);
  assert.deepEqual(
    deviceApi.stages().filter((s, i, a) => s !== a[i - 1]),
    ['downloading', 'verifying', 'toInstall', 'installing', 'success'],
  );
  t.diagnostic(
    `on emulated arm64: services started in ${readyAt - started} ms, download to verified ${verifiedAt - readyAt} ms, ` +
      `update to success ${Date.now() - verifiedAt} ms`,
  );
});

test('no native add-on in the production dependencies: the .deb is Architecture: all and runs on any Node 24 CPU', async () => {
  const lock = JSON.parse(await fsp.readFile(path.join(repo, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { dev?: boolean; hasInstallScript?: boolean; os?: string[]; cpu?: string[] }>;
  };
  const production = Object.entries(lock.packages).filter(([name, p]) => name !== '' && !p.dev);
  assert.ok(production.length > 0);
  for (const [name, p] of production) {
    assert.ok(!p.hasInstallScript, `${name} has an install script (a native build?)`);
    assert.equal(p.cpu, undefined, `${name} is built for some CPUs only: ${p.cpu}`);
    const dir = path.join(repo, name);
    const files = await fsp.readdir(dir, { recursive: true });
    const native = files.filter((f) => f.endsWith('.node') || path.basename(f) === 'binding.gyp');
    assert.deepEqual(native, [], `${name} carries native code`);
  }
  const control = await fsp.readFile(path.join(repo, 'packaging/deb/control.in'), 'utf8');
  assert.match(control, /^Architecture: all$/m);
});
