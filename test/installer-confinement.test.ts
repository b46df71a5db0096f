import assert from 'node:assert/strict';
import { promises as fsp, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterEach, test } from 'node:test';
import { loadConfig } from '../shared/config.js';
import { isManagedUnit, updaterUnits } from '../services/installer/unit-policy.js';
import { InstallDevice } from './helpers/install-device.js';
import { buildPackage } from './helpers/packages.js';
import { distDir } from './helpers/services.js';
import { assertTreeUnchanged, treeState } from './helpers/tree-state.js';

// What the device decides, whatever a signed package says: no write through a symlink already on
// the device (UNSAFE_DESTINATION), one deadline for the whole time the printer's units are
// stopped (UNITS_STOPPED_TOO_LONG), and only the units the device manages may be stopped
// (TOPE_MANAGED_UNITS). The real installer process over a sysroot in a temp dir; service control
// through the recording systemctl stand-in.

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function device(extra: Record<string, string> = {}, units = ['a.service']): Promise<InstallDevice> {
  const d = new InstallDevice(extra);
  cleanups.push(() => d.stop());
  await d.seedVersion('v1.0.0', { 'bin/a': 'a 1.0.0\n', 'etc/a.conf': 'conf 1.0.0\n' }, ['current']);
  await d.setUnits(Object.fromEntries(units.map((u) => [u, { active: true }])));
  return d;
}

async function install(d: InstallDevice, modules: Parameters<typeof buildPackage>[1], version = '2.0.0') {
  await d.verified(await buildPackage(version, modules), version);
  await d.update(version);
  return d.finished();
}

const stops = async (d: InstallDevice) => (await d.calls()).filter((c) => c.startsWith('stop '));

// ---- a symlink on the device carries no write ----

test('[systemctl stand-in] a symlink in current pointing outside the allowed roots: a package writing through it is refused UNSAFE_DESTINATION, nothing outside changes', async () => {
  const d = await device();
  const outside = path.join(d.root, 'outside');
  await fsp.mkdir(outside);
  await fsp.writeFile(path.join(outside, 'passwd'), 'root:x:0:0\n');
  await fsp.symlink(outside, path.join(d.versionsDir, 'v1.0.0/etc-link'));
  await fsp.symlink('../../../../outside', path.join(d.versionsDir, 'v1.0.0/rel-link'));
  await d.start('installer', 'api-gateway');
  const before = { device: await treeState(d.sysroot), outside: await treeState(outside) };

  for (const dst of ['/opt/tope/etc-link/passwd', '/opt/tope/rel-link/new-file']) {
    const end = await install(d, [{ name: 'a', dst, process_name: 'a.service' }]);
    assert.equal(end.stage, 'failed');
    assert.match(end.error!, new RegExp(`^UNSAFE_DESTINATION: ${dst}: .*/(etc|rel)-link is a symlink`));
    assert.equal(await d.link('current'), 'v1.0.0');
    assert.deepEqual(await stops(d), [], 'refused before any unit stopped');
    await assertTreeUnchanged(outside, before.outside, 'the directory outside');
    await assertTreeUnchanged(d.sysroot, before.device, 'the device');
  }
});

