import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Config } from '../../shared/config.js';
import { removeTreeDurably, type DurableJson } from '../../shared/durable-store.js';
import { wireOf } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { checkPackageContent } from '../../shared/package-check.js';
import { refuse, type Command, type Reply } from '../../shared/protocol.js';
import type { StatusPublisher } from '../../shared/status-publisher.js';
import * as statuses from '../../shared/status.js';
import type { Status } from '../../shared/status.js';
import type { fetcherRecordSchema } from '../../shared/worker-records.js';
import { Backups } from './backups.js';
import {
  interruptedError,
  recoveryExhausted,
  recoveryFor,
  recoveryLabel,
  type installerStateSchema,
  type InstallerState,
  type Journal,
  type RecoveryAction,
} from './journal.js';
import { checkUnits, planInstall, unitsInOrder } from './manifest.js';
import type { TrustSettings } from '../../shared/trust/package-trust.js';
import type { SecurityFloor } from '../../shared/trust/security-floor.js';
import type { PostCmdRunner } from './post-cmds.js';
import { recoveringMessage, step } from './steps.js';
import { levelText, Transaction, type TransactionContext } from './transaction.js';
import type { OtaGui } from './ota-gui.js';
import type { Units } from './units.js';
import type { VersionStore } from './versions.js';
import { failpoint } from '../../shared/failpoint.js';
import { offeredPackage, openFetchedPackage } from './package-source.js';

export interface InstallerDeps {
  config: Config;
  log: Logger;
  store: DurableJson<typeof installerStateSchema>;
  fetcherStore: DurableJson<typeof fetcherRecordSchema>;
  versions: VersionStore;
  units: Units;
  /** Runs each post_cmd in its sandbox. */
  postCmds: PostCmdRunner;
  /** The installer's own directory: backups and held in-place files of the install under way. */
  workDir: string;
  /** The fetcher's packages directory: the only place a package is read from (package-source.ts). */
  packagesDir: string;
  hostPath: (devicePath: string) => string;
  /** Reports and the busy marker: up from the install command until the install is over and reported. */
  publisher: StatusPublisher;
  notify: (text: string) => void;
  gui: OtaGui;
  /** What the device trusts; checked again here on the file the installer reads, whatever the fetcher said. */
  trust: TrustSettings;
  floor: SecurityFloor;
  now?: () => number;
}

const empty: InstallerState = { seq: 0, version: '', status: statuses.idle(), journal: null };
const wire = (e: unknown) => wireOf(e, 'DEPLOYMENT_FAILED');

/** Owns install.json and the versions tree: takes install commands, one at a time, and recovers at start. */
export class Installer {
  private state: InstallerState = empty;
  private running: Promise<void> | null = null;

  constructor(private readonly deps: InstallerDeps) {}

  get busy(): boolean {
    return this.running !== null;
  }

  get current(): InstallerState {
    return this.state;
  }

  async settled(): Promise<void> {
    await this.running;
    await this.deps.gui.asked(); // the process does not end before ota-gui's start was asked for
  }

  async handle(command: Command): Promise<Reply> {
    if (command.type !== 'install')
      return refuse('VALIDATION_ERROR', `the installer does not take ${command.type} commands`);
    if (this.running && this.state.status.stage === 'installing') {
      return command.version === this.state.version
        ? { ok: true }
        : refuse('OPERATION_IN_PROGRESS', `installing ${this.state.version}`);
    }
    // the last one has its end written and is only reporting it: the new one waits for that
    await this.running;
    const { journal } = this.state;
    if (journal && recoveryExhausted(journal)) {
      const abandoned = `the recovery of the interrupted install of ${journal.version} was abandoned; the device needs manual intervention`;
      return refuse('OPERATION_IN_PROGRESS', abandoned);
    }
    if (journal) {
      // an undo that failed keeps its journal for the next start; a new install must not replace it
      const pending = `the interrupted install of ${journal.version} is not undone yet; it is retried when the installer restarts`;
      return refuse('OPERATION_IN_PROGRESS', pending);
    }
    const now = this.deps.now?.() ?? Date.now();
    const offered = offeredPackage(await this.deps.fetcherStore.read(), command.version, now, this.deps.config);
    if (typeof offered !== 'string') return offered;
    const accepted = step('accepted', command.version);
    const status = statuses.installing(accepted.percent, accepted.message);
    this.state = { seq: command.seq, version: command.version, journal: null, status };
    await this.persist();
    failpoint('installer.install-recorded');
    this.running = this.install(command.seq, command.version, offered).finally(() => {
      this.running = null;
    });
    return { ok: true };
  }

