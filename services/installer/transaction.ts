import path from 'node:path';
import type { Config } from '../../shared/config.js';
import { UpdaterError, wireOf } from '../../shared/errors.js';
import { failpoint } from '../../shared/failpoint.js';
import { LatestOnly } from '../../shared/latest-only.js';
import type { Logger } from '../../shared/log.js';
import type { Backups } from './backups.js';
import { withBoundedWork } from './bounded-work.js';
import { advancePhase, type Journal, type Phase } from './journal.js';
import type { Manifest, Placement } from './manifest.js';
import type { PackageArchive } from '../../shared/package-archive.js';
import { expectationOf } from '../../shared/trust/package-trust.js';
import { holdInPlace, placeHeld, removeDurably } from './held-files.js';
import { joinPlain } from './plain-paths.js';
import type { PostCmdRunner } from './post-cmds.js';
import { linkBackUntouched, outlastCopies, privatizeShared, type PrivateCopy } from './private-files.js';
import { checkDestination, checkDestinations, type SeenDirectories } from './safe-paths.js';
import { stagingPercent, step, type StepProgress } from './steps.js';
import type { Units } from './units.js';
import { versionOfDir, type VersionStore } from './versions.js';

export interface TransactionContext {
  log: Logger;
  versions: VersionStore;
  units: Units;
  backups: Backups;
  /** In-place files extracted (and checked) here while staging, so a bad one is refused before anything live changes. */
  heldDir: string;
  /** Each post_cmd's own deadline; the one from the first unit's stop to the switch, everything together. */
  limits: Pick<Config, 'TOPE_POST_CMD_TIMEOUT_MS' | 'TOPE_UNITS_STOPPED_MAX_MS'>;
  postCmds: PostCmdRunner;
  hostPath: (devicePath: string) => string;
  /** Persists the journal. */
  journal: (journal: Journal) => Promise<void>;
  progress: (at: StepProgress) => Promise<void>;
}

/** What one rollback level did: `reached` the version it runs now, or the `error` that stopped it. */
export interface RollbackLevel {
  level: 1 | 2;
  reached: string | null;
  error: string | null;
}

/** A rollback's end: the version the device runs (null: both levels failed) and each level tried. */
export interface RollbackResult {
  reached: string | null;
  levels: RollbackLevel[];
}

/** A level's outcome as the `error` field names it ("ROLLBACK_LEVEL_1_SUCCESS: 1.0.0"). */
export const levelText = ({ level, reached, error }: RollbackLevel): string =>
  reached !== null ? `ROLLBACK_LEVEL_${level}_SUCCESS: ${reached}` : `ROLLBACK_LEVEL_${level}_FAILED: ${error}`;

const wire = (e: unknown) => wireOf(e, 'DEPLOYMENT_FAILED');

/** Files up to this size are staged several at once; a larger one alone (its two read buffers are up to 2 x 256 KiB). */
const STAGED_TOGETHER_MAX_BYTES = 64 * 1024;

/**
 * One install, step by step, each step journaled before it changes the device. Up to the switch
 * of `current`, a failure undoes everything; after it, the rollback goes to previous, then factory.
 */
export class Transaction {
  /** The staged files the post_cmds got as private copies, for the link-back after they succeed. */
  private privateCopies: PrivateCopy[] = [];
  /** When the first unit stopped (null: none yet, or a recovery): the units-stopped deadline runs from it. */
  private stoppedAt: number | null = null;

  constructor(
    private readonly context: TransactionContext,
    private recorded: Journal,
    private readonly now: () => number = Date.now,
  ) {}

  /** The journal as last persisted. */
  get journal(): Journal {
    return this.recorded;
  }

  private async record(journal: Journal): Promise<void> {
    this.recorded = journal;
    await this.context.journal(journal);
  }

  /** Every phase is written here, only forward (advancePhase); `patch`, what is recorded with it. */
  private phase(phase: Phase, patch: Partial<Journal> = {}): Promise<void> {
    return this.record(advancePhase(this.recorded, phase, patch));
  }

