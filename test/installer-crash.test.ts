import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterEach, test } from 'node:test';
import { Service } from './helpers/services.js';
import { installerStateSchema, MAX_RECOVERY_ATTEMPTS } from '../services/installer/journal.js';
import { BUSY_MARKER } from '../shared/busy-marker.js';
import { DurableJson } from '../shared/durable-store.js';
import { InstallDevice } from './helpers/install-device.js';
import { buildPackage, type ModuleSpec } from './helpers/packages.js';
import { waitFor } from './helpers/wait.js';

// The installer killed with SIGKILL at several points of an install, then started again: current
// always names a complete snapshot and the units that were stopped run again.

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const modules: ModuleSpec[] = [
  { name: 'a', dst: '/opt/tope/bin/a', process_name: 'a.service', restart_order: 1 },
  { name: 'b', dst: '/opt/tope/bin/b', process_name: 'b.service', restart_order: 2 },
];

async function setUp(extra: Record<string, string> = {}) {
  const d = new InstallDevice({
    TOPE_UNIT_STOP_TIMEOUT_MS: '20000',
    TOPE_UNIT_START_TIMEOUT_MS: '20000',
    TOPE_POST_CMD_TIMEOUT_MS: '20000',
    ...extra,
  });
  cleanups.push(() => d.stop());
  await d.seedVersion('v1.0.0', { 'bin/a': 'a 1.0.0\n', 'bin/b': 'b 1.0.0\n' }, ['current']);
  await d.setUnits({ 'a.service': { active: true }, 'b.service': { active: true } });
  const [installer] = await d.start('installer', 'api-gateway');
  return { d, installer };
}

async function kill(d: InstallDevice, installer: Service) {
  assert.ok(
    (await fsp.readdir(d.env.TOPE_INSTALLER_STATE_DIR)).includes('busy'),
    'the marker for the resume path unit is there',
  );
  await d.kill(installer);
}

const journalOf = (d: InstallDevice) =>
  new DurableJson(path.join(d.env.TOPE_INSTALLER_STATE_DIR, 'install.json'), installerStateSchema).read();

async function phase(d: InstallDevice, want: string) {
  return waitFor(`journal phase ${want}`, async () => (await journalOf(d))?.journal?.phase === want);
}

/** The invariants after recovery: a complete snapshot behind current, and both units running. */
async function assertWhole(d: InstallDevice, version: string) {
  const end = await d.finished();
  assert.equal(await d.link('current'), `v${version}`);
  assert.equal(await d.file('/opt/tope/versions/current/bin/a'), `a ${version}\n`);
  assert.equal(await d.file('/opt/tope/versions/current/bin/b'), `b ${version}\n`);
  const units = await d.units();
  assert.ok(units['a.service'].active && units['b.service'].active, 'the units run again');
  assert.ok(!(await fsp.readdir(d.versionsDir)).some((n) => n.startsWith('.')), 'no staging leftovers');
  // the record says the end before its report is out; the marker goes after the report
  await waitFor(
    'no marker once the install is over and reported',
    async () => !(await fsp.readdir(d.env.TOPE_INSTALLER_STATE_DIR)).includes('busy'),
  );
  return end;
}

test('[systemctl stand-in] killed while staging a large package: nothing changed, the next start cleans up', async () => {
  const { d, installer } = await setUp();
  const many = Array.from({ length: 900 }, (_, i) => ({ name: `m${i}`, dst: `/opt/tope/data/${i}` }));
  await d.verified(await buildPackage('2.0.0', [...modules, ...many]), '2.0.0');
  await d.update('2.0.0');
  await phase(d, 'staging');
  await kill(d, installer);
  await d.start('installer');
  const end = await assertWhole(d, '1.0.0');
  assert.match(
    end.error!,
    /^INSTALL_INTERRUPTED: the installer stopped before the switch to 2\.0\.0; the device stays on 1\.0\.0$/,
  );
  assert.deepEqual((await fsp.readdir(d.versionsDir)).sort(), ['current', 'v1.0.0']);
});

test('[systemctl stand-in] killed with one unit stopped: the units are started again on the old version', async () => {
  const { d, installer } = await setUp();
  await d.behave({ 'a.service': { hangStop: true } });
  await d.verified(await buildPackage('2.0.0', modules), '2.0.0');
  await d.update('2.0.0');
  await waitFor('b stopped, a stopping', async () => (await d.calls()).some((c) => c.startsWith('stop a.service')));
  assert.equal((await d.units())['b.service'].active, false);
  await kill(d, installer);
  await d.behave({});
  await d.start('installer');
  const end = await assertWhole(d, '1.0.0');
  assert.equal(end.stage, 'failed');
  assert.match(end.error!, /^INSTALL_INTERRUPTED/);
});