  /** The recovery table's installer rows (recoveryFor in journal.ts), at start. */
  async recover(): Promise<void> {
    this.state = (await this.deps.store.read()) ?? empty;
    const journal = this.state.journal;
    // the backups in workDir are what an undo restores; package.zip is a copy of the package that
    // installers before reading it in place made there, worthless now
    await removeTreeDurably(journal ? path.join(this.deps.workDir, 'package.zip') : this.deps.workDir);
    if (!journal) {
      await this.deps.versions.sweep();
      if (this.state.status.stage === 'installing') await this.conclude(null);
      else await this.deps.publisher.reportAgainIfLeft(this.state.status, this.state.seq);
      return;
    }
    if (recoveryExhausted(journal)) return this.abandon(journal);
    this.deps.log.warn({ journal }, 'recovering an interrupted install');
    // the printer's screen shows the recovery as it showed the install (a power cut ended that GUI)
    this.deps.gui.start();
    // counted before it runs: an attempt that crashes the installer counts all the same
    const attempt = { ...journal, recoveryAttempts: journal.recoveryAttempts + 1 };
    const status = statuses.installing(this.state.status.progress, recoveringMessage(journal.version));
    this.state = { ...this.state, journal: attempt, status };
    await this.persist();
    this.running = this.conclude(new Transaction(this.context(), attempt))
      .catch(async (e) => {
        this.deps.log.fatal({ err: wire(e) }, 'recovery failed');
        const journalNow = this.state.journal;
        if (journalNow && recoveryExhausted(journalNow)) return this.abandon(journalNow);
        // the journal stays: the next start tries again; until then the status says so
        const message = 'Update failed; recovery incomplete, retried at next start';
        const status = statuses.failed(`INSTALL_INTERRUPTED: ${wire(e)}`, message, this.state.status.progress);
        this.state = { ...this.state, status };
        await this.persist();
      })
      .finally(() => {
        this.running = null;
      });
  }

  /**
   * The recovery ran out of attempts: failed with RECOVERY_ABANDONED, and nothing more is done.
   * The journal and the backups stay for whoever repairs the device; installs are refused.
   */
  private async abandon(journal: Journal): Promise<void> {
    const error =
      `RECOVERY_ABANDONED: the recovery of the install of ${journal.version} (journal phase ${journal.phase}) ` +
      `did not finish in ${journal.recoveryAttempts} attempts; the device is left as it is`;
    // reported even after a newer command elsewhere: someone must repair the device, and installs stay refused
    if (this.state.status.error === error) return this.deps.publisher.reportAgainIfLeft(this.state.status, null);
    this.deps.log.fatal({ journal }, 'recovery abandoned');
    const message = 'Update failed; recovery abandoned - manual intervention required';
    this.state = { ...this.state, status: statuses.failed(error, message, this.state.status.progress) };
    await this.persist();
  }

  /**
   * Ends an install that did not end by itself, as recoveryFor decides: after a step failed
   * (`failure`, its error) or, without one, after a restart found it unfinished.
   */
  private async conclude(tx: Transaction | null, failure?: string): Promise<void> {
    const journal = tx?.journal ?? null;
    const cause = failure === undefined ? 'crash' : 'failure';
    const action = recoveryFor(journal?.phase ?? null, tx ? await tx.currentIsTarget() : false, cause);
    if (journal)
      this.deps.log.warn({ phase: journal.phase, cause, action: recoveryLabel[action] }, 'ending the install');
    const error = failure ?? interruptedError(action, journal);
    const started = (): Transaction => {
      if (!tx) throw new Error(`${action} needs the journal of the install`);
      return tx;
    };
    switch (action) {
      case 'fail':
        return this.finish(statuses.failed(error, 'Update failed', this.state.status.progress));
      case 'undo-before-switch': {
        const problems = await started().undoBeforeSwitch();
        return this.finish(
          statuses.failed([error, ...problems].join('; '), 'Update failed', this.state.status.progress),
        );
      }
      case 'roll-forward':
        try {
          await started().bringUp(); // the new version is in place, only its start was cut short
          return await this.succeed(started().journal);
        } catch (e) {
          return await this.rollBack(started(), wire(e));
        }
      case 'roll-back':
        return this.rollBack(started(), error);
      case 'finish-rollback':
        return this.rollBack(started(), error);
      default: {
        const undecided: never = action;
        throw new Error(`no handling for ${String(undecided)}`);
      }
    }
  }

  private context(): TransactionContext {
    return {
      log: this.deps.log,
      versions: this.deps.versions,
      units: this.deps.units,
      backups: new Backups(path.join(this.deps.workDir, 'backups')),
      heldDir: path.join(this.deps.workDir, 'held'),
      limits: this.deps.config,
      postCmds: this.deps.postCmds,
      hostPath: this.deps.hostPath,
      journal: async (journal) => {
        this.state = { ...this.state, journal };
        await this.deps.store.write(this.state);
      },
      progress: ({ percent, message }) => this.progress(percent, message),
    };
  }

