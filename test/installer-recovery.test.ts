import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  advancePhase,
  journalPhases,
  MAX_RECOVERY_ATTEMPTS,
  phaseNames,
  recoveryFor,
  recoveryLabel,
  type Phase,
  type RecoveryAction,
  type RecoveryCause,
  type SwitchSide,
} from '../services/installer/journal.js';
import { testJournal } from './helpers/journal.js';

// The installer's recovery table, row by row: every journal phase (and none yet) x whether
// `current` names the new snapshot x whether a restart found the install (crash) or a step
// failed while it ran (failure), and the one action recoveryFor decides. The crash campaigns
// (installer-crash, crash-failpoints) check that each action leaves the device whole; this pins
// which action each state gets, so a changed decision is a changed row here.

type Row = [phase: Phase | null, currentIsTarget: boolean, cause: RecoveryCause, action: RecoveryAction];

const table: Row[] = [
  [null, false, 'crash', 'fail'],
  [null, true, 'crash', 'fail'],
  [null, false, 'failure', 'fail'],
  [null, true, 'failure', 'fail'],
  ['staging', false, 'crash', 'undo-before-switch'],
  ['staging', true, 'crash', 'undo-before-switch'],
  ['staging', false, 'failure', 'undo-before-switch'],
  ['staging', true, 'failure', 'undo-before-switch'],
  ['stopping', false, 'crash', 'undo-before-switch'],
  ['stopping', true, 'crash', 'undo-before-switch'],
  ['stopping', false, 'failure', 'undo-before-switch'],
  ['stopping', true, 'failure', 'undo-before-switch'],
  // the only phase where the link decides: a crash can fall between its rename and the next journal write
  ['switching', false, 'crash', 'undo-before-switch'],
  ['switching', true, 'crash', 'roll-forward'],
  ['switching', false, 'failure', 'undo-before-switch'],
  ['switching', true, 'failure', 'roll-back'],
  // `switched` is written after the link: current names the new snapshot whatever the link says later
  ['switched', false, 'crash', 'roll-forward'],
  ['switched', true, 'crash', 'roll-forward'],
  ['switched', false, 'failure', 'roll-back'],
  ['switched', true, 'failure', 'roll-back'],
  ['rolling-back', false, 'crash', 'finish-rollback'],
  ['rolling-back', true, 'crash', 'finish-rollback'],
  ['rolling-back', false, 'failure', 'roll-back'],
  ['rolling-back', true, 'failure', 'roll-back'],
];

for (const [phase, currentIsTarget, cause, action] of table) {
  const current = currentIsTarget ? 'is' : 'is not';
  test(`recovery: journal ${phase ?? 'none'}, current ${current} the new snapshot, ${cause} -> ${action}`, () => {
    assert.equal(recoveryFor(phase, currentIsTarget, cause), action);
  });
}

test('recovery: the table has one row for every phase x currentIsTarget x cause, and no other', () => {
  const key = (phase: Phase | null, currentIsTarget: boolean, cause: RecoveryCause) =>
    `${phase} ${currentIsTarget} ${cause}`;
  const causes: RecoveryCause[] = ['crash', 'failure'];
  const all = [null, ...phaseNames].flatMap((phase) =>
    [false, true].flatMap((currentIsTarget) => causes.map((cause) => key(phase, currentIsTarget, cause))),
  );
  const rows = table.map(([phase, currentIsTarget, cause]) => key(phase, currentIsTarget, cause));
  assert.deepEqual(rows.sort(), all.sort());
});

test('recovery: along the ordered phases, the place against the switch never goes back', () => {
  const order: SwitchSide[] = ['before-switch', 'at-switch', 'after-switch', 'rolling-back'];
  const places = journalPhases.map(([, side]) => order.indexOf(side));
  assert.deepEqual(
    places,
    [...places].sort((a, b) => a - b),
    JSON.stringify(journalPhases),
  );
  // nothing after the switch is ever undone back to the old state by a restart
  for (const [phase, side] of journalPhases) {
    if (order.indexOf(side) > order.indexOf('at-switch')) {
      assert.notEqual(recoveryFor(phase, true, 'crash'), 'undo-before-switch', phase);
      assert.notEqual(recoveryFor(phase, false, 'crash'), 'undo-before-switch', phase);
    }
  }
});

test("recovery: README's recovery table names the same phases, in order, with the same action at start", () => {
  const readme = readFileSync(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../README.md'), 'utf8');
  const rows = readme.split('\n').filter((line) => line.startsWith('| installer | '));
  const journalRows = rows.filter((line) => /^\| installer \| journal `/.test(line));
  const phasesInReadme = journalRows.map((line) => /journal `([\w-]+)`/.exec(line)![1]);
  assert.deepEqual(phasesInReadme, phaseNames, 'one row per phase, in order');
  const expectations: Array<[string, Phase | null]> = [
    [rows.find((line) => line.includes('with no journal yet'))!, null],
    ...journalRows.map((line, index): [string, Phase] => [line, phaseNames[index]]),
  ];
  for (const [line, phase] of expectations) {
    const actionCell = line.split(' | ')[2];
    const named = [...actionCell.matchAll(/\*\*([^*]+)\*\*/g)].map((m) => m[1]);
    for (const currentIsTarget of [false, true]) {
      const label = recoveryLabel[recoveryFor(phase, currentIsTarget, 'crash')];
      assert.ok(named.includes(label), `the row of ${phase ?? 'no journal'} names "${label}": ${line}`);
    }
  }
  const bound = rows.find((line) => line.includes('RECOVERY_ABANDONED'));
  assert.ok(bound?.includes(`started ${MAX_RECOVERY_ATTEMPTS} times`), `the bound on recoveries: ${bound}`);
});

test('recovery: a journal phase never goes back along journalPhases (what recoveryFor relies on)', () => {
  const journal = (phase: Phase) => testJournal({ phase, fromDir: 'v1.0.0' });
  for (const [fromIndex, from] of phaseNames.entries()) {
    for (const [toIndex, to] of phaseNames.entries()) {
      if (toIndex >= fromIndex) {
        assert.deepEqual(
          advancePhase(journal(from), to, { error: 'e' }),
          { ...journal(to), error: 'e' },
          `${from} → ${to}`,
        );
      } else {
        assert.throws(() => advancePhase(journal(from), to), /phases only go forward/, `${from} → ${to}`);
      }
    }
  }
});
