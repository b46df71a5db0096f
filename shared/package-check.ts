import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { Transform } from 'node:stream';
import { UpdaterError } from './errors.js';
import type { ArchiveLimits } from './package-archive.js';
import type { PackageJob } from './package-job.js';
import {
  checkPackageFile as checkPackageFileTrust,
  type TrustedPackage,
  type TrustSettings,
} from './trust/package-trust.js';

// The one place a package is judged. The fetcher checks the digests the job names after the
// download, then the content; the installer checks the content again on the file it reads (the
// digests only come to it through the fetcher's record: README, "Trust").
// A new check (a signature, a compatibility rule) is one more entry in `packageChecks`, and so
// runs on every path that accepts a package.

export interface Digests {
  md5: string;
  sha256: string;
}

/** MD5 and SHA-256 of one stream of bytes, computed in one pass. */
export class PackageHasher {
  private md5: Hash = createHash('md5');
  private sha256: Hash = createHash('sha256');

  update(chunk: Buffer): void {
    this.md5.update(chunk);
    this.sha256.update(chunk);
  }

  /** Ends the hashing; the hasher cannot take more bytes after this. */
  digests(): Digests {
    return { md5: this.md5.digest('hex'), sha256: this.sha256.digest('hex') };
  }
}

/** A pass-through stream that feeds every chunk to `hasher` on the way. */
export function hashingStream(hasher: PackageHasher): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hasher.update(chunk);
      callback(null, chunk);
    },
  });
}

/** Feeds the first `length` bytes of an open file to `hasher` (the part of a download already on disk). */
export async function hashFilePrefix(file: FileHandle, length: number, hasher: PackageHasher): Promise<void> {
  const buffer = Buffer.allocUnsafe(1024 * 1024);
  let position = 0;
  while (position < length) {
    const { bytesRead } = await file.read(buffer, 0, Math.min(buffer.length, length - position), position);
    if (bytesRead === 0) throw new Error(`part file shorter than ${length} bytes`);
    hasher.update(buffer.subarray(0, bytesRead));
    position += bytesRead;
  }
}

/** What the job promises about the package. */
export type PackageClaims = Pick<PackageJob, 'package_md5' | 'package_sha256'>;

/** What was measured on the bytes at hand. */
export interface PackageEvidence {
  digests: Digests;
}

/** One check: null when the package passes it, else the refusal with its error code. */
export type PackageCheck = (claims: PackageClaims, evidence: PackageEvidence) => UpdaterError | null;

// A refusal names the digest the caller gave and not the one the bytes have: the bytes are
// whatever a URL returned, and their digest in /progress or a report would tell anyone who may
// ask for a download what a URL the printer can reach serves (a fingerprint, or a short secret
// guessed offline). The measured digests go to the worker's own log only.
const md5Check: PackageCheck = (claims, { digests }) =>
  digests.md5 === claims.package_md5
    ? null
    : new UpdaterError('MD5_MISMATCH', `expected ${claims.package_md5}; the package's MD5 differs`);

/** SHA-256 is optional in the job; when given, it must match. */
const sha256Check: PackageCheck = (claims, { digests }) =>
  !claims.package_sha256 || digests.sha256 === claims.package_sha256
    ? null
    : new UpdaterError('SHA256_MISMATCH', `expected ${claims.package_sha256}; the package's SHA-256 differs`);

/** Every check, in the order they run; the first failure is the one reported. */
export const packageChecks: readonly PackageCheck[] = [md5Check, sha256Check];

/** The first check the package fails, or null when it passes all. */
export function packageProblem(claims: PackageClaims, evidence: PackageEvidence): UpdaterError | null {
  for (const check of packageChecks) {
    const problem = check(claims, evidence);
    if (problem) return problem;
  }
  return null;
}

/** Throws the first check's refusal (MD5_MISMATCH, SHA256_MISMATCH, ...) unless the package passes all. */
export function checkPackage(claims: PackageClaims, evidence: PackageEvidence): void {
  const problem = packageProblem(claims, evidence);
  if (problem) throw problem;
}

// The package's content, after its digests: the trust chain (shared/trust: signature by a
// trusted key, compatibility, security floor, every entry named by the signed manifest). The
// fetcher runs both on the downloaded file; the installer runs checkPackageContent on the
// archive it then installs from.
export { checkPackageTrust as checkPackageContent } from './trust/package-trust.js';

/** Every check of a package file, in order: the digests against the job, then its content. */
export async function checkPackageFile(
  file: string,
  claims: PackageClaims,
  evidence: PackageEvidence,
  limits: ArchiveLimits,
  trust: TrustSettings,
): Promise<TrustedPackage> {
  checkPackage(claims, evidence);
  return checkPackageFileTrust(file, limits, trust);
}