  /** Stage the snapshot while services run, stop them, place in-place files, post_cmds, switch. */
  async forward(
    archive: PackageArchive,
    manifest: Manifest,
    placements: Placement[],
    removals: string[] = [],
  ): Promise<void> {
    // no destination through a symlink already on the device, checked before anything changes
    const { hostPath, versions } = this.context;
    const snapshot = this.recorded.fromDir && versions.pathOf(this.recorded.fromDir);
    await checkDestinations(placements, removals, { hostPath, snapshot });
    await this.record(this.recorded);
    failpoint('installer.journal-begun');
    await this.stageSnapshot(
      archive,
      placements,
      manifest.modules.some((m) => m.post_cmds?.length),
    );
    await this.stopUnits();
    await this.placeInPlace(placements, removals);
    await this.runPostCmds(manifest);
    await this.switchCurrent();
  }

  /**
   * The new snapshot, built beside the running one (hard links to it, then the package's files).
   * With post_cmds to run, its files still shared with other snapshots become private copies
   * (private-files.ts), while the units still run.
   */
  private async stageSnapshot(archive: PackageArchive, placements: Placement[], postCmds: boolean): Promise<void> {
    const { versions } = this.context;
    const staging = await versions.stage(this.recorded.fromDir, this.recorded.stagingDir);
    const count = placements.length;
    let reported = -1;
    const written: string[] = []; // fsynced together by finalize, before anything can name the snapshot
    const seen: SeenDirectories = new Set(); // only the installer changes the staging tree
    // the progress record written while files are, newest figure only: a figure that comes while
    // a write runs waits, a newer one takes its place. The staging never waits for a record's two
    // fsyncs (it did, 50 times in a package of 1000 files), stops if a write failed, and leaves
    // none under way when it returns or throws (an undo writes the record too).
    const progressRecord = new LatestOnly(this.context.progress);
    const stopIfRecordFailed = () => {
      if (progressRecord.failure) throw progressRecord.failure.error;
    };
    try {
      // several files at once: nothing names the staging tree before finalize, and nothing is
      // left under way when this returns or throws (BoundedWork), so the order they end in is moot
      await withBoundedWork(async (work) => {
        for (const [index, placement] of placements.entries()) {
          // a figure per percent, not per module: a package of 1000 files offers 50
          const percent = stagingPercent(index, count);
          stopIfRecordFailed();
          if (percent !== reported)
            progressRecord.push({ ...step('staging', placement.module.name, index + 1, count), percent });
          reported = percent;
          // each file's size and SHA-256 are checked as it is written; in-place ones wait in heldDir
          const stageOne = async () => {
            if (placement.kind === 'snapshot') {
              const dest = joinPlain(staging, placement.rel); // both normalized (manifest.ts)
              await checkDestination(staging, dest, 'staged', placement.module.dst, seen);
              await archive.extractTo(placement.module.src, dest, expectationOf(placement.module), {
                sync: false,
                // found a directory by the check just now: made by an earlier file, or there in `current`
                parentExists: seen.has(path.dirname(dest)),
              });
              written.push(dest);
            } else await holdInPlace(archive, placement, this.heldPath(index));
            failpoint('installer.module-staged');
          };
          // a large file alone: its read buffers beside others' would raise the installer's peak
          await work.start(stageOne, { alone: placement.module.size > STAGED_TOGETHER_MAX_BYTES });
        }
      });
    } finally {
      await progressRecord.idle();
    }
    stopIfRecordFailed();
    if (postCmds) {
      this.privateCopies = await privatizeShared(staging);
      const ownerNotKept = this.privateCopies.filter((c) => !c.ownerKept).map((c) => c.rel);
      if (ownerNotKept.length)
        this.context.log.warn(
          { files: ownerNotKept.slice(0, 20), count: ownerNotKept.length },
          'private copies owned by the installer (no CAP_CHOWN)',
        );
      failpoint('installer.private-copies-made');
    }
    await versions.finalize(this.recorded.stagingDir, this.recorded.targetDir, written);
    failpoint('installer.snapshot-finalized');
  }

