import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { BenchContext } from '../context.js';
import { bareNodeRss } from '../lib/bare-node.js';
import { BenchDevice, loggedAt } from '../lib/bench-device.js';
import { nowMs, sleep } from '../lib/clock.js';
import { timeCommand } from '../lib/commands.js';
import { outcome, requestDownload, requestUpdate } from '../lib/downloads.js';
import type { OriginProcess } from '../origin/origin-process.js';
import { digestFile, UNIT_PREFIX, type PackageFile } from '../lib/packages.js';
import { readMemory, RssSampler } from '../lib/proc.js';
import { fmt, type Row } from '../lib/report.js';
import { median } from '../lib/stats.js';

// Download throughput against curl on the same file from the same server, at loopback speed and
// through a 10 Mbit/s cap; and the memory of each process across a whole update (download and
// install) of a small and a large package, which must not grow with the package.

const PROCESSES = ['api-gateway', 'fetcher', 'installer'] as const;
type Proc = (typeof PROCESSES)[number];

interface UpdateRun {
  downloadMs: number;
  installMs: number;
  peak: Record<Proc, number>;
  idleAfter: Record<Proc, number>;
}

/** curl's time for the same file, written to the same file system, no hashing. */
async function curlMs(ctx: BenchContext, origin: OriginProcess, pkg: PackageFile): Promise<number> {
  const out = path.join(ctx.scratch, 'curl.out');
  const ms = await timeCommand('curl', ['-sS', '--fail', '-o', out, origin.url(path.basename(pkg.file))]);
  await fsp.rm(out, { force: true });
  return ms;
}

/** POST /download → verified, then (when `install`) POST /update → success, with every process's peak RSS. */
async function updateRun(origin: OriginProcess, pkg: PackageFile, install: boolean): Promise<UpdateRun> {
  const d = new BenchDevice();
  try {
    await d.start('fetcher', 'installer', 'api-gateway');
    await d.unitsRunning(1, UNIT_PREFIX);
    const pids = Object.fromEntries(PROCESSES.map((p) => [p, d.pid(p)])) as Record<Proc, number>;
    const sampler = new RssSampler(pids);
    const fetcher = d.service('fetcher');
    const installer = d.service('installer');
    const version = '2.0.0';
    const t0 = Date.now();
    await requestDownload(d.base, origin.url(path.basename(pkg.file)), pkg, version);
    const verified = await outcome(fetcher, 0, 'package verified', 'download failed', 30 * 60_000);
    const downloadMs = loggedAt(verified) - t0;
    await d.waitStage('toInstall', 60_000); // the record follows the log line
    let installMs = NaN;
    if (install) {
      const from = installer.lines.length;
      const t1 = Date.now();
      await requestUpdate(d.base, version);
      installMs = loggedAt(await outcome(installer, from, 'install succeeded', 'install failed', 30 * 60_000)) - t1;
      await d.waitStage('success', 60_000);
    }
    const peak = sampler.stop() as Record<Proc, number>;
    await sleep(1000); // settled: what each keeps while nothing happens
    const idleAfter = Object.fromEntries(PROCESSES.map((p) => [p, readMemory(pids[p])?.rss ?? NaN])) as Record<Proc, number>;
    return { downloadMs, installMs, peak, idleAfter };
  } finally {
    await d.dispose();
  }
}

interface SizeResult {
  pkg: PackageFile;
  runs: UpdateRun[];
  curl: number[];
  copy: number[];
}

async function measureSize(ctx: BenchContext, pkg: PackageFile, runs: number): Promise<SizeResult> {
  const r: SizeResult = { pkg, runs: [], curl: [], copy: [] };
  for (let i = 1; i <= runs; i++) {
    ctx.say(`download+install ${fmt.size(pkg.payloadBytes)}: run ${i}/${runs}`);
    // interleaved, so that both see the same machine
    r.curl.push(await curlMs(ctx, ctx.origin, pkg));
    r.runs.push(await updateRun(ctx.origin, pkg, true));
    const copy = path.join(ctx.scratch, 'copy.zip');
    r.copy.push(await timeCommand('sh', ['-c', 'cp "$0" "$1" && sync', pkg.file, copy]));
    await fsp.rm(copy, { force: true });
  }
  return r;
}

const rateOf = (bytes: number, ms: number) => bytes / (ms / 1000);