test('[systemctl stand-in] a symlinked directory, or a symlinked file, under an allowed root: an in-place write there is refused UNSAFE_DESTINATION, the place it points to unchanged', async () => {
  const d = await device({ TOPE_ALLOWED_ROOTS: '/opt/tope:/srv/printer' });
  const elsewhere = path.join(d.sysroot, 'srv/elsewhere');
  await fsp.mkdir(elsewhere, { recursive: true });
  await fsp.writeFile(path.join(elsewhere, 'x.conf'), 'elsewhere\n');
  await fsp.mkdir(path.join(d.sysroot, 'srv/printer'), { recursive: true });
  await fsp.symlink(elsewhere, path.join(d.sysroot, 'srv/printer/conf'));
  await fsp.symlink(path.join(elsewhere, 'x.conf'), path.join(d.sysroot, 'srv/printer/y.conf'));
  await d.start('installer', 'api-gateway');
  const before = await treeState(d.sysroot);
  const cases: Array<[string, RegExp]> = [
    [
      '/srv/printer/conf/x.conf',
      /^UNSAFE_DESTINATION: \/srv\/printer\/conf\/x\.conf: .*\/srv\/printer\/conf is a symlink/,
    ],
    ['/srv/printer/y.conf', /^UNSAFE_DESTINATION: \/srv\/printer\/y\.conf is a symlink .*would not be restored/],
  ];
  for (const [dst, error] of cases) {
    const end = await install(d, [
      { name: 'a', dst: '/opt/tope/bin/a', process_name: 'a.service' },
      { name: 'c', dst },
    ]);
    assert.equal(end.stage, 'failed');
    assert.match(end.error!, error);
    assert.deepEqual(await stops(d), []);
    await assertTreeUnchanged(d.sysroot, before, 'the device');
  }
  // the same root without the links takes the file
  await fsp.rm(path.join(d.sysroot, 'srv/printer/conf'));
  assert.equal((await install(d, [{ name: 'c', dst: '/srv/printer/conf/x.conf' }])).stage, 'success');
  assert.equal(await d.file('/srv/printer/conf/x.conf'), 'c 2.0.0\n');
  assert.equal(await fsp.readFile(path.join(elsewhere, 'x.conf'), 'utf8'), 'elsewhere\n');
});

// ---- one deadline while the units are stopped ----

test('[systemctl stand-in] a post_cmd that outlasts the units-stopped deadline is cut: UNITS_STOPPED_TOO_LONG, undone before the switch, units started again', async () => {
  const d = await device({ TOPE_UNITS_STOPPED_MAX_MS: '600', TOPE_POST_CMD_TIMEOUT_MS: '60000' });
  await d.start('installer', 'api-gateway');
  const before = await treeState(d.versionsDir);
  const t0 = Date.now();
  const end = await install(d, [
    { name: 'a', dst: '/opt/tope/bin/a', process_name: 'a.service', post_cmds: ['sleep 30'] },
  ]);
  assert.ok(Date.now() - t0 < 20_000, 'the post_cmd did not run its own 60 s');
  assert.equal(end.stage, 'failed');
  assert.match(
    end.error!,
    /^UNITS_STOPPED_TOO_LONG: the units were stopped for more than 600 ms before the switch \(during 'sleep 30' of a, cut after \d+ ms\)/,
  );
  assert.equal(await d.link('current'), 'v1.0.0');
  assert.equal((await d.units())['a.service'].active, true, 'started again');
  const calls = (await d.calls()).filter((c) => /^(stop|start) a/.test(c));
  assert.deepEqual(calls, ['stop a.service current=1.0.0', 'start a.service current=1.0.0']);
  await assertTreeUnchanged(d.versionsDir, before, 'the versions tree');
});

test('[systemctl stand-in] post_cmds each within their own timeout but together past the units-stopped deadline: UNITS_STOPPED_TOO_LONG', async () => {
  const d = await device({ TOPE_UNITS_STOPPED_MAX_MS: '700', TOPE_POST_CMD_TIMEOUT_MS: '5000' });
  await d.start('installer', 'api-gateway');
  const post_cmds = Array.from({ length: 8 }, (_, i) => `sleep 0.3; echo ${i} >> steps`);
  const end = await install(d, [{ name: 'a', dst: '/opt/tope/bin/a', process_name: 'a.service', post_cmds }]);
  assert.equal(end.stage, 'failed');
  assert.match(end.error!, /^UNITS_STOPPED_TOO_LONG: the units were stopped for more than 700 ms before the switch/);
  assert.equal(await d.link('current'), 'v1.0.0');
  assert.equal((await d.units())['a.service'].active, true);
});

