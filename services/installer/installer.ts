import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Config } from '../../shared/config.js';
import type { DurableJson } from '../../shared/durable-store.js';
import { UpdaterError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import type { PackageJob } from '../../shared/package-job.js';
import { refuse, type Command, type Reply } from '../../shared/protocol.js';
import type { StatusPublisher } from '../../shared/status-publisher.js';
import type { fetcherRecordSchema } from '../../shared/worker-records.js';
import type { installerStateSchema, InstallerState, Journal } from './journal.js';
import { checkUnitsExist, planInstall, unitsInOrder } from './manifest.js';
import { PackageArchive } from './package-archive.js';
import { Transaction, type TransactionContext } from './transaction.js';
import type { Units } from './units.js';
import { versionOfDir, type VersionStore } from './versions.js';
import { failpoint } from '../../shared/failpoint.js';

export interface InstallerDeps {
  config: Config;
  log: Logger;
  store: DurableJson<typeof installerStateSchema>;
  fetcherStore: DurableJson<typeof fetcherRecordSchema>;
  versions: VersionStore;
  units: Units;
  workDir: string;
  hostPath: (devicePath: string) => string;
  /** Reports and the busy marker: up from the install command until the install is over and reported. */
  status: StatusPublisher;
  notify: (text: string) => void;
  startGui: () => void;
  now?: () => number;
}

const empty: InstallerState = { seq: 0, version: '', status: { stage: 'idle', progress: 0, message: 'Updater ready', error: null }, journal: null };
const wire = (e: unknown) => (e instanceof UpdaterError ? e.wire : `DEPLOYMENT_FAILED: ${(e as Error).message}`);

/** Owns install.json and the versions tree: takes install commands, one at a time, and recovers at start. */
export class Installer {
  private state: InstallerState = empty;
  private running: Promise<void> | null = null;

  constructor(private readonly d: InstallerDeps) {}

  get busy(): boolean {
    return this.running !== null;
  }

  get current(): InstallerState {
    return this.state;
  }

  async settled(): Promise<void> {
    await this.running;
  }

  async handle(command: Command): Promise<Reply> {
    if (command.type !== 'install') return refuse('VALIDATION_ERROR', `the installer does not take ${command.type} commands`);
    if (this.running && this.state.status.stage === 'installing') {
      return command.version === this.state.version ? { ok: true } : refuse('OPERATION_IN_PROGRESS', `installing ${this.state.version}`);
    }
    // the last one has its end written and is only reporting it: the new one waits for that
    await this.running;
    if (this.state.journal) {
      // an undo that failed keeps its journal for the next start; a new install must not replace it
      return refuse('OPERATION_IN_PROGRESS', `the interrupted install of ${this.state.journal.version} is not undone yet; it is retried when the installer restarts`);
    }
    const fetched = await this.d.fetcherStore.read();
    const job = fetched?.job;
    if (!fetched || !job || fetched.status.stage !== 'toInstall' || job.version !== command.version || !fetched.packageFile) {
      return refuse('PACKAGE_NOT_FOUND', `Package not found: ${command.version}`);
    }
    const now = this.d.now?.() ?? Date.now();
    if (fetched.verifiedAt && now - Date.parse(fetched.verifiedAt) > this.d.config.TOPE_TRUST_WINDOW_MS) {
      return refuse('PACKAGE_EXPIRED', 'Package expired (>24h after verification)');
    }
    this.state = { seq: command.seq, version: command.version, journal: null, status: { stage: 'installing', progress: 0, message: `Installing version ${command.version}...`, error: null } };
    await this.persist();
    failpoint('installer.install-recorded');
    this.running = this.install(command.seq, job, fetched.packageFile).finally(() => { this.running = null; });
    return { ok: true };
  }

  /** The recovery table's installer rows (see journal.ts). */
  async recover(): Promise<void> {
    this.state = (await this.d.store.read()) ?? empty;
    const j = this.state.journal;
    // the package copy is worthless now; the backups in workDir are what an undo restores
    await fsp.rm(j ? path.join(this.d.workDir, 'package.zip') : this.d.workDir, { recursive: true, force: true });
    if (!j) {
      await this.d.versions.sweep();
      if (this.state.status.stage === 'installing') await this.finish('failed', `INSTALL_INTERRUPTED: the installer stopped before changing anything`, 'Update failed');
      else await this.d.status.reportAgainIfLeft(this.state.status);
      return;
    }
    this.d.log.warn({ journal: j }, 'recovering an interrupted install');
    this.state = { ...this.state, status: { ...this.state.status, stage: 'installing', message: `Recovering the interrupted install of ${j.version}...` } };
    await this.persist();
    this.running = this.resume(new Transaction(this.context(), j))
      .catch(async (e) => {
        // the journal stays: the next start tries again; until then the status says so
        this.d.log.fatal({ err: wire(e) }, 'recovery failed');
        this.state = { ...this.state, status: { ...this.state.status, stage: 'failed', message: 'Update failed; recovery incomplete, retried at next start', error: `INSTALL_INTERRUPTED: ${wire(e)}` } };
        await this.persist();
      })
      .finally(() => { this.running = null; });
  }

  private async resume(tx: Transaction): Promise<void> {
    const j = tx.j;
    const switched = await this.switched(j);
    if (j.phase === 'rolling-back') return this.rollBack(tx, j.error ?? 'INSTALL_INTERRUPTED: the installer stopped during an install');
    if (!switched) {
      const problems = await tx.undoBeforeSwitch();
      const back = j.fromDir ? `; the device stays on ${versionOfDir(j.fromDir)}` : '';
      return this.finish('failed', [`INSTALL_INTERRUPTED: the installer stopped before the switch to ${j.version}${back}`, ...problems].join('; '), 'Update failed');
    }
    try {
      await tx.bringUp(); // roll forward: the new version is in place, only its start was cut short
      await this.succeed(tx.j.version);
    } catch (e) {
      await this.rollBack(tx, wire(e));
    }
  }

  private context(): TransactionContext {
    return {
      log: this.d.log, versions: this.d.versions, units: this.d.units,
      backupDir: path.join(this.d.workDir, 'backups'),
      postCmdTimeoutMs: this.d.config.TOPE_POST_CMD_TIMEOUT_MS,
      hostPath: this.d.hostPath,
      journal: async (j) => {
        this.state = { ...this.state, journal: j };
        await this.d.store.write(this.state);
      },
      progress: (p, m) => this.progress(p, m),
    };
  }

  private async install(seq: number, job: PackageJob, packageFile: string): Promise<void> {
    let tx: Transaction | null = null;
    try {
      this.d.startGui();
      await this.progress(5, 'Verifying package...');
      const copy = await this.takePackage(job, packageFile);
      failpoint('installer.package-copied');
      const archive = await PackageArchive.open(copy, { maxBytes: this.d.config.TOPE_ZIP_MAX_BYTES, maxEntries: this.d.config.TOPE_ZIP_MAX_ENTRIES });
      try {
        const { manifest, placements } = planInstall(await archive.readManifest(), job.version, archive.files,
          { allowedRoots: this.d.config.TOPE_ALLOWED_ROOTS, versionsDir: this.d.config.TOPE_VERSIONS_DIR });
        await checkUnitsExist(manifest, (unit) => this.d.units.exists(unit));
        const v = this.d.versions;
        const j: Journal = {
          phase: 'staging', version: job.version, targetDir: await v.freeDirName(job.version, seq), stagingDir: v.stagingName(seq),
          fromDir: await v.target('current'), previousBefore: await v.target('previous'),
          units: unitsInOrder(manifest), backups: [], error: null,
        };
        tx = new Transaction(this.context(), j);
        await tx.forward(archive, manifest, placements);
      } finally {
        archive.close();
      }
      await tx.bringUp();
      await this.succeed(job.version);
    } catch (e) {
      this.d.log.error({ err: wire(e), phase: tx?.j.phase }, 'install failed');
      try {
        await this.undo(tx, wire(e));
      } catch (undoError) {
        // the journal stays: the next start tries the undo again
        this.d.log.fatal({ err: wire(undoError) }, 'undo failed');
        this.state = { ...this.state, status: { ...this.state.status, stage: 'failed', message: 'Update failed; undo incomplete, retried at next start', error: `${wire(e)}; ${wire(undoError)}` } };
        await this.persist();
      }
    }
  }

  private async undo(tx: Transaction | null, error: string): Promise<void> {
    if (!tx) return this.finish('failed', error, 'Update failed');
    if ((await this.switched(tx.j)) || tx.j.phase === 'rolling-back') return this.rollBack(tx, error);
    const problems = await tx.undoBeforeSwitch();
    await this.finish('failed', [error, ...problems].join('; '), 'Update failed');
  }

  /** Whether `current` already names the new snapshot (a crash can fall inside the switch). */
  private async switched(j: Journal): Promise<boolean> {
    return j.phase === 'switched' || (j.phase === 'switching' && (await this.d.versions.target('current')) === j.targetDir);
  }

  private async rollBack(tx: Transaction, error: string): Promise<void> {
    tx.j = { ...tx.j, error };
    const { ok, outcomes } = await tx.rollBack();
    const message = ok ? `Update failed; rolled back to version ${outcomes.at(-1)!.split(': ')[1]}` : 'Both rollbacks failed - manual intervention required';
    await this.finish('failed', [error, ...outcomes].join('; '), message);
  }

  private async succeed(version: string): Promise<void> {
    const pruned = await this.d.versions.prune();
    failpoint('installer.pruned');
    this.d.log.info({ version, pruned }, 'install succeeded');
    await this.finish('success', null, `Successfully installed version ${version}`);
  }

  private async finish(stage: 'success' | 'failed', error: string | null, message: string): Promise<void> {
    this.state = { ...this.state, journal: null, status: { stage, progress: stage === 'success' ? 100 : this.state.status.progress, message, error } };
    await this.persist();
    // only now: until the journal is gone, an undo after a crash needs the backups in it
    await fsp.rm(this.d.workDir, { recursive: true, force: true });
    await this.d.versions.sweep();
  }

  private async progress(percent: number, message: string): Promise<void> {
    const progress = Math.max(this.state.status.progress, percent);
    this.state = { ...this.state, status: { stage: 'installing', progress, message, error: null } };
    await this.persist();
  }

  private async persist(): Promise<void> {
    const state = this.state;
    const { stage, progress, message } = state.status;
    await this.d.status.publish(state.status, stage === 'installing' || state.journal !== null, () => this.d.store.write(state));
    this.d.notify(stage === 'installing' ? `Installing ${state.version}: ${progress}% ${message}` : `${stage}: ${message}`);
  }

  /** Copies the verified package into the installer's own directory and checks its hashes there. */
  private async takePackage(job: PackageJob, packageFile: string): Promise<string> {
    await fsp.mkdir(this.d.workDir, { recursive: true, mode: 0o700 });
    const copy = path.join(this.d.workDir, 'package.zip');
    const md5 = createHash('md5');
    const sha = createHash('sha256');
    const hash = new Transform({ transform(c: Buffer, _e, cb) { md5.update(c); sha.update(c); cb(null, c); } });
    try {
      await pipeline(createReadStream(packageFile), hash, createWriteStream(copy, { mode: 0o600 }));
    } catch (e) {
      throw new UpdaterError('PACKAGE_NOT_FOUND', `cannot read the verified package: ${(e as Error).message}`);
    }
    const gotMd5 = md5.digest('hex');
    const gotSha = sha.digest('hex');
    if (gotMd5 !== job.package_md5) throw new UpdaterError('MD5_MISMATCH', `expected ${job.package_md5}, got ${gotMd5}`);
    if (job.package_sha256 && gotSha !== job.package_sha256) throw new UpdaterError('SHA256_MISMATCH', `expected ${job.package_sha256}, got ${gotSha}`);
    return copy;
  }
}
