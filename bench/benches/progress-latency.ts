import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchContext } from '../context.js';
import { bounds } from '../plan.js';
import { BenchDevice } from '../lib/bench-device.js';
import { sleep } from '../lib/clock.js';
import { outcome, requestDownload } from '../lib/downloads.js';
import { timedGet } from '../lib/http-timing.js';
import { fmt, type Row } from '../lib/report.js';
import { median, percentile } from '../lib/stats.js';

// /progress latency while the fetcher downloads at full speed (it hashes on one core and the
// origin serves on the other): polled at 20 requests/s on fresh connections, interleaved with
// the same poll of a bare Node server, so both see the same load.

export const referenceServer = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../reference/static-server.js',
);

async function startReferenceServer(): Promise<{ url: string; stop: () => void }> {
  const child = spawn(process.execPath, [referenceServer], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((ok) =>
    child.stdout.setEncoding('utf8').once('data', (l: string) => ok(JSON.parse(l).port)),
  );
  return { url: `http://127.0.0.1:${port}/`, stop: () => child.kill('SIGKILL') };
}

/**
 * The fetcher writes toInstall a moment before it drops its running download, so a /download
 * sent the instant /progress says toInstall can still get 409 OPERATION_IN_PROGRESS: try again.
 */
async function retryWhileBusy(request: () => Promise<void>): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await request();
    } catch (e) {
      if (attempt >= 100 || !/OPERATION_IN_PROGRESS/.test((e as Error).message)) throw e;
      await sleep(10);
    }
  }
}

interface LatencyRun {
  ours: number[];
  reference: number[];
}

async function latencyRun(ctx: BenchContext, reference: string): Promise<LatencyRun> {
  const d = new BenchDevice();
  const run: LatencyRun = { ours: [], reference: [] };
  try {
    await d.start('fetcher', 'api-gateway');
    const fetcher = d.service('fetcher');
    const pkg = ctx.packages.large;
    let downloading = true;
    // downloads back to back, each a new version (the same one again would be a no-op)
    const downloads = (async () => {
      for (let n = 0; downloading; n++) {
        const from = fetcher.lines.length;
        await retryWhileBusy(() => requestDownload(d.base, ctx.origin.url(path.basename(pkg.file)), pkg, `9.0.${n}`));
        await outcome(fetcher, from, 'package verified', 'download failed', 30 * 60_000);
        await d.waitStage('toInstall', 60_000); // the record follows the log line
      }
    })();
    let failure: unknown = null;
    downloads.catch((e) => {
      failure = e;
      downloading = false;
    });
    await sleep(200); // under way
    const period = 1000 / ctx.plan.latencyRequestsPerSecond;
    const end = Date.now() + ctx.plan.latencyRunMs;
    const pending: Promise<void>[] = [];
    let lastStage = 'downloading';
    // open loop: a slow answer never delays the next request
    for (let tick = Date.now(); tick < end && !failure; tick += period) {
      await sleep(Math.max(0, tick - Date.now()));
      pending.push(
        timedGet(`${d.base}/api/v1.0/progress`).then((r) => {
          lastStage = JSON.parse(r.body).data.stage;
          if (lastStage === 'downloading') run.ours.push(r.ms);
        }),
      );
      await sleep(period / 2);
      pending.push(
        timedGet(reference).then((r) => {
          if (lastStage === 'downloading') run.reference.push(r.ms);
        }),
      );
    }
    await Promise.all(pending);
    downloading = false;
    await downloads;
    return run;
  } finally {
    await d.dispose();
  }
}

export async function benchProgressLatency(ctx: BenchContext): Promise<Row[]> {
  const ref = await startReferenceServer();
  const runs: LatencyRun[] = [];
  try {
    for (let i = 1; i <= ctx.plan.runs.latency; i++) {
      ctx.say(`/progress latency: run ${i}/${ctx.plan.runs.latency}`);
      runs.push(await latencyRun(ctx, ref.url));
    }
  } finally {
    ref.stop();
  }
  const samples = median(runs.map((r) => r.ours.length));
  const rows: Row[] = [];
  for (const p of [50, 99]) {
    const ours = median(runs.map((r) => percentile(r.ours, p)));
    const theirs = median(runs.map((r) => percentile(r.reference, p)));
    rows.push({
      measure: `/progress p${p} at ${ctx.plan.latencyRequestsPerSecond} req/s during a full-speed ${fmt.size(ctx.packages.large.payloadBytes)} download (~${samples} samples a run; README's bound: ${bounds.progressMs} ms; the budget's: ${p === 50 ? '≤ 1.50× the bare server' : '≤ 5 ms'})`,
      value: fmt.ms(ours),
      reference: `bare Node http server, same poll: ${fmt.ms(theirs)}`,
      ratio: fmt.ratio(ours / theirs),
      runs: String(runs.length),
    });
  }
  return rows;
}
