import type { ErrorCode } from '../../shared/errors.js';
import { sameJob, type PackageJob } from '../../shared/package-job.js';
import type { Stage } from '../../shared/status.js';
import type { View } from './status-view.js';

// What /download and /update do in each stage, as pure functions of what the workers persisted.
// One row per stage in a Record, so a new stage does not compile until someone decides what both
// commands do in it. README's command table says the same, row for row.

export type Decision =
  | { kind: 'start' }
  | { kind: 'repeat' }
  | { kind: 'expire' }
  | { kind: 'reject'; code: 404 | 409; error: ErrorCode; text: string };

/** What a /download decision depends on besides the stage. */
export interface DownloadFacts {
  stage: Stage;
  /** The request is the job the fetcher has (running, or verified). */
  sameJob: boolean;
  /** The verified package is older than the trust window. */
  expired: boolean;
}

/** What an /update decision depends on besides the stage. */
export interface UpdateFacts {
  stage: Stage;
  version: string;
  /** The fetcher's job is this version, whatever became of it. */
  downloaded: boolean;
  /** ...and its package is verified (the fetcher is at toInstall). */
  verified: boolean;
  /** The installer spoke last, about this version. */
  installedLast: boolean;
  /** The fetcher spoke last. */
  fetcherLast: boolean;
  expired: boolean;
}

const start: Decision = { kind: 'start' };
const repeat: Decision = { kind: 'repeat' };
const busy = (stage: Stage): Decision => ({
  kind: 'reject',
  code: 409,
  error: 'OPERATION_IN_PROGRESS',
  text: `Operation already in progress: ${stage}`,
});
const notFound = (version: string): Decision => ({
  kind: 'reject',
  code: 404,
  error: 'PACKAGE_NOT_FOUND',
  text: `Package not found: ${version}`,
});
const incomplete = (text: string): Decision => ({ kind: 'reject', code: 409, error: 'DOWNLOAD_INCOMPLETE', text });
const installIfFresh = (facts: UpdateFacts): Decision => (facts.expired ? { kind: 'expire' } : start);

// A download in progress: the same request again is answered 200 with nothing new started.
const downloadWhileFetching = (facts: DownloadFacts): Decision => (facts.sameJob ? repeat : busy(facts.stage));
const updateWhileFetching = (facts: UpdateFacts): Decision =>
  facts.downloaded ? incomplete(`Download of ${facts.version} is not complete: ${facts.stage}`) : busy(facts.stage);
// An install in progress: the same /update again is answered 200.
const updateWhileInstalling = (facts: UpdateFacts): Decision => (facts.installedLast ? repeat : busy(facts.stage));

export interface StageRules {
  download: (facts: DownloadFacts) => Decision;
  update: (facts: UpdateFacts) => Decision;
}

export const commandRules: Record<Stage, StageRules> = {
  idle: {
    download: () => start,
    update: (facts) => notFound(facts.version),
  },
  downloading: { download: downloadWhileFetching, update: updateWhileFetching },
  verifying: { download: downloadWhileFetching, update: updateWhileFetching },
  toInstall: {
    // a new package replaces the verified one; the same one again, still fresh, is a repeat
    download: (facts) => (facts.sameJob && !facts.expired ? repeat : start),
    update: (facts) => (facts.verified ? installIfFresh(facts) : notFound(facts.version)),
  },
  installing: { download: (facts) => busy(facts.stage), update: updateWhileInstalling },
  rebooting: { download: (facts) => busy(facts.stage), update: updateWhileInstalling },
  success: {
    download: () => start,
    update: (facts) => (facts.installedLast ? repeat : notFound(facts.version)),
  },
  failed: {
    download: () => start,
    update: (facts) => {
      // an install that failed may be tried again while its package is still verified
      if (facts.installedLast && facts.verified) return installIfFresh(facts);
      if (facts.fetcherLast && facts.downloaded) {
        return incomplete(`Download of ${facts.version} failed; download it again`);
      }
      return notFound(facts.version);
    },
  },
};

export function isExpired(view: View, now: number, windowMs: number): boolean {
  const at = view.records.fetcher?.verifiedAt;
  return !!at && now - Date.parse(at) > windowMs;
}

export function decideDownload(view: View, job: PackageJob, now: number, windowMs: number): Decision {
  const { stage } = view.status;
  return commandRules[stage].download({
    stage,
    sameJob: sameJob(view.records.fetcher?.job, job),
    expired: isExpired(view, now, windowMs),
  });
}

export function decideUpdate(view: View, version: string, now: number, windowMs: number): Decision {
  const { fetcher, installer } = view.records;
  const downloaded = fetcher?.job?.version === version;
  return commandRules[view.status.stage].update({
    stage: view.status.stage,
    version,
    downloaded,
    verified: downloaded && fetcher?.status.stage === 'toInstall',
    installedLast: view.active === 'installer' && installer?.version === version,
    fetcherLast: view.active === 'fetcher',
    expired: isExpired(view, now, windowMs),
  });
}