export async function benchDownload(ctx: BenchContext): Promise<Row[]> {
  const { plan, packages } = ctx;
  const bare: number[] = [];
  for (let i = 0; i < 3; i++) bare.push(await bareNodeRss());
  const bareRss = median(bare);
  const small = await measureSize(ctx, packages.small, plan.runs.small);
  const large = await measureSize(ctx, packages.large, plan.runs.large);

  // the fetcher's CPU floor: both digests on one thread, as it computes them, over the same bytes
  const hashMs: number[] = [];
  for (let i = 0; i < plan.runs.small; i++) {
    const t0 = nowMs();
    await digestFile(packages.small.file);
    hashMs.push(nowMs() - t0);
  }
  const hashRate = median(hashMs.map((ms) => rateOf(packages.small.size, ms)));
  const curlSmall = median(small.curl.map((ms) => rateOf(small.pkg.size, ms)));

  const rows: Row[] = [];
  for (const s of [small, large]) {
    const ours = median(s.runs.map((r) => rateOf(s.pkg.size, r.downloadMs)));
    const curl = median(s.curl.map((ms) => rateOf(s.pkg.size, ms)));
    rows.push({
      measure: `Download ${fmt.size(s.pkg.payloadBytes)} over loopback, MD5+SHA-256 inline (POST /download → verified)`,
      value: fmt.rate(ours), reference: `curl -o, same server: ${fmt.rate(curl)}`, ratio: fmt.ratio(ours / curl), runs: String(s.runs.length),
    });
  }
  rows.push({
    measure: `MD5+SHA-256 of the ${fmt.size(packages.small.payloadBytes)} file on one Node thread, from the page cache (the fetcher's CPU ceiling)`,
    value: fmt.rate(hashRate), reference: `curl -o, same server: ${fmt.rate(curlSmall)}`, ratio: fmt.ratio(hashRate / curlSmall), runs: String(hashMs.length),
  });
  for (const s of [small, large]) {
    const ms = median(s.runs.map((r) => r.installMs));
    const copy = median(s.copy);
    rows.push({
      measure: `Install of that ${fmt.size(s.pkg.payloadBytes)} package (POST /update → success)`,
      value: fmt.ms(ms), reference: `cp of the package + sync: ${fmt.ms(copy)}`, ratio: fmt.ratio(ms / copy), runs: String(s.runs.length),
    });
  }

  // capped: only the download, since the link is the point
  const capped = packages.capped;
  const cappedOurs: number[] = [];
  const cappedCurl: number[] = [];
  for (let i = 1; i <= plan.runs.capped; i++) {
    ctx.say(`download ${fmt.size(capped.payloadBytes)} at 10 Mbit/s: run ${i}/${plan.runs.capped}`);
    cappedCurl.push(await curlMs(ctx, ctx.cappedOrigin, capped));
    cappedOurs.push((await updateRun(ctx.cappedOrigin, capped, false)).downloadMs);
  }
  const cappedRate = median(cappedOurs.map((ms) => rateOf(capped.size, ms)));
  const cappedCurlRate = median(cappedCurl.map((ms) => rateOf(capped.size, ms)));
  rows.push({
    measure: `Download ${fmt.size(capped.payloadBytes)} through a 10 Mbit/s token bucket (a smaller file: 100 MiB takes ~84 s)`,
    value: fmt.rate(cappedRate), reference: `curl -o, same cap: ${fmt.rate(cappedCurlRate)}`, ratio: fmt.ratio(cappedRate / cappedCurlRate), runs: String(plan.runs.capped),
  });
  const hundredMiB = 100 * 1024 * 1024;
  const endToEnd = (hundredMiB / cappedRate) * 1000 + median(small.runs.map((r) => r.installMs));
  rows.push({
    measure: `100 MiB end to end at 10 Mbit/s (estimate: 100 MiB at the capped rate + the ${fmt.size(small.pkg.payloadBytes)} install)`,
    value: fmt.ms(endToEnd), reference: 'the Python updater\'s bound: 300 s', ratio: fmt.ratio(endToEnd / 300_000), runs: '–',
  });

  for (const p of PROCESSES) {
    const atSmall = median(small.runs.map((r) => r.peak[p]));
    const atLarge = median(large.runs.map((r) => r.peak[p]));
    rows.push({
      measure: `Peak RSS (VmHWM) of ${p} over a ${fmt.size(small.pkg.payloadBytes)} update`,
      value: fmt.mib(atSmall), reference: `idle bare node: ${fmt.mib(bareRss)}`, ratio: fmt.ratio(atSmall / bareRss), runs: String(small.runs.length),
    });
    rows.push({
      measure: `Peak RSS (VmHWM) of ${p} over a ${fmt.size(large.pkg.payloadBytes)} update`,
      value: fmt.mib(atLarge), reference: `same, ${fmt.size(small.pkg.payloadBytes)} update: ${fmt.mib(atSmall)}`, ratio: fmt.ratio(atLarge / atSmall), runs: String(large.runs.length),
    });
  }
  for (const p of PROCESSES) {
    const after = median(large.runs.map((r) => r.idleAfter[p]));
    rows.push({
      measure: `RSS of ${p} idle, 1 s after a ${fmt.size(large.pkg.payloadBytes)} update`,
      value: fmt.mib(after), reference: `idle bare node: ${fmt.mib(bareRss)}`, ratio: fmt.ratio(after / bareRss), runs: String(large.runs.length),
    });
  }
  return rows;
}