test('[systemctl stand-in] a recovery at start starts ota-gui, as the install did: the screen shows it', async () => {
  const { d, installer } = await setUp();
  await d.setUnits({
    'a.service': { active: true },
    'b.service': { active: true },
    'ota-gui.service': { active: false },
  });
  const guiStarts = async () => (await d.calls()).filter((c) => c.startsWith('start ota-gui.service')).length;
  await d.behave({ 'a.service': { hangStop: true } });
  await d.verified(await buildPackage('2.0.0', modules), '2.0.0');
  await d.update('2.0.0');
  await waitFor('a stopping', async () => (await d.calls()).some((c) => c.startsWith('stop a.service')));
  await waitFor('ota-gui started by the install', async () => (await guiStarts()) === 1);
  await kill(d, installer);
  await d.behave({});
  await d.start('installer');
  await assertWhole(d, '1.0.0');
  await waitFor('ota-gui started again by the recovery', async () => (await guiStarts()) === 2);
});

test('[systemctl stand-in] killed in a post command after an in-place file was replaced: the file is restored', async () => {
  const { d, installer } = await setUp({ TOPE_ALLOWED_ROOTS: '/opt/tope:/etc/tope' });
  await fsp.mkdir(path.join(d.sysroot, 'etc/tope'), { recursive: true });
  await fsp.writeFile(path.join(d.sysroot, 'etc/tope/app.conf'), 'old\n');
  const marker = path.join(d.root, 'post-started');
  await d.verified(
    await buildPackage('2.0.0', [
      ...modules,
      { name: 'conf', dst: '/etc/tope/app.conf', data: 'new\n', post_cmds: [`touch ${marker}; sleep 60`] },
    ]),
    '2.0.0',
  );
  await d.update('2.0.0');
  await waitFor('the post command to run', () =>
    fsp.stat(marker).then(
      () => true,
      () => false,
    ),
  );
  assert.equal(await d.file('/etc/tope/app.conf'), 'new\n');
  await kill(d, installer);
  await d.start('installer');
  await assertWhole(d, '1.0.0');
  assert.equal(await d.file('/etc/tope/app.conf'), 'old\n');
});

test('[systemctl stand-in] killed after the switch while starting units: the install rolls forward to the new version', async () => {
  const { d, installer } = await setUp();
  await d.behave({ 'b.service': { hangStart: true } });
  await d.verified(await buildPackage('2.0.0', modules), '2.0.0');
  await d.update('2.0.0');
  await waitFor('b starting on 2.0.0', async () => (await d.calls()).includes('start b.service current=2.0.0'));
  await kill(d, installer);
  await d.behave({});
  await d.start('installer');
  const end = await assertWhole(d, '2.0.0');
  assert.equal(end.stage, 'success');
  assert.equal(await d.link('previous'), 'v1.0.0');
});

/**
 * A device with a `previous` (v0.9.0), the installer killed inside the switch of 2.0.0: `previous`
 * already names the running v1.0.0, `current` still does too. Returns before the restart.
 */
async function killedInsideTheSwitch() {
  const { d, installer } = await setUp({ TOPE_FAILPOINT: 'installer.previous-linked' });
  await d.seedVersion('v0.9.0', { 'bin/a': 'a 0.9.0\n', 'bin/b': 'b 0.9.0\n' }, ['previous']);
  await d.verified(await buildPackage('2.0.0', modules), '2.0.0');
  await d.update('2.0.0');
  await installer.exited;
  assert.deepEqual([await d.link('previous'), await d.link('current')], ['v1.0.0', 'v1.0.0'], 'cut between the links');
  await d.kill(installer);
  delete d.env.TOPE_FAILPOINT;
  return d;
}

test('[systemctl stand-in] killed inside the switch, previous linked and current not yet: undone, and previous names the snapshot it named before', async () => {
  const d = await killedInsideTheSwitch();
  await d.start('installer');
  const end = await assertWhole(d, '1.0.0');
  assert.match(end.error!, /^INSTALL_INTERRUPTED/);
  assert.equal(await d.link('previous'), 'v0.9.0', 'the level-1 rollback target of before the install');
  assert.deepEqual((await fsp.readdir(d.versionsDir)).sort(), ['current', 'previous', 'v0.9.0', 'v1.0.0']);
});

test('[systemctl stand-in] killed inside the switch, and previous then cannot be restored: the units still start on the old version, the failure says why', async () => {
  const d = await killedInsideTheSwitch();
  // a real directory where the link was: the rename of a new link over it fails (EISDIR)
  await fsp.rm(path.join(d.versionsDir, 'previous'));
  await fsp.mkdir(path.join(d.versionsDir, 'previous'));
  await d.start('installer');
  const end = await d.finished();
  assert.equal(end.stage, 'failed');
  assert.match(end.error!, /^INSTALL_INTERRUPTED: .*; DEPLOYMENT_FAILED: previous not restored: /);
  assert.equal(await d.link('current'), 'v1.0.0');
  const units = await d.units();
  assert.ok(units['a.service'].active && units['b.service'].active, 'the units run again');
});

