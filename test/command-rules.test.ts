import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { decideDownload, decideUpdate, type Decision } from '../services/api-gateway/rules.js';
import type { View } from '../services/api-gateway/status-view.js';
import type { PackageJob } from '../shared/package-job.js';
import * as statuses from '../shared/status.js';
import { stages, type Stage, type Status } from '../shared/status.js';
import type { FetcherRecord, InstallerRecord } from '../shared/worker-records.js';
import { distDir } from './helpers/services.js';

// Every stage x command cell of the gateway's rules, in-process over hand-made views (the
// gateway-contract tests drive the same rules through the real process). A new stage fails to
// compile here until its row of expectations is written.

const NOW = Date.parse('2026-01-02T00:00:00Z');
const WINDOW_MS = 24 * 3600 * 1000;
const FRESH = new Date(NOW - 1000).toISOString();
const STALE = new Date(NOW - WINDOW_MS - 1000).toISOString();
const VERSION = '1.0.0';
const job = (version: string): PackageJob => ({
  version,
  package_url: `http://127.0.0.1:9/${version}.zip`,
  package_name: `${version}.zip`,
  package_size: 10,
  package_md5: 'a'.repeat(32),
});

const fetcherRecord = (
  seq: number,
  version: string,
  status: Status,
  verifiedAt: string | null = null,
): FetcherRecord => ({ seq, status, job: job(version), checkpoint: null, verifiedAt, packageFile: null });
const installerRecord = (seq: number, version: string, status: Status): InstallerRecord => ({ seq, version, status });
const installingIt = installerRecord(4, VERSION, statuses.installing(10, 'x'));

/** A view whose shown stage is `stage`, with the records of the scenario behind it. */
function viewIn(stage: Stage, fetcher: FetcherRecord | null, installer: InstallerRecord | null): View {
  const active = installer && (!fetcher || installer.seq > fetcher.seq) ? 'installer' : fetcher ? 'fetcher' : null;
  const status: Status = { ...statuses.idle(), stage };
  return { seq: Math.max(fetcher?.seq ?? 0, installer?.seq ?? 0), status, active, records: { fetcher, installer } };
}

const summary = (decision: Decision): string =>
  decision.kind === 'reject' ? `${decision.code} ${decision.error}` : decision.kind;

// /download: the fetcher's job against the request
const downloadScenarios = {
  'the same job': (stage: Stage) => viewIn(stage, fetcherRecord(1, VERSION, statuses.toInstall(VERSION), FRESH), null),
  'the same job, verified past the window': (stage: Stage) =>
    viewIn(stage, fetcherRecord(1, VERSION, statuses.toInstall(VERSION), STALE), null),
  'another job': (stage: Stage) => viewIn(stage, fetcherRecord(1, '2.0.0', statuses.toInstall('2.0.0'), FRESH), null),
};
type DownloadScenario = keyof typeof downloadScenarios;

// /update {VERSION}: what the fetcher and the installer persisted, and which spoke last
const updateScenarios = {
  'nothing of that version': (stage: Stage) =>
    viewIn(
      stage,
      fetcherRecord(1, '2.0.0', statuses.toInstall('2.0.0'), FRESH),
      installerRecord(0, '2.0.0', statuses.succeeded('x')),
    ),
  'its download not verified': (stage: Stage) =>
    viewIn(stage, fetcherRecord(3, VERSION, statuses.downloading(VERSION, 1, 10)), null),
  'its package verified': (stage: Stage) =>
    viewIn(stage, fetcherRecord(3, VERSION, statuses.toInstall(VERSION), FRESH), null),
  'its package verified past the window': (stage: Stage) =>
    viewIn(stage, fetcherRecord(3, VERSION, statuses.toInstall(VERSION), STALE), null),
  'installed last, package still verified': (stage: Stage) =>
    viewIn(stage, fetcherRecord(3, VERSION, statuses.toInstall(VERSION), FRESH), installingIt),
  'installed last, package verified past the window': (stage: Stage) =>
    viewIn(stage, fetcherRecord(3, VERSION, statuses.toInstall(VERSION), STALE), installingIt),
  'installed last, no package': (stage: Stage) => viewIn(stage, null, installingIt),
};
type UpdateScenario = keyof typeof updateScenarios;

const BUSY = '409 OPERATION_IN_PROGRESS';
const INCOMPLETE = '409 DOWNLOAD_INCOMPLETE';
const NOT_FOUND = '404 PACKAGE_NOT_FOUND';

const all = <K extends string>(keys: readonly K[], value: string): Record<K, string> =>
  Object.fromEntries(keys.map((k) => [k, value])) as Record<K, string>;
const downloadKeys = Object.keys(downloadScenarios) as DownloadScenario[];
const updateKeys = Object.keys(updateScenarios) as UpdateScenario[];