  /** From here the device is changed: the journal says so before the first unit stops. */
  private async stopUnits(): Promise<void> {
    await this.context.progress(step('stopping'));
    await this.phase('stopping');
    for (const unit of [...this.recorded.units].reverse()) {
      this.stoppedAt ??= this.now();
      await this.context.units.stop(unit);
      failpoint('installer.unit-stopped');
      this.checkStoppedDeadline(`stopping ${unit}`);
    }
  }

  /** What is left of the units-stopped deadline (Infinity before any unit stopped). */
  private stoppedLeftMs(): number {
    return this.stoppedAt === null
      ? Infinity
      : this.stoppedAt + this.context.limits.TOPE_UNITS_STOPPED_MAX_MS - this.now();
  }

  private stoppedTooLong(during: string): UpdaterError {
    return new UpdaterError(
      'UNITS_STOPPED_TOO_LONG',
      `the units were stopped for more than ${this.context.limits.TOPE_UNITS_STOPPED_MAX_MS} ms before the switch (during ${during}); the install is undone`,
    );
  }

  private checkStoppedDeadline(during: string): void {
    if (this.stoppedLeftMs() <= 0) throw this.stoppedTooLong(during);
  }

  /** The held in-place files over their destinations, then the key files a rotation retires; each backed up first. */
  private async placeInPlace(placements: Placement[], removals: string[]): Promise<void> {
    for (const [index, placement] of placements.entries()) {
      if (placement.kind !== 'in-place') continue;
      const dst = this.context.hostPath(placement.dst);
      // again, now that the units are stopped: a symlink made since the first look is refused too
      await checkDestination(this.context.hostPath(placement.root), dst, 'regular-or-absent', placement.dst);
      await this.backUp(dst);
      await placeHeld(this.heldPath(index), dst);
      failpoint('installer.in-place-written');
      this.checkStoppedDeadline(`placing ${placement.dst}`);
    }
    for (const removal of removals) {
      const dst = this.context.hostPath(removal);
      await this.backUp(dst);
      await removeDurably(dst);
    }
  }

  private heldPath(index: number): string {
    return path.join(this.context.heldDir, String(index));
  }

  /**
   * Each post_cmd under its own timeout, cut to what is left of the units-stopped deadline; they
   * write only the new snapshot's private copies (stageSnapshot), and the copies none of them
   * touched are linked back to the running snapshot's files afterwards.
   */
  private async runPostCmds(manifest: Manifest): Promise<void> {
    const { versions } = this.context;
    const postCmdTimeoutMs = this.context.limits.TOPE_POST_CMD_TIMEOUT_MS;
    const dir = versions.pathOf(this.recorded.targetDir);
    await outlastCopies(this.privateCopies);
    for (const module of manifest.modules) {
      for (const cmd of module.post_cmds ?? []) {
        await this.context.progress(step('postCmds', module.name));
        const env = { TOPE_VERSION: this.recorded.version, TOPE_VERSION_DIR: dir };
        const left = this.stoppedLeftMs();
        if (left <= 0) throw this.stoppedTooLong(`the post_cmds of ${module.name}`);
        try {
          await this.context.postCmds.run(cmd, dir, Math.min(postCmdTimeoutMs, left), env);
        } catch (e) {
          // cut by the deadline of the whole stop, not by its own: the code says which
          if (e instanceof UpdaterError && e.code === 'POST_CMD_TIMEOUT' && left < postCmdTimeoutMs)
            throw this.stoppedTooLong(`'${cmd}' of ${module.name}, cut after ${Math.round(left)} ms`);
          throw e;
        }
        failpoint('installer.post-cmd-done');
      }
    }
    if (!manifest.modules.some((m) => m.post_cmds?.length)) return;
    let linkedBack = new Set<string>();
    if (this.recorded.fromDir && this.privateCopies.length) {
      linkedBack = await linkBackUntouched(dir, versions.pathOf(this.recorded.fromDir), this.privateCopies);
      this.context.log.info(
        { copies: this.privateCopies.length, linkedBack: linkedBack.size },
        'private copies linked back',
      );
    }
    failpoint('installer.linked-back');
    // the post_cmds wrote into the snapshot after it was made durable: again, before the switch
    await versions.syncFiles(this.recorded.targetDir, linkedBack);
  }

