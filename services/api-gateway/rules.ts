import type { ErrorCode } from '../../shared/errors.js';
import { sameJob, type PackageJob } from '../../shared/package-job.js';
import type { View } from './status-view.js';

// The stage x command table of decisions.md, as pure functions of what the workers persisted.

export type Decision =
  | { kind: 'start' }
  | { kind: 'repeat' }
  | { kind: 'expire' }
  | { kind: 'reject'; code: 404 | 409; error: ErrorCode; text: string };

const busy = (stage: string): Decision =>
  ({ kind: 'reject', code: 409, error: 'OPERATION_IN_PROGRESS', text: `Operation already in progress: ${stage}` });
const notFound = (version: string): Decision =>
  ({ kind: 'reject', code: 404, error: 'PACKAGE_NOT_FOUND', text: `Package not found: ${version}` });

export function isExpired(view: View, now: number, windowMs: number): boolean {
  const at = view.fetch?.verifiedAt;
  return !!at && now - Date.parse(at) > windowMs;
}

export function decideDownload(view: View, job: PackageJob, now: number, windowMs: number): Decision {
  const { stage } = view.status;
  switch (stage) {
    case 'downloading':
    case 'verifying':
      return sameJob(view.fetch?.job, job) ? { kind: 'repeat' } : busy(stage);
    case 'installing':
    case 'rebooting':
      return busy(stage);
    case 'toInstall':
      return sameJob(view.fetch?.job, job) && !isExpired(view, now, windowMs) ? { kind: 'repeat' } : { kind: 'start' };
    default:
      return { kind: 'start' };
  }
}

export function decideUpdate(view: View, version: string, now: number, windowMs: number): Decision {
  const { stage } = view.status;
  const downloaded = view.fetch?.job?.version === version;
  const verified = downloaded && view.fetch?.status.stage === 'toInstall';
  const installedLast = view.active === 'installer' && view.install?.version === version;
  const installIfFresh = (): Decision => (isExpired(view, now, windowMs) ? { kind: 'expire' } : { kind: 'start' });
  switch (stage) {
    case 'installing':
    case 'rebooting':
      return installedLast ? { kind: 'repeat' } : busy(stage);
    case 'downloading':
    case 'verifying':
      return downloaded
        ? { kind: 'reject', code: 409, error: 'DOWNLOAD_INCOMPLETE', text: `Download of ${version} is not complete: ${stage}` }
        : busy(stage);
    case 'toInstall':
      return verified ? installIfFresh() : notFound(version);
    case 'failed':
      if (installedLast && verified) return installIfFresh();
      if (view.active === 'fetcher' && downloaded) {
        return { kind: 'reject', code: 409, error: 'DOWNLOAD_INCOMPLETE', text: `Download of ${version} failed; download it again` };
      }
      return notFound(version);
    case 'success':
      return installedLast ? { kind: 'repeat' } : notFound(version);
    default:
      return notFound(version);
  }
}
