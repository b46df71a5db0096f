import { promises as fsp } from 'node:fs';
import type { Dispatcher } from './http-client.js';
import type { Config } from '../../shared/config.js';
import type { DurableJson } from '../../shared/durable-store.js';
import { expiredText, UpdaterError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { sameJob, type PackageJob } from '../../shared/package-job.js';
import { refuse, type Command, type Reply } from '../../shared/protocol.js';
import * as statuses from '../../shared/status.js';
import { busyStages, clampPercent, type Status } from '../../shared/status.js';
import type { StatusPublisher, Superseded } from '../../shared/status-publisher.js';
import type { fetcherRecordSchema, FetcherRecord, Checkpoint } from '../../shared/worker-records.js';
import type { TrustSettings } from '../../shared/trust/package-trust.js';
import { freeBytes } from './disk.js';
import type { Digests } from '../../shared/package-check.js';
import { PackageFiles, stageRules } from './package-files.js';
import { transfer, type Position } from './transfer.js';
import { failpoint } from '../../shared/failpoint.js';

export interface FetcherDeps {
  config: Config;
  log: Logger;
  store: DurableJson<typeof fetcherRecordSchema>;
  packagesDir: string;
  dispatcher: Dispatcher;
  /** Reports and the busy marker: up while a download or verification is unfinished, and until its last report went out. */
  publisher: StatusPublisher;
  notify: (text: string) => void;
  bootId: () => string;
  /** What the device trusts: a package it would refuse fails here, at verifying, and is removed. */
  trust: TrustSettings;
  /** Whether the installer has recorded a newer command than `seq` (an install of this package, say). */
  superseded: Superseded;
  now?: () => Date;
  random?: () => number;
}

const emptyRecord: FetcherRecord = {
  seq: 0,
  status: statuses.idle(),
  job: null,
  checkpoint: null,
  verifiedAt: null,
  packageFile: null,
};

/** A checkpoint at least this often (and at every 5 % step): /progress moves at least as often as ota-gui polls. */
const CHECKPOINT_EVERY_MS = 500;

/**
 * Owns download.json and the packages directory: takes download commands, runs one download
 * at a time, and at start applies the recovery action of whatever it had persisted.
 */
export class Fetcher {
  private record: FetcherRecord = emptyRecord;
  private running: { job: PackageJob; controller: AbortController; done: Promise<void> } | null = null;
  private readonly now: () => Date;
  private readonly files: PackageFiles;
  private lastCheckpointAt = 0;

  constructor(private readonly deps: FetcherDeps) {
    this.now = deps.now ?? (() => new Date());
    this.files = new PackageFiles({
      dir: deps.packagesDir,
      log: deps.log,
      config: deps.config,
      trust: deps.trust,
      bootId: deps.bootId,
    });
  }

  get busy(): boolean {
    return this.running !== null;
  }

  get current(): FetcherRecord {
    return this.record;
  }

  /** Resolves when the download under way (if any) has ended. */
  async settled(): Promise<void> {
    await this.running?.done;
  }

  /** The recovery table's fetcher rows. */
  async recover(): Promise<void> {
    this.record = (await this.deps.store.read()) ?? emptyRecord;
    const { stage } = this.record.status;
    const job = this.record.job;
    await this.files.removeStray(job);
    // the installer may have acted on this package since (installed it, say): its record is then
    // the status /progress shows, and this package may be gone for good reason (a download after
    // the install clears it, and a cut can fall before that download's own record is written).
    // The record is still put right (an install command must not be offered a missing package),
    // but quietly: a report of it would contradict the status shown. Asked only where a record is
    // put right, so that a start with nothing to put right reads no other record.
    const report = async () => !(await this.deps.superseded(this.record.seq));
    if (job && stageRules[stage].underWay) {
      this.deps.log.info(
        { stage, version: job.version, checkpoint: this.record.checkpoint },
        'resuming the interrupted download',
      );
      this.deps.publisher.report(this.record.status);
      this.begin(job, this.record.checkpoint);
    } else if (job && stageRules[stage].holdsPackage) {
      if (this.expired()) {
        await this.discardPackage(
          this.record.seq,
          `${expiredText(this.deps.config.TOPE_TRUST_WINDOW_MS, job.version)} and was deleted`,
          await report(),
        );
      } else if (!(await this.files.present(this.record))) {
        await this.setStatus(
          statuses.failed('DOWNLOAD_FAILED: the verified package is missing; download it again', 'Download failed', 0),
          { job, checkpoint: null, verifiedAt: null, packageFile: null },
          await report(),
        );
      }
    }
    if (!this.running) await this.deps.publisher.reportAgainIfLeft(this.record.status, this.record.seq);
  }

  async handle(command: Command): Promise<Reply> {
    if (command.type === 'download') return this.startDownload(command.seq, command.job);
    if (command.type === 'discard') {
      if (this.running) return refuse('OPERATION_IN_PROGRESS', 'a download is running');
      await this.discardPackage(command.seq, command.reason);
      return { ok: true };
    }
    return refuse('VALIDATION_ERROR', `the fetcher does not take ${command.type} commands`);
  }

  /** Stops the download under way, leaving its state to be resumed at the next start. */
  async stop(): Promise<void> {
    this.running?.controller.abort(new Error('fetcher stopping'));
    await this.settled();
  }

  expired(): boolean {
    const at = this.record.verifiedAt;
    return !!at && this.now().getTime() - Date.parse(at) > this.deps.config.TOPE_TRUST_WINDOW_MS;
  }

  private async startDownload(seq: number, job: PackageJob): Promise<Reply> {
    const { stage } = this.record.status;
    if (this.running && stageRules[stage].underWay) {
      return sameJob(this.running.job, job)
        ? { ok: true }
        : refuse('OPERATION_IN_PROGRESS', `downloading ${this.running.job.version}`);
    }
    // the last one has its end written and is only reporting it: the new one waits for that
    await this.running?.done;
    const resumable =
      sameJob(this.record.job, job) &&
      this.record.checkpoint !== null &&
      stageRules[this.record.status.stage].resumable; // read again: the await above can end the last download
    const checkpoint = resumable ? this.record.checkpoint : null;
    if (!checkpoint) await this.files.clear();
    const offset = checkpoint?.offset ?? 0;
    this.record = {
      seq,
      job,
      checkpoint,
      verifiedAt: null,
      packageFile: null,
      status: statuses.downloading(job.version, offset, job.package_size),
    };
    await this.persistAndReport();
    failpoint('fetcher.download-recorded');
    this.begin(job, checkpoint);
    return { ok: true };
  }

  private begin(job: PackageJob, checkpoint: Checkpoint | null): void {
    const controller = new AbortController();
    const done = this.run(job, checkpoint, controller.signal)
      .catch((e) => this.deps.log.error({ err: e }, 'download ended with an unexpected error'))
      .finally(() => {
        this.running = null;
      });
    this.running = { job, controller, done };
  }

  private async run(job: PackageJob, checkpoint: Checkpoint | null, signal: AbortSignal): Promise<void> {
    const part = this.files.partFile(job);
    try {
      const start = await this.files.startPosition(job, checkpoint);
      const needed = job.package_size - start.offset + this.deps.config.TOPE_DISK_RESERVE_BYTES;
      const free = await freeBytes(this.deps.packagesDir);
      if (free < needed) throw new UpdaterError('DISK_FULL', `${needed} bytes needed, ${free} free`);
      this.deps.log.info({ version: job.version, url: job.package_url, offset: start.offset }, 'download started');
      const digests = await transfer({
        url: job.package_url,
        size: job.package_size,
        partFile: part,
        start,
        allowHttp: this.deps.config.TOPE_ALLOW_HTTP,
        dispatcher: this.deps.dispatcher,
        retryAttempts: this.deps.config.TOPE_RETRY_ATTEMPTS,
        retryBaseMs: this.deps.config.TOPE_RETRY_BASE_MS,
        retryAfterMaxMs: this.deps.config.TOPE_RETRY_AFTER_MAX_MS,
        signal,
        random: this.deps.random,
        onProgress: (position, sync) => this.onProgress(job, position, sync),
        onRetry: (info) => this.deps.log.warn(info, 'download attempt failed; retrying'),
        onRequest: (info) => this.deps.log.debug(info, 'GET'),
        rateFloor: {
          minBytesPerS: this.deps.config.TOPE_DOWNLOAD_MIN_BYTES_PER_S,
          windowMs: this.deps.config.TOPE_DOWNLOAD_RATE_WINDOW_MS,
        },
      });
      await this.verify(job, digests);
    } catch (e) {
      if (signal.aborted) {
        this.deps.log.info({ version: job.version }, 'download interrupted; it resumes at the next start');
        return;
      }
      await this.fail(job, e);
    }
  }

  private async onProgress(job: PackageJob, position: Position, sync: () => Promise<void>): Promise<void> {
    const percent = clampPercent((position.offset * 100) / job.package_size);
    const last = this.record.checkpoint;
    const validatorChanged =
      !last ||
      last.etag !== position.etag ||
      last.lastModified !== position.lastModified ||
      position.offset < last.offset;
    if (percent <= this.record.status.progress && !validatorChanged) return;
    // on a fast link, a checkpoint (two fsyncs) per percent costs more than the bytes it saves
    const step = Math.floor(percent / 5) > Math.floor(this.record.status.progress / 5);
    if (!step && !validatorChanged && this.now().getTime() - this.lastCheckpointAt < CHECKPOINT_EVERY_MS) return;
    this.lastCheckpointAt = this.now().getTime();
    await sync();
    const checkpoint: Checkpoint = { ...position, bootId: this.deps.bootId() };
    const previous = this.record.status.progress;
    const status = statuses.downloading(job.version, position.offset, job.package_size, previous);
    const { progress } = status;
    this.record = { ...this.record, checkpoint, status };
    await this.deps.store.write(this.record);
    failpoint('fetcher.checkpointed');
    if (Math.floor(progress / 5) > Math.floor(previous / 5)) {
      this.deps.publisher.report(this.record.status);
      this.deps.notify(`Downloading ${job.version}: ${progress}%`);
    }
  }

  private async verify(job: PackageJob, got: Digests): Promise<void> {
    await this.setStatus(statuses.verifying(), {});
    const verdict = await this.files.verify(job, got);
    if (verdict.kind === 'refused') {
      const { problem } = verdict;
      const transfer = problem.code === 'MD5_MISMATCH' || problem.code === 'SHA256_MISMATCH';
      const message = transfer ? 'MD5 verification failed' : 'Package verification failed';
      await this.setStatus(statuses.failed(problem.wire, message, 100), { checkpoint: null });
      return;
    }
    await this.setStatus(statuses.toInstall(job.version), {
      checkpoint: null,
      verifiedAt: this.now().toISOString(),
      packageFile: verdict.file,
    });
  }

  private async fail(job: PackageJob, e: unknown): Promise<void> {
    const err = UpdaterError.from(e, 'DOWNLOAD_FAILED', 'internal error: ');
    // a partial file is kept for the next /download to resume, unless it is worthless
    const partSize = await fsp.stat(this.files.partFile(job)).then(
      (s) => s.size,
      () => 0,
    );
    const keepPartial = err.code === 'DOWNLOAD_FAILED' && partSize > 0;
    if (!keepPartial) await fsp.rm(this.files.partFile(job), { force: true });
    this.deps.log.error({ version: job.version, error: err.wire }, 'download failed');
    const message = err.code === 'PACKAGE_SIZE_MISMATCH' ? 'Download validation failed' : 'Download failed';
    await this.setStatus(
      statuses.failed(err.wire, message, this.record.status.progress),
      keepPartial ? {} : { checkpoint: null },
    );
  }

  /** `report`: false for a record the installer's newer one supersedes (written, not reported). */
  private async setStatus(status: Status, patch: Partial<FetcherRecord>, report = true): Promise<void> {
    this.record = { ...this.record, ...patch, status };
    await this.persistAndReport(report);
  }

  private async persistAndReport(report = true): Promise<void> {
    const record = this.record;
    const { stage, progress, message } = record.status;
    if (!report) {
      this.deps.log.info({ stage, seq: record.seq }, 'record put right without a report: a newer command is shown');
      return this.deps.store.write(record);
    }
    await this.deps.publisher.publish(record.status, busyStages.has(stage), () => this.deps.store.write(record));
    this.deps.notify(
      stage === 'downloading' ? `Downloading ${record.job?.version}: ${progress}%` : `${stage}: ${message}`,
    );
  }

  private async discardPackage(seq: number, reason: string, report = true): Promise<void> {
    await this.files.clear();
    this.record = { ...emptyRecord, seq, status: statuses.idle(reason) };
    await this.persistAndReport(report);
  }
}