  private async switchCurrent(): Promise<void> {
    const { versions } = this.context;
    await this.context.progress(step('switching', this.recorded.version));
    this.checkStoppedDeadline('the switch');
    await this.phase('switching');
    if (this.recorded.fromDir) await versions.setLink('previous', this.recorded.fromDir);
    failpoint('installer.previous-linked');
    await versions.setLink('current', this.recorded.targetDir);
    failpoint('installer.current-linked');
    await this.phase('switched');
  }

  /** Start the units in restart_order, then hold them on probation. */
  async bringUp(): Promise<void> {
    const baseline = new Map<string, number>();
    const { units } = this.recorded;
    for (const [index, unit] of units.entries()) {
      await this.context.progress(step('starting', unit, index + 1, units.length));
      baseline.set(unit, await this.context.units.start(unit));
      failpoint('installer.unit-started');
    }
    if (baseline.size) {
      await this.context.progress(step('probation'));
      failpoint('installer.probation-begun');
      await this.context.units.probation(baseline);
    }
  }

  /** Whether `current` already names the new snapshot (a crash can fall inside the switch). */
  async currentIsTarget(): Promise<boolean> {
    return (await this.context.versions.target('current')) === this.recorded.targetDir;
  }

  /** Failure before the switch: the device goes back to exactly how it was. Returns what went wrong on the way. */
  async undoBeforeSwitch(): Promise<string[]> {
    const problems: string[] = [];
    await this.context.backups.restore(this.recorded.backups);
    failpoint('installer.undo-restored');
    // a cut between the switch's two links leaves `previous` on the running snapshot: put it back,
    // or the one it named is named by nothing. If that fails, the units are still started
    await this.context.versions
      .restoreLink('previous', this.recorded.previousBefore)
      .catch((e: unknown) => problems.push(UpdaterError.from(e, 'DEPLOYMENT_FAILED', 'previous not restored: ').wire));
    await this.context.versions.discard(this.recorded.targetDir);
    await this.context.versions.sweep();
    for (const unit of this.recorded.units) {
      try {
        await this.context.units.start(unit);
      } catch (e) {
        problems.push(wire(e));
      }
    }
    return problems;
  }

  /** Failure after the switch, for `error`: previous, then factory, each health-checked. */
  async rollBack(error: string): Promise<RollbackResult> {
    await this.phase('rolling-back', { error });
    const levels: RollbackLevel[] = [];
    const candidates: Array<[1 | 2, string | null, string]> = [
      [1, this.recorded.fromDir, 'no previous version'],
      [2, await this.context.versions.target('factory'), 'no factory version'],
    ];
    for (const [level, dir, missing] of candidates) {
      if (!dir) {
        levels.push({ level, reached: null, error: missing });
        continue;
      }
      try {
        await this.rollBackTo(level, dir);
        levels.push({ level, reached: versionOfDir(dir), error: null });
        failpoint('installer.rollback-healthy');
        await this.context.versions.discard(this.recorded.targetDir);
        return { reached: versionOfDir(dir), levels };
      } catch (e) {
        levels.push({ level, reached: null, error: wire(e) });
      }
    }
    return { reached: null, levels };
  }

  private async rollBackTo(level: 1 | 2, dir: string): Promise<void> {
    const { units, versions, log } = this.context;
    await this.context.progress(step('rollingBack', versionOfDir(dir)));
    for (const unit of [...this.recorded.units].reverse()) {
      await units.stop(unit).catch((e) => log.warn({ unit, err: wire(e) }, 'stop during rollback failed'));
    }
    failpoint('installer.rollback-stopped');
    await this.context.backups.restore(this.recorded.backups);
    await versions.setLink('current', dir);
    failpoint('installer.rollback-linked');
    if (level === 1) await versions.restoreLink('previous', this.recorded.previousBefore);
    await this.bringUp();
  }

  /** Copies a live file aside before it is replaced, and journals it before the file changes. */
  private async backUp(dst: string): Promise<void> {
    if (this.recorded.backups.some((entry) => entry.dst === dst)) return;
    const entry = await this.context.backups.take(dst, this.recorded.backups.length);
    await this.record({ ...this.recorded, backups: [...this.recorded.backups, entry] });
  }
}