test('[systemctl stand-in] killed in the middle of a rollback: the rollback is finished at the next start', async () => {
  const { d, installer } = await setUp({ TOPE_UNIT_START_TIMEOUT_MS: '1000' });
  await d.behave({ 'a.service': { unhealthy: ['2.0.0'] }, 'b.service': { hangStart: ['1.0.0'] } });
  await d.verified(await buildPackage('2.0.0', modules), '2.0.0');
  await d.update('2.0.0');
  await phase(d, 'rolling-back');
  await waitFor('b starting on 1.0.0', async () => (await d.calls()).includes('start b.service current=1.0.0'));
  await kill(d, installer);
  await d.behave({ 'a.service': { unhealthy: ['2.0.0'] } });
  await d.start('installer');
  const end = await assertWhole(d, '1.0.0');
  assert.match(end.error!, /^SERVICE_(UNHEALTHY|START_TIMEOUT): a\.service .*; ROLLBACK_LEVEL_1_SUCCESS: 1\.0\.0$/);
});

test('[systemctl stand-in] killed before the journal existed (while verifying the package): failed, nothing changed', async () => {
  const { d, installer } = await setUp();
  const big = await buildPackage('2.0.0', [
    ...modules,
    { name: 'blob', dst: '/opt/tope/share/blob', data: Buffer.alloc(50 * 1024 * 1024, 1), compress: false },
  ]);
  await d.verified(big, '2.0.0');
  await d.update('2.0.0');
  await waitFor('installing', async () => (await d.installerStore.read())?.status.stage === 'installing');
  await kill(d, installer);
  const raw = await journalOf(d);
  assert.equal(raw?.journal, null, 'killed before the journal');
  await d.start('installer');
  const end = await assertWhole(d, '1.0.0');
  assert.equal(end.error, 'INSTALL_INTERRUPTED: the installer stopped before changing anything');
});

test('[systemctl stand-in] a recovery that crashes the installer at every start: given up, the device left as it is', async () => {
  const { d, installer } = await setUp();
  await d.behave({ 'a.service': { hangStop: true } });
  await d.verified(await buildPackage('2.0.0', modules), '2.0.0');
  await d.update('2.0.0');
  await waitFor('b stopped, a stopping', async () => (await d.calls()).some((c) => c.startsWith('stop a.service')));
  await kill(d, installer);
  await d.behave({});
  for (let attempt = 1; attempt <= MAX_RECOVERY_ATTEMPTS; attempt++) {
    // as Restart=on-failure would: started again, and killed again in the middle of its undo
    const crashing = new Service('installer', { ...d.env, TOPE_FAILPOINT: 'installer.undo-restored' });
    const exit = await crashing.exited;
    assert.equal(exit.signal, 'SIGKILL', `attempt ${attempt} ends at the failpoint: ${crashing.stderr.slice(-300)}`);
    assert.ok(crashing.logged('recovering an interrupted install'), `attempt ${attempt} was a recovery`);
    assert.equal((await journalOf(d))?.journal?.recoveryAttempts, attempt, 'each attempt is counted before it runs');
  }
  const callsBefore = (await d.calls()).length;
  await d.start('installer');
  const end = await d.finished();
  assert.equal(end.stage, 'failed');
  const abandoned =
    `^RECOVERY_ABANDONED: the recovery of the install of 2\\.0\\.0 \\(journal phase stopping\\) ` +
    `did not finish in ${MAX_RECOVERY_ATTEMPTS} attempts`;
  assert.match(end.error!, new RegExp(abandoned));
  // left as it is: no undo ran this time, the journal stays for the repair, and the marker goes
  assert.deepEqual(
    (await d.calls()).slice(callsBefore).filter((c) => /^(start|stop) /.test(c)),
    [],
    'no unit touched',
  );
  assert.equal((await d.units())['b.service'].active, false, 'b stays stopped');
  assert.equal(await d.link('current'), 'v1.0.0');
  assert.equal((await journalOf(d))?.journal?.phase, 'stopping');
  const markerGone = async () => !(await fsp.readdir(d.env.TOPE_INSTALLER_STATE_DIR)).includes(BUSY_MARKER);
  await waitFor('no busy marker: nothing left that a start would do', markerGone);
  const refused = await d.update('2.0.0');
  assert.match(refused.body.msg, /^OPERATION_IN_PROGRESS: .*abandoned/);
  assert.equal((await d.progress()).body.data.error, end.error, 'the refusal changes nothing');
});