  /**
   * The install, read straight from the fetcher's package: opened once (package-source.ts), its
   * signed manifest checked through the one trust path, each file's size and SHA-256 checked as
   * it is extracted. The job's whole-package MD5/SHA-256 are not checked again here: they come
   * from the fetcher's own record, so a fetcher able to change the file could change them too,
   * while the signature covers every byte used (README, "Trust").
   */
  private async install(seq: number, version: string, packageFile: string): Promise<void> {
    let tx: Transaction | null = null;
    try {
      this.deps.gui.start();
      const verifying = step('verifying');
      await this.progress(verifying.percent, verifying.message);
      const limits = {
        maxBytes: this.deps.config.TOPE_ZIP_MAX_BYTES,
        maxEntries: this.deps.config.TOPE_ZIP_MAX_ENTRIES,
      };
      const { archive, identity } = await openFetchedPackage(this.deps.packagesDir, packageFile, limits);
      failpoint('installer.package-opened');
      try {
        const trusted = await checkPackageContent(archive, this.deps.trust);
        this.deps.log.info(
          { version, signedBy: trusted.signedBy, security_version: trusted.manifest.security_version, identity },
          'package trusted',
        );
        failpoint('installer.package-trusted');
        const { manifest, placements, removals } = planInstall(trusted.manifest, version, archive.files, {
          allowedRoots: this.deps.config.TOPE_ALLOWED_ROOTS,
          versionsDir: this.deps.config.TOPE_VERSIONS_DIR,
          keysDir: this.deps.config.TOPE_TRUSTED_KEYS_DIR,
          trustedKeys: trusted.trustedKeys,
        });
        await checkUnits(manifest, this.deps.config.TOPE_MANAGED_UNITS, (unit) => this.deps.units.exists(unit));
        const { versions } = this.deps;
        const journal: Journal = {
          phase: 'staging',
          version,
          targetDir: await versions.freeDirName(version, seq),
          stagingDir: versions.stagingName(seq),
          fromDir: await versions.target('current'),
          previousBefore: await versions.target('previous'),
          units: unitsInOrder(manifest),
          backups: [],
          error: null,
          recoveryAttempts: 0,
          securityVersion: manifest.security_version,
        };
        tx = new Transaction(this.context(), journal);
        await tx.forward(archive, manifest, placements, removals);
      } finally {
        archive.close();
      }
      await tx.bringUp();
      await this.succeed(tx.journal);
    } catch (e) {
      this.deps.log.error({ err: wire(e), phase: tx?.journal.phase }, 'install failed');
      try {
        await this.conclude(tx, wire(e));
      } catch (undoError) {
        // the journal stays: the next start tries the undo again
        this.deps.log.fatal({ err: wire(undoError) }, 'undo failed');
        const message = 'Update failed; undo incomplete, retried at next start';
        const status = statuses.failed(`${wire(e)}; ${wire(undoError)}`, message, this.state.status.progress);
        this.state = { ...this.state, status };
        await this.persist();
      }
    }
  }

  private async rollBack(tx: Transaction, error: string): Promise<void> {
    const { reached, levels } = await tx.rollBack(error);
    const message =
      reached !== null
        ? `Update failed; rolled back to version ${reached}`
        : 'Both rollbacks failed - manual intervention required';
    await this.finish(
      statuses.failed([error, ...levels.map(levelText)].join('; '), message, this.state.status.progress),
    );
  }

  private async succeed({ version, securityVersion }: Journal): Promise<void> {
    // only now, after the probation: a package that failed it never raises the floor
    if (await this.deps.floor.raise(securityVersion, version))
      this.deps.log.info({ version, securityVersion }, 'security floor raised');
    failpoint('installer.floor-raised');
    const pruned = await this.deps.versions.prune();
    failpoint('installer.pruned');
    this.deps.log.info({ version, pruned }, 'install succeeded');
    await this.finish(statuses.succeeded(`Successfully installed version ${version}`));
  }

  /** The install's end (success or failed): the journal goes with it, then what it kept for an undo. */
  private async finish(status: Status): Promise<void> {
    this.state = { ...this.state, journal: null, status };
    await this.persist();
    // only now: until the journal is gone, an undo after a crash needs the backups in it
    await removeTreeDurably(this.deps.workDir);
    await this.deps.versions.sweep();
  }

  private async progress(percent: number, message: string): Promise<void> {
    const progress = Math.max(this.state.status.progress, percent);
    this.state = { ...this.state, status: statuses.installing(progress, message) };
    await this.persist();
  }

  private async persist(): Promise<void> {
    const state = this.state;
    const { stage, progress, message } = state.status;
    // a journal is work left for the next start, unless its recovery was given up
    const workLeft = state.journal !== null && !recoveryExhausted(state.journal);
    await this.deps.publisher.publish(state.status, stage === 'installing' || workLeft, () =>
      this.deps.store.write(state),
    );
    this.deps.notify(
      stage === 'installing' ? `Installing ${state.version}: ${progress}% ${message}` : `${stage}: ${message}`,
    );
  }
}
