import * as z from '../../shared/schema.js';
import { versionOfDir } from '../../shared/version-dirs.js';
import { installerRecordSchema } from '../../shared/worker-records.js';

/**
 * Where a phase stands against the switch of `current`, the one step an install cannot take back
 * by restoring what it saved: before it an undo restores the old state; after it the device runs
 * the new snapshot and only a rollback (previous, then factory) may leave it.
 */
export type SwitchSide = 'before-switch' | 'at-switch' | 'after-switch' | 'rolling-back';

/**
 * The journal phases in the order an install passes through them, each placed against the switch.
 * A new phase cannot be added without its place, and its place decides its recovery (recoveryFor).
 * The places never go back along the list (a test holds that).
 */
export const journalPhases = [
  ['staging', 'before-switch'], // a staging tree or new snapshot, nothing live
  ['stopping', 'before-switch'], // units stopped, in-place files replaced, post_cmds run
  ['switching', 'at-switch'], // `current` may name the new snapshot
  ['switched', 'after-switch'], // `current` names the new snapshot
  ['rolling-back', 'rolling-back'], // part of a rollback
] as const satisfies ReadonlyArray<readonly [string, SwitchSide]>;

export type Phase = (typeof journalPhases)[number][0];
export const phaseNames = journalPhases.map(([phase]) => phase) as [Phase, ...Phase[]];
export const switchSideOf = Object.fromEntries(journalPhases) as Record<Phase, SwitchSide>;

/** A restart that finds the journal (`crash`), or a step that failed while the installer runs (`failure`). */
export type RecoveryCause = 'crash' | 'failure';

/** What the installer does about an install that did not end by itself. */
export type RecoveryAction =
  /** nothing was changed: the install just ends failed */
  | 'fail'
  /** restore the backups, remove the new snapshot, start the units; failed */
  | 'undo-before-switch'
  /** the new version is in place, only its start was cut short: start the units, probation; success, or roll back */
  | 'roll-forward'
  /** previous, then factory, each health-checked; failed, naming each level */
  | 'roll-back'
  /** a rollback was cut short: run it again from level 1, with the error the journal kept */
  | 'finish-rollback';

/** Each action as README's recovery table names it (in bold), and as the log says it. */
export const recoveryLabel: Record<RecoveryAction, string> = {
  fail: 'fail',
  'undo-before-switch': 'undo before the switch',
  'roll-forward': 'roll forward',
  'roll-back': 'roll back',
  'finish-rollback': 'finish the rollback',
};

/**
 * The one decision for an install that did not end by itself: at start (`resume`) and when a
 * step fails (`undo`). `phase` null: no journal yet (the package was still being checked).
 * `currentIsTarget`: whether `current` names the new snapshot (a crash can fall inside the switch).
 * README's recovery table says the same; test/installer-recovery.test.ts pins every row.
 */
export function recoveryFor(phase: Phase | null, currentIsTarget: boolean, cause: RecoveryCause): RecoveryAction {
  if (phase === null) return 'fail';
  const side = switchSideOf[phase];
  switch (side) {
    case 'before-switch':
      return 'undo-before-switch';
    case 'at-switch':
      if (!currentIsTarget) return 'undo-before-switch';
      return cause === 'crash' ? 'roll-forward' : 'roll-back';
    case 'after-switch':
      return cause === 'crash' ? 'roll-forward' : 'roll-back';
    case 'rolling-back':
      return cause === 'crash' ? 'finish-rollback' : 'roll-back';
    default: {
      const undecided: never = side;
      throw new Error(`no recovery for ${String(undecided)}`);
    }
  }
}

/**
 * The install journal, persisted inside install.json before each step that changes the device,
 * so that a restart knows exactly what to undo or finish (README: "Recovery").
 */
export const journalSchema = z.object({
  phase: z.enum(phaseNames),
  version: z.string(),
  targetDir: z.string(),
  stagingDir: z.string(),
  fromDir: z.nullable(z.string()),
  previousBefore: z.nullable(z.string()),
  units: z.array(z.string()),
  backups: z.array(z.object({ dst: z.string(), backup: z.nullable(z.string()) })),
  error: z.nullable(z.string()),
  /** Recoveries started at a start of the installer, counted durably before each one runs. */
  recoveryAttempts: z._default(z.number().check(z.int(), z.minimum(0)), 0),
  /** The package's security_version: the floor rises to it once the probation succeeds (0 in older journals). */
  securityVersion: z._default(z.number().check(z.int(), z.minimum(0)), 0),
});
export type Journal = z.infer<typeof journalSchema>;

/**
 * The journal in its next phase, with `patch` recorded beside it. Phases only go forward along
 * journalPhases (staying is allowed): that order is what recoveryFor relies on, so a step that
 * would write an earlier phase is a bug, refused before anything is persisted.
 */
export function advancePhase(journal: Journal, phase: Phase, patch: Partial<Journal> = {}): Journal {
  if (phaseNames.indexOf(phase) < phaseNames.indexOf(journal.phase)) {
    throw new Error(`journal phase ${phase} after ${journal.phase}: phases only go forward`);
  }
  return { ...journal, ...patch, phase };
}

/**
 * A recovery that crashes the installer every time (a bug, a unit that takes the machine down)
 * would otherwise run again at every start for ever under Restart=on-failure: after this many
 * attempts the installer stops trying, reports RECOVERY_ABANDONED and leaves the device as it is.
 */
export const MAX_RECOVERY_ATTEMPTS = 5;
export const recoveryExhausted = (journal: Journal): boolean => journal.recoveryAttempts >= MAX_RECOVERY_ATTEMPTS;
export type BackupEntry = Journal['backups'][number];

export const installerStateSchema = z.extend(installerRecordSchema, { journal: z.nullable(journalSchema) });
export type InstallerState = z.infer<typeof installerStateSchema>;

/** The error of an install a restart found unfinished, from what its journal says (null: none yet). */
export function interruptedError(action: RecoveryAction, journal: Journal | null): string {
  const during = 'INSTALL_INTERRUPTED: the installer stopped during an install';
  switch (action) {
    case 'fail':
      return 'INSTALL_INTERRUPTED: the installer stopped before changing anything';
    case 'undo-before-switch': {
      const stays = journal?.fromDir ? `; the device stays on ${versionOfDir(journal.fromDir)}` : '';
      return `INSTALL_INTERRUPTED: the installer stopped before the switch to ${journal?.version}${stays}`;
    }
    case 'finish-rollback':
      return journal?.error ?? during; // the rollback's cause, kept in the journal
    case 'roll-forward': // only a failed start gives it an error, its own
    case 'roll-back':
      return during;
    default: {
      const undecided: never = action;
      throw new Error(`no error text for ${String(undecided)}`);
    }
  }
}
