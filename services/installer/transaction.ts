import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fsyncDir } from '../../shared/durable-store.js';
import { UpdaterError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import type { Journal } from './journal.js';
import type { Manifest, Placement } from './manifest.js';
import { partialName, type PackageArchive } from './package-archive.js';
import { runPostCmd } from './post-cmds.js';
import type { Units } from './units.js';
import { versionOfDir, type VersionStore } from './versions.js';
import { failpoint } from '../../shared/failpoint.js';

export interface TransactionContext {
  log: Logger;
  versions: VersionStore;
  units: Units;
  backupDir: string;
  postCmdTimeoutMs: number;
  hostPath: (devicePath: string) => string;
  /** Persists the journal (null: the transaction is over). */
  journal: (j: Journal | null) => Promise<void>;
  progress: (percent: number, message: string) => Promise<void>;
}

const message = (e: unknown) => (e instanceof UpdaterError ? e.wire : `DEPLOYMENT_FAILED: ${(e as Error).message}`);

/**
 * One install, step by step, each step journaled before it changes the device. Up to the switch
 * of `current`, a failure undoes everything; after it, the rollback goes to previous, then factory.
 */
export class Transaction {
  constructor(private readonly c: TransactionContext, public j: Journal) {}

  private async phase(phase: Journal['phase']): Promise<void> {
    this.j = { ...this.j, phase };
    await this.c.journal(this.j);
  }

  /** Stage the snapshot while services run, stop them, place in-place files, post_cmds, switch. */
  async forward(archive: PackageArchive, manifest: Manifest, placements: Placement[]): Promise<void> {
    const { versions } = this.c;
    await this.c.journal(this.j);
    failpoint('installer.journal-begun');
    const staging = await versions.stage(this.j.fromDir, this.j.stagingDir);
    const n = placements.length;
    let reported = -1;
    for (const [i, p] of placements.entries()) {
      // one durable write per percent, not per module: a package of 1000 files is 50 writes
      const percent = 10 + Math.floor((50 * i) / n);
      if (percent !== reported) await this.c.progress(percent, `Installing module ${p.module.name} (${i + 1}/${n})`);
      reported = percent;
      if (p.kind === 'snapshot') await archive.extractTo(p.module.src, path.join(staging, p.rel));
      failpoint('installer.module-staged');
    }
    await versions.finalize(this.j.stagingDir, this.j.targetDir);
    failpoint('installer.snapshot-finalized');

    await this.c.progress(60, 'Stopping services...');
    await this.phase('stopping');
    for (const unit of [...this.j.units].reverse()) {
      await this.c.units.stop(unit);
      failpoint('installer.unit-stopped');
    }

    for (const p of placements) {
      if (p.kind !== 'in-place') continue;
      const dst = this.c.hostPath(p.dst);
      await this.backUp(dst);
      await archive.extractTo(p.module.src, dst);
      failpoint('installer.in-place-written');
    }
    const dir = versions.pathOf(this.j.targetDir);
    for (const m of manifest.modules) {
      for (const cmd of m.post_cmds ?? []) {
        await this.c.progress(65, `Running post command of ${m.name}`);
        await runPostCmd(cmd, dir, this.c.postCmdTimeoutMs, { TOPE_VERSION: this.j.version, TOPE_VERSION_DIR: dir });
        failpoint('installer.post-cmd-done');
      }
    }
    // the post_cmds wrote into the snapshot after it was made durable: again, before the switch
    if (manifest.modules.some((m) => m.post_cmds?.length)) await versions.syncFiles(this.j.targetDir);

    await this.c.progress(70, `Switching to version ${this.j.version}...`);
    await this.phase('switching');
    if (this.j.fromDir) await versions.setLink('previous', this.j.fromDir);
    failpoint('installer.previous-linked');
    await versions.setLink('current', this.j.targetDir);
    failpoint('installer.current-linked');
    await this.phase('switched');
  }

  /** Start the units in restart_order, then hold them on probation. */
  async bringUp(percent = 75): Promise<void> {
    const baseline = new Map<string, number>();
    for (const [i, unit] of this.j.units.entries()) {
      await this.c.progress(percent, `Starting ${unit} (${i + 1}/${this.j.units.length})`);
      baseline.set(unit, await this.c.units.start(unit));
      failpoint('installer.unit-started');
    }
    if (baseline.size) {
      await this.c.progress(Math.max(percent, 85), 'Checking services...');
      failpoint('installer.probation-begun');
      await this.c.units.probation(baseline);
    }
  }

  /** Failure before the switch: the device goes back to exactly how it was. Returns what went wrong on the way. */
  async undoBeforeSwitch(): Promise<string[]> {
    const problems: string[] = [];
    await this.restoreBackups();
    failpoint('installer.undo-restored');
    await this.c.versions.discard(this.j.targetDir);
    await this.c.versions.sweep();
    for (const unit of this.j.units) {
      try {
        await this.c.units.start(unit);
      } catch (e) {
        problems.push(message(e));
      }
    }
    return problems;
  }

  /** Failure after the switch: previous, then factory, each health-checked. Returns each level's outcome. */
  async rollBack(): Promise<{ ok: boolean; outcomes: string[] }> {
    await this.phase('rolling-back');
    const outcomes: string[] = [];
    const levels: Array<[1 | 2, string | null, string]> = [
      [1, this.j.fromDir, 'no previous version'],
      [2, await this.c.versions.target('factory'), 'no factory version'],
    ];
    for (const [level, dir, missing] of levels) {
      if (!dir) {
        outcomes.push(`ROLLBACK_LEVEL_${level}_FAILED: ${missing}`);
        continue;
      }
      try {
        await this.c.progress(90, `Rolling back to version ${versionOfDir(dir)}...`);
        for (const unit of [...this.j.units].reverse()) await this.c.units.stop(unit).catch((e) => this.c.log.warn({ unit, err: message(e) }, 'stop during rollback failed'));
        failpoint('installer.rollback-stopped');
        await this.restoreBackups();
        await this.c.versions.setLink('current', dir);
        failpoint('installer.rollback-linked');
        if (level === 1) {
          if (this.j.previousBefore) await this.c.versions.setLink('previous', this.j.previousBefore);
          else await this.c.versions.removeLink('previous');
        }
        await this.bringUp(90);
        outcomes.push(`ROLLBACK_LEVEL_${level}_SUCCESS: ${versionOfDir(dir)}`);
        failpoint('installer.rollback-healthy');
        await this.c.versions.discard(this.j.targetDir);
        return { ok: true, outcomes };
      } catch (e) {
        outcomes.push(`ROLLBACK_LEVEL_${level}_FAILED: ${message(e)}`);
      }
    }
    return { ok: false, outcomes };
  }

  /** Copies a live file aside before it is replaced; restoring it is part of every undo. */
  private async backUp(dst: string): Promise<void> {
    if (this.j.backups.some((b) => b.dst === dst)) return;
    const exists = await fsp.stat(dst).then((s) => s.isFile(), () => false);
    let backup: string | null = null;
    if (exists) {
      await fsp.mkdir(this.c.backupDir, { recursive: true, mode: 0o700 });
      backup = path.join(this.c.backupDir, String(this.j.backups.length));
      await fsp.copyFile(dst, backup);
      failpoint('installer.backup-copied');
      const fh = await fsp.open(backup, 'r+');
      await fh.sync();
      await fh.close();
      await fsyncDir(this.c.backupDir);
    }
    this.j = { ...this.j, backups: [...this.j.backups, { dst, backup }] };
    await this.c.journal(this.j);
  }

  private async restoreBackups(): Promise<void> {
    for (const b of [...this.j.backups].reverse()) {
      await fsp.rm(partialName(b.dst), { force: true }); // an extraction cut short by a crash
      if (b.backup) {
        const tmp = `${b.dst}.tmp-restore`;
        await fsp.copyFile(b.backup, tmp);
        const fh = await fsp.open(tmp, 'r+');
        await fh.sync();
        await fh.close();
        await fsp.rename(tmp, b.dst);
        await fsyncDir(path.dirname(b.dst));
      } else {
        // the file did not exist before: remove what we put there, if we got that far
        const removed = await fsp.rm(b.dst).then(() => true, (e: NodeJS.ErrnoException) => {
          if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return false;
          throw e;
        });
        if (removed) await fsyncDir(path.dirname(b.dst));
      }
    }
  }
}