test('the units-stopped deadline is a setting: 5 min unless set, a bad value CONFIG_INVALID names it', () => {
  assert.equal(loadConfig({}).TOPE_UNITS_STOPPED_MAX_MS, 300_000);
  assert.equal(loadConfig({ TOPE_UNITS_STOPPED_MAX_MS: '1500' }).TOPE_UNITS_STOPPED_MAX_MS, 1500);
  assert.throws(() => loadConfig({ TOPE_UNITS_STOPPED_MAX_MS: 'soon' }), /TOPE_UNITS_STOPPED_MAX_MS="soon"/);
});

// ---- the units a package may stop come from the device ----

test('[systemctl stand-in] a manifest naming a unit the device does not manage is refused INVALID_MANIFEST before anything changes; a managed one installs', async () => {
  const managed = 'printerd.service,printer@*.service';
  const d = await device({ TOPE_MANAGED_UNITS: managed }, ['a.service', 'printer@usb1.service', 'sshd.service']);
  await d.start('installer', 'api-gateway');
  const before = await treeState(d.versionsDir);
  for (const unit of ['a.service', 'sshd.service', 'printerd.socket']) {
    const end = await install(d, [{ name: 'a', dst: '/opt/tope/bin/a', process_name: unit }]);
    assert.equal(end.stage, 'failed');
    assert.equal(
      end.error,
      `INVALID_MANIFEST: module a: unit ${unit} is not among the units this device lets a package control (TOPE_MANAGED_UNITS: ${managed})`,
    );
    assert.deepEqual(await stops(d), []);
    await assertTreeUnchanged(d.versionsDir, before, 'the versions tree');
  }
  const end = await install(d, [{ name: 'a', dst: '/opt/tope/bin/a', process_name: 'printer@usb1.service' }]);
  assert.equal(end.stage, 'success');
  assert.deepEqual(await stops(d), ['stop printer@usb1.service current=1.0.0']);
});

test("[systemctl stand-in] the updater's own units are never a package's to stop, whatever TOPE_MANAGED_UNITS says", async () => {
  const d = await device({ TOPE_MANAGED_UNITS: '*' }, ['a.service', 'tope-installer.service']);
  await d.start('installer', 'api-gateway');
  const end = await install(d, [
    { name: 'a', dst: '/opt/tope/bin/a', process_name: 'a.service' },
    { name: 'b', dst: '/opt/tope/bin/b', process_name: 'tope-installer.service' },
  ]);
  assert.equal(end.stage, 'failed');
  assert.equal(end.error, "INVALID_MANIFEST: module b: unit tope-installer.service is one of the updater's own units");
  assert.deepEqual(await stops(d), []);
});

test("the managed units: the printer's own by default; names and patterns; the updater's units, as units/ ships them, never", () => {
  const { TOPE_MANAGED_UNITS } = loadConfig({});
  assert.deepEqual(TOPE_MANAGED_UNITS, ['device-api.service', 'ota-gui.service']);
  assert.ok(isManagedUnit('device-api.service', TOPE_MANAGED_UNITS));
  assert.ok(!isManagedUnit('sshd.service', TOPE_MANAGED_UNITS));
  assert.ok(isManagedUnit('printer@usb\\x2d1.service', ['printer@*.service']));
  assert.ok(!isManagedUnit('printer.service', ['printer@*.service']));
  assert.ok(isManagedUnit('fan1.service', ['fan?.service']));
  assert.ok(!isManagedUnit('fan10.service', ['fan?.service']));
  assert.ok(!isManagedUnit('aXservice', ['a.service']), 'a dot is a dot');
  const shipped = readdirSync(path.join(distDir, '../units')).filter((f) => /\.(service|socket|path|target)$/.test(f));
  assert.deepEqual([...updaterUnits].sort(), shipped.sort());
  for (const unit of shipped) assert.ok(!isManagedUnit(unit, ['*']), unit);
  assert.throws(() => loadConfig({ TOPE_MANAGED_UNITS: 'a.service,b c' }), /TOPE_MANAGED_UNITS=/);
});