const whileFetching = {
  download: { 'the same job': 'repeat', 'the same job, verified past the window': 'repeat', 'another job': BUSY },
  update: {
    'nothing of that version': BUSY,
    'its download not verified': INCOMPLETE,
    'its package verified': INCOMPLETE,
    'its package verified past the window': INCOMPLETE,
    'installed last, package still verified': INCOMPLETE,
    'installed last, package verified past the window': INCOMPLETE,
    'installed last, no package': BUSY,
  },
};
const whileInstalling = {
  download: all(downloadKeys, BUSY),
  update: {
    'nothing of that version': BUSY,
    'its download not verified': BUSY,
    'its package verified': BUSY,
    'its package verified past the window': BUSY,
    'installed last, package still verified': 'repeat',
    'installed last, package verified past the window': 'repeat',
    'installed last, no package': 'repeat',
  },
};

type Row = { download: Record<DownloadScenario, string>; update: Record<UpdateScenario, string> };
const expected: Record<Stage, Row> = {
  idle: { download: all(downloadKeys, 'start'), update: all(updateKeys, NOT_FOUND) },
  downloading: whileFetching,
  verifying: whileFetching,
  toInstall: {
    download: { 'the same job': 'repeat', 'the same job, verified past the window': 'start', 'another job': 'start' },
    update: {
      'nothing of that version': NOT_FOUND,
      'its download not verified': NOT_FOUND,
      'its package verified': 'start',
      'its package verified past the window': 'expire',
      'installed last, package still verified': 'start',
      'installed last, package verified past the window': 'expire',
      'installed last, no package': NOT_FOUND,
    },
  },
  installing: whileInstalling,
  rebooting: whileInstalling,
  success: {
    download: all(downloadKeys, 'start'),
    update: {
      'nothing of that version': NOT_FOUND,
      'its download not verified': NOT_FOUND,
      'its package verified': NOT_FOUND,
      'its package verified past the window': NOT_FOUND,
      'installed last, package still verified': 'repeat',
      'installed last, package verified past the window': 'repeat',
      'installed last, no package': 'repeat',
    },
  },
  failed: {
    download: all(downloadKeys, 'start'),
    update: {
      'nothing of that version': NOT_FOUND,
      'its download not verified': INCOMPLETE,
      'its package verified': INCOMPLETE,
      'its package verified past the window': INCOMPLETE,
      'installed last, package still verified': 'start',
      'installed last, package verified past the window': 'expire',
      'installed last, no package': NOT_FOUND,
    },
  },
};

for (const stage of stages) {
  test(`${stage}: /download in every scenario`, () => {
    const got = Object.fromEntries(
      downloadKeys.map((scenario) => [
        scenario,
        summary(decideDownload(downloadScenarios[scenario](stage), job(VERSION), NOW, WINDOW_MS)),
      ]),
    );
    assert.deepEqual(got, expected[stage].download);
  });
  test(`${stage}: /update in every scenario`, () => {
    const got = Object.fromEntries(
      updateKeys.map((scenario) => [
        scenario,
        summary(decideUpdate(updateScenarios[scenario](stage), VERSION, NOW, WINDOW_MS)),
      ]),
    );
    assert.deepEqual(got, expected[stage].update);
  });
}

test('a refusal says why: the stage it is busy in, the version it did not find, a download to do again', () => {
  const verified = updateScenarios['its package verified'];
  assert.deepEqual(decideUpdate(verified('downloading'), VERSION, NOW, WINDOW_MS), {
    kind: 'reject',
    code: 409,
    error: 'DOWNLOAD_INCOMPLETE',
    text: 'Download of 1.0.0 is not complete: downloading',
  });
  assert.deepEqual(decideUpdate(verified('failed'), VERSION, NOW, WINDOW_MS), {
    kind: 'reject',
    code: 409,
    error: 'DOWNLOAD_INCOMPLETE',
    text: 'Download of 1.0.0 failed; download it again',
  });
  assert.deepEqual(decideUpdate(verified('idle'), VERSION, NOW, WINDOW_MS), {
    kind: 'reject',
    code: 404,
    error: 'PACKAGE_NOT_FOUND',
    text: 'Package not found: 1.0.0',
  });
  assert.deepEqual(decideDownload(downloadScenarios['another job']('installing'), job(VERSION), NOW, WINDOW_MS), {
    kind: 'reject',
    code: 409,
    error: 'OPERATION_IN_PROGRESS',
    text: 'Operation already in progress: installing',
  });
});

test("README's command table has a row for every stage", () => {
  const readme = readFileSync(path.join(distDir, '..', 'README.md'), 'utf8');
  const table = readme.slice(readme.indexOf('| stage | `/download` |'));
  const rows = table.slice(0, table.indexOf('\n\n')).split('\n').slice(2);
  const named = rows.flatMap((row) => [...(row.split('|')[1] ?? '').matchAll(/`(\w+)`/g)].map((m) => m[1]));
  assert.deepEqual([...named].sort(), [...stages].sort());
});
