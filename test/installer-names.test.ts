import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { UNIT_NAME_MAX } from '../shared/manifest-names.js';
import { Units } from '../services/installer/units.js';
import { deviceListing } from './helpers/tree-state.js';
import { InstallDevice } from './helpers/install-device.js';
import { buildPackage } from './helpers/packages.js';
import { tempDir } from './helpers/temp-dir.js';

// Names in a manifest are untrusted: a unit name reaches systemctl's command line, and a module
// name, src or dst reach logs, reports and paths. Each hostile one is INVALID_MANIFEST and the
// device stays byte-identical (every file's bytes and mode, every link), no unit touched.

const d = new InstallDevice();
const ok = { name: 'a', dst: '/opt/tope/bin/a', process_name: 'a.service' };
let before_ = '';

before(async () => {
  await d.seedVersion('v1.0.0', { 'bin/a': 'a 1.0.0\n' }, ['current']);
  await d.setUnits({ 'a.service': { active: true } });
  await d.start('installer', 'api-gateway');
  before_ = await deviceListing(d.sysroot);
});
after(() => d.stop());

const invalidUnit = /^INVALID_MANIFEST: modules\.0\.process_name: must be a systemd unit name$/;
const controls = /^INVALID_MANIFEST: modules\.0\.(name|src|dst): must not contain control characters/;
const cases: Array<[string, () => Promise<Buffer>, RegExp]> = [
  [
    'a unit name that is a systemctl option (-Hroot@host)',
    () => buildPackage('2.0.0', [{ ...ok, process_name: '-Hroot@host.service' }]),
    invalidUnit,
  ],
  ['a unit name that is --user', () => buildPackage('2.0.0', [{ ...ok, process_name: '--user' }]), invalidUnit],
  ['a unit name starting with a dash', () => buildPackage('2.0.0', [{ ...ok, process_name: '-.mount' }]), invalidUnit],
  ['a unit name without a unit type', () => buildPackage('2.0.0', [{ ...ok, process_name: 'printerd' }]), invalidUnit],
  [
    'a unit name of an unknown type',
    () => buildPackage('2.0.0', [{ ...ok, process_name: 'printerd.exe' }]),
    invalidUnit,
  ],
  [
    'a template without an instance',
    () => buildPackage('2.0.0', [{ ...ok, process_name: 'printerd@.service' }]),
    invalidUnit,
  ],
  ['a unit name with a slash', () => buildPackage('2.0.0', [{ ...ok, process_name: '../etc.service' }]), invalidUnit],
  [
    'a unit name longer than systemd allows',
    () => buildPackage('2.0.0', [{ ...ok, process_name: `${'a'.repeat(UNIT_NAME_MAX)}.service` }]),
    /^INVALID_MANIFEST: modules\.0\.process_name: /,
  ],
  [
    'a dst with a newline',
    () => buildPackage('2.0.0', [{ ...ok, dst: '/opt/tope/bin/a\nINFO forged log line' }]),
    controls,
  ],
  ['a dst with a NUL', () => buildPackage('2.0.0', [{ ...ok, dst: '/opt/tope/bin/a\u0000.conf' }]), controls],
  [
    'a dst with an escape sequence',
    () => buildPackage('2.0.0', [{ ...ok, dst: '/opt/tope/bin/\u001b[2Ja' }]),
    controls,
  ],
  [
    'a src with a newline',
    () => buildPackage('2.0.0', [{ ...ok, src: 'modules/a/\nfile' }], [{ name: 'modules/a/\nfile', data: 'x' }]),
    controls,
  ],
  ['a src with a NUL', () => buildPackage('2.0.0', [{ ...ok, src: 'modules/a/file\u0000' }]), controls],
  [
    'a module name with an escape sequence',
    () => buildPackage('2.0.0', [{ ...ok, name: 'a\u001b]0;pwned\u0007' }]),
    controls,
  ],
  ['a module name with a C1 control', () => buildPackage('2.0.0', [{ ...ok, name: 'a\u009bb' }]), controls],
];

for (const [name, make, error] of cases) {
  test(`[systemctl stand-in] refused: ${name}`, async () => {
    await d.verified(await make(), '2.0.0');
    await d.assertInstallRefused('2.0.0', error, before_, /^(start|stop) /);
  });
}

test('[systemctl stand-in] accepted: instances, escapes and every ordinary unit type', async () => {
  await d.setUnits({
    'a.service': { active: true },
    'printer@usb\\x2d1.service': { active: false },
    'b.socket': { active: false },
  });
  await d.verified(
    await buildPackage('2.0.0', [
      ok,
      { name: 'b', dst: '/opt/tope/bin/b', process_name: 'printer@usb\\x2d1.service' },
      { name: 'c', dst: '/opt/tope/bin/c', process_name: 'b.socket' },
    ]),
    '2.0.0',
  );
  await d.update('2.0.0');
  assert.equal((await d.finished()).stage, 'success');
});

test('every systemctl call ends its options with -- before the unit name', async () => {
  const dir = tempDir('tope-systemctl-');
  const log = path.join(dir, 'argv.jsonl');
  const recorder = path.join(dir, 'systemctl');
  // a recording stand-in: logs its argv, says the unit is active and was never restarted
  await fsp.writeFile(
    recorder,
    `#!/bin/sh\nprintf '%s\\n' "$(node -e 'console.log(JSON.stringify(process.argv.slice(1)))' -- "$@")" >> ${log}\n` +
      'case "$1" in is-active) echo active;; show) echo 0;; esac\n',
    { mode: 0o755 },
  );
  const units = new Units(recorder, { stopMs: 2000, startMs: 2000, probationMs: 0 });
  const unit = '-Hroot@host';
  await units.state(unit);
  await units.restarts(unit);
  await units.exists(unit);
  await units.startNoBlock(unit);
  await units.stop(unit).catch(() => undefined);
  await units.start(unit);
  const calls = (await fsp.readFile(log, 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as string[]);
  assert.ok(calls.length >= 6, `${calls.length} calls`);
  for (const argv of calls) {
    const at = argv.indexOf(unit);
    assert.ok(at > 0 && argv[at - 1] === '--', `"--" right before the unit in ${JSON.stringify(argv)}`);
    assert.ok(
      argv.slice(0, at - 1).every((a) => a !== '--'),
      'one "--" only',
    );
  }
});
