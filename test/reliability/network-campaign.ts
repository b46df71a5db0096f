import { TestDevice } from '../helpers/device.js';
import { call } from '../helpers/api.js';
import { Origin, type Behaviour } from '../helpers/origin.js';
import { md5 } from '../helpers/packages.js';
import { waitFor } from '../helpers/wait.js';
import { seededRandom } from './random-campaign.js';

// Network faults against the real fetcher process: each case scripts the package server's
// answers (cuts and resets at random offsets, stalls, trickles, 5xx bursts, Range ignored,
// validators changed mid-resume, short and over-long bodies), then lets it serve honestly or
// keeps misbehaving. Each run must end, in the right hash or in the case's error code, within
// a deadline and a bounded number of requests: never a loop, never a hang.

const SIZE = 64 * 1024;
const ATTEMPTS = 4;

interface Case {
  name: string;
  /** The answers to the first requests (then honest service), or a rule for every request. */
  plan: (r: () => number, origin: Origin) => Behaviour[] | ((n: number) => Behaviour);
  /** null: the package must arrive intact. */
  error: RegExp | null;
}

const offset = (r: () => number) => 1 + Math.floor(r() * (SIZE - 2));
const transient = (r: () => number): Behaviour => {
  const kinds: Array<() => Behaviour> = [
    () => ({ kind: 'cut', after: offset(r) }),
    () => ({ kind: 'reset', after: offset(r) }),
    () => ({ kind: 'short', send: offset(r) }),
    () => ({ kind: 'status', code: [500, 502, 503, 504][Math.floor(r() * 4)] }),
    () => ({ kind: 'ignore-range' }),
    () => ({ kind: 'bad-range', start: offset(r) }),
    () => ({ kind: 'no-range-206' }),
  ];
  return kinds[Math.floor(r() * kinds.length)]();
};

export const cases: Case[] = [
  {
    name: 'connection cut at a random offset, three times',
    plan: (r) => [1, 2, 3].map(() => ({ kind: 'cut', after: offset(r) })),
    error: null,
  },
  {
    name: 'TCP reset at a random offset, twice',
    plan: (r) => [1, 2].map(() => ({ kind: 'reset', after: offset(r) })),
    error: null,
  },
  { name: 'stall without close at a random offset', plan: (r) => [{ kind: 'stall', after: offset(r) }], error: null },
  {
    name: 'slow trickle (512 B every 5 ms)',
    plan: () => [{ kind: 'serve', throttle: { bytes: 512, everyMs: 5 } }],
    error: null,
  },
  {
    name: '5xx burst shorter than the retries',
    plan: (r) => [1, 2, 3].map(() => ({ kind: 'status', code: [500, 502, 503][Math.floor(r() * 3)] })),
    error: null,
  },
  {
    name: '5xx forever',
    plan: () => () => ({ kind: 'status', code: 503 }),
    error: /^DOWNLOAD_FAILED: HTTP 503 \(gave up after/,
  },
  {
    name: 'a 200 answer to a Range request after a cut',
    plan: (r) => [{ kind: 'cut', after: offset(r) }, { kind: 'ignore-range' }],
    error: null,
  },
  {
    name: 'a 206 from the wrong offset after a cut',
    plan: (r) => [
      { kind: 'cut', after: offset(r) },
      { kind: 'bad-range', start: offset(r) },
    ],
    error: null,
  },
  {
    name: 'ETag changed mid-resume, same bytes',
    plan: (r) => [
      { kind: 'cut', after: offset(r) },
      { kind: 'serve', etag: '"v2"' },
    ],
    error: null,
  },
  {
    name: 'ETag changed mid-resume, new bytes (the file was replaced)',
    plan: (r, origin) => (n) => {
      if (n === 0) return { kind: 'cut', after: offset(r) };
      if (n === 1) origin.body = Buffer.from(origin.body).reverse();
      return { kind: 'serve', etag: '"v2"' };
    },
    error: /^MD5_MISMATCH/,
  },
  {
    name: 'truncated body (closed before Content-Length)',
    plan: (r) => [{ kind: 'short', send: offset(r) }],
    error: null,
  },
  {
    name: 'over-long body without Content-Length',
    plan: (r) => () => ({ kind: 'long', extra: 1 + Math.floor(r() * 4096) }),
    error: /^PACKAGE_SIZE_MISMATCH/,
  },
  {
    name: 'Content-Length other than the package size',
    plan: (r) => () => ({ kind: 'lie-length', length: SIZE + 1 + Math.floor(r() * 100) }),
    error: /^PACKAGE_SIZE_MISMATCH/,
  },
  {
    name: 'a random mix of up to four transient faults',
    plan: (r) => Array.from({ length: 1 + Math.floor(r() * 4) }, () => transient(r)),
    error: null,
  },
];

export interface NetworkRun {
  name: string;
  ok: boolean;
  outcome: string;
  requests: number;
  ms: number;
}

export async function networkCampaign(
  repeats: number,
  seed: number,
  log: (line: string) => void = () => undefined,
): Promise<NetworkRun[]> {
  const r = seededRandom(seed);
  const d = new TestDevice({
    TOPE_RETRY_ATTEMPTS: String(ATTEMPTS),
    TOPE_HTTP_TIMEOUT_MS: '400',
    TOPE_RETRY_BASE_MS: '10',
    TOPE_LOG_LEVEL: 'info',
  });
  await d.start('fetcher', 'api-gateway');
  const runs: NetworkRun[] = [];
  let i = 0;
  try {
    for (const c of cases) {
      for (let k = 0; k < repeats; k++) {
        const origin = await new Origin(SIZE).start();
        const intended = md5(origin.body);
        const plan = c.plan(r, origin);
        origin.script(Array.isArray(plan) ? (n) => plan[n] ?? { kind: 'serve' } : plan);
        const t0 = Date.now();
        const version = `9.0.${++i}`;
        const job = {
          version,
          package_url: origin.url(),
          package_name: `tope-${version}.zip`,
          package_size: SIZE,
          package_md5: intended,
        };
        let outcome = 'no answer';
        let ok = false;
        try {
          const accepted = await call(d.base, 'POST', '/api/v1.0/download', job);
          if (accepted.body.code !== 200) throw new Error(`download refused: ${JSON.stringify(accepted.body)}`);
          const end = await waitFor(
            'the download to end',
            async () => {
              const p = (await d.progress()).body.data;
              return ['toInstall', 'failed'].includes(p.stage) ? p : null;
            },
            20_000,
            20,
          );
          outcome = end.stage === 'toInstall' ? 'intact' : end.error;
          ok = c.error ? c.error.test(end.error ?? '') : end.stage === 'toInstall';
        } catch (e) {
          outcome = `did not end: ${(e as Error).message}`;
        }
        const requests = origin.requests.length;
        if (requests > 16) {
          ok = false;
          outcome += ` after ${requests} requests (a loop?)`;
        }
        await origin.stop();
        runs.push({ name: c.name, ok, outcome, requests, ms: Date.now() - t0 });
        log(`${ok ? 'ok  ' : 'FAIL'} ${c.name}: ${outcome} (${requests} requests, ${Date.now() - t0} ms)`);
      }
    }
  } finally {
    await d.stop();
  }
  return runs;
}
