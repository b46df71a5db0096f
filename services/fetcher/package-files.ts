import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Config } from '../../shared/config.js';
import { fsyncDir, removeTreeDurably } from '../../shared/durable-store.js';
import { UpdaterError } from '../../shared/errors.js';
import { failpoint } from '../../shared/failpoint.js';
import type { Logger } from '../../shared/log.js';
import { checkPackageFile, type Digests } from '../../shared/package-check.js';
import type { PackageJob } from '../../shared/package-job.js';
import type { Stage } from '../../shared/status.js';
import { archiveLimits, type TrustSettings } from '../../shared/trust/package-trust.js';
import type { Checkpoint, FetcherRecord } from '../../shared/worker-records.js';
import type { Position } from './part-file.js';

// The fetcher's packages directory at rest: where a download resumes after a restart, the
// verification of a finished download, and what the record does not account for. The transfer
// itself (transfer.ts) and the record's stages (fetcher.ts) are elsewhere.

/** What the fetcher makes of each stage its record can hold. */
export interface StageRule {
  /** A download or its verification is unfinished: a start resumes it; a command for another package is refused. */
  underWay: boolean;
  /** The record's checkpoint can be resumed by the next download command for the same package. */
  resumable: boolean;
  /** A verified package is on disk: a start checks it is still there and still within the trust window. */
  holdsPackage: boolean;
}

const rule = (underWay: boolean, resumable: boolean, holdsPackage: boolean): StageRule => ({
  underWay,
  resumable,
  holdsPackage,
});

/**
 * The fetcher's rows of the recovery table and its command rules, per stage. A Record, so a new
 * stage does not compile until someone decides what the fetcher does with it. The fetcher never
 * records `installing`, `rebooting` or `success` (the installer's), so they mean nothing here.
 */
export const stageRules: Record<Stage, StageRule> = {
  idle: rule(false, false, false),
  downloading: rule(true, true, false),
  verifying: rule(true, true, false),
  toInstall: rule(false, false, true),
  installing: rule(false, false, false),
  rebooting: rule(false, false, false),
  success: rule(false, false, false),
  failed: rule(false, true, false),
};

/** How a verification ended: the package renamed to its final name, or refused and removed. */
export type Verdict = { kind: 'verified'; file: string } | { kind: 'refused'; problem: UpdaterError };

export interface PackageFilesDeps {
  dir: string;
  log: Logger;
  config: Config;
  trust: TrustSettings;
  bootId: () => string;
}

export class PackageFiles {
  constructor(private readonly deps: PackageFilesDeps) {}

  get dir(): string {
    return this.deps.dir;
  }

  partFile(job: PackageJob): string {
    return path.join(this.deps.dir, `${job.package_name}.part`);
  }

  finalFile(job: PackageJob): string {
    return path.join(this.deps.dir, job.package_name);
  }

  /** Where to resume: the part file's bytes, but after a reboot only what a checkpoint made durable. */
  async startPosition(job: PackageJob, checkpoint: Checkpoint | null): Promise<Position> {
    const part = this.partFile(job);
    const fin = this.finalFile(job);
    if (!checkpoint) return { offset: 0, etag: null, lastModified: null };
    let size = await fsp.stat(part).then(
      (s) => s.size,
      () => -1,
    );
    if (
      size < 0 &&
      (await fsp.stat(fin).then(
        () => true,
        () => false,
      ))
    ) {
      await fsp.rename(fin, part); // the crash came between the rename and the toInstall record
      size = job.package_size;
    }
    if (size < 0) return { offset: 0, etag: null, lastModified: null };
    const sameBoot = checkpoint.bootId === this.deps.bootId();
    const offset = Math.min(size, sameBoot ? job.package_size : checkpoint.offset, job.package_size);
    return { offset, etag: checkpoint.etag, lastModified: checkpoint.lastModified };
  }

  /**
   * Every check of the downloaded part file (shared/package-check.ts): passed, it is renamed to
   * its final name and the rename made durable; refused, it is removed.
   */
  async verify(job: PackageJob, got: Digests): Promise<Verdict> {
    const part = this.partFile(job);
    let problem: UpdaterError | null = null;
    try {
      const trusted = await checkPackageFile(
        part,
        job,
        { digests: got },
        archiveLimits(this.deps.config),
        this.deps.trust,
      );
      this.deps.log.info(
        { version: job.version, signedBy: trusted.signedBy, security_version: trusted.manifest.security_version },
        'package trusted',
      );
    } catch (e) {
      problem = UpdaterError.from(e, 'INVALID_PACKAGE');
    }
    if (problem) {
      await fsp.rm(part, { force: true });
      this.deps.log.error(
        { version: job.version, error: problem.wire, md5: got.md5, sha256: got.sha256 },
        'package rejected',
      );
      return { kind: 'refused', problem };
    }
    const fin = this.finalFile(job);
    await fsp.rename(part, fin);
    failpoint('fetcher.package-renamed');
    await fsyncDir(this.deps.dir);
    this.deps.log.info({ version: job.version, md5: got.md5, sha256: got.sha256 }, 'package verified');
    return { kind: 'verified', file: fin };
  }

  /** The verified package the record names is there, at its size. */
  async present(record: FetcherRecord): Promise<boolean> {
    const file = record.packageFile;
    const size = record.job?.package_size;
    return (
      !!file &&
      (await fsp.stat(file).then(
        (s) => s.size === size,
        () => false,
      ))
    );
  }

  async clear(): Promise<void> {
    for (const name of await fsp.readdir(this.deps.dir)) {
      await removeTreeDurably(path.join(this.deps.dir, name));
    }
  }

  /** Files in the packages directory that the record's job does not account for. */
  async removeStray(job: PackageJob | null): Promise<void> {
    const keep = new Set(job ? [job.package_name, `${job.package_name}.part`] : []);
    for (const name of await fsp.readdir(this.deps.dir)) {
      if (!keep.has(name)) {
        this.deps.log.info({ file: name }, 'removing a stale file');
        await removeTreeDurably(path.join(this.deps.dir, name));
      }
    }
  }
}
