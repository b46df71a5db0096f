import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkUnits } from '../services/installer/manifest.js';
import { FILE_WORK_WIDTH } from '../services/installer/bounded-work.js';
import { UpdaterError } from '../shared/errors.js';
import type { Manifest } from '../shared/package-manifest.js';

// Every unit a package names must exist before anything changes (a `systemctl cat` each): looked
// for once per unit, a few at once, however many modules name it.

const manifestNaming = (units: string[]): Manifest =>
  ({
    version: '2.0.0',
    compatible: ['tope-test'],
    security_version: 0,
    modules: units.map((unit, i) => ({
      name: `m${i}`,
      src: `bin/m${i}`,
      dst: `/opt/tope/bin/m${i}`,
      size: 1,
      sha256: '0'.repeat(64),
      process_name: unit,
    })),
  }) as Manifest;

test('500 modules naming two units: each unit looked for once; a missing one names the first module naming it', async () => {
  const units = Array.from({ length: 500 }, (_, i) => (i % 5 === 4 ? 'b.service' : 'a.service'));
  const asked: string[] = [];
  await checkUnits(manifestNaming(units), ['*'], async (unit) => {
    asked.push(unit);
    return true;
  });
  assert.deepEqual(asked.sort(), ['a.service', 'b.service']);
  await assert.rejects(
    checkUnits(manifestNaming(units), ['*'], async (unit) => unit !== 'b.service'),
    (e: unknown) =>
      e instanceof UpdaterError &&
      e.code === 'INVALID_MANIFEST' &&
      /module m4: unit b\.service not found/.test(e.message),
  );
});

test('many distinct units are looked for a few at once, never all together', async () => {
  const units = Array.from({ length: 40 }, (_, i) => `u${i}.service`);
  let running = 0;
  let most = 0;
  await checkUnits(manifestNaming(units), ['*'], async () => {
    most = Math.max(most, ++running);
    await new Promise<void>((resolve) => setImmediate(resolve));
    running--;
    return true;
  });
  assert.ok(most > 1 && most <= FILE_WORK_WIDTH, `at most ${most} at once`);
});
