import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { BenchContext } from '../context.js';
import { bareNodeRss } from '../lib/bare-node.js';
import { nowMs } from '../lib/clock.js';
import { timeCommand, writeBack } from '../lib/commands.js';
import { digestFile, type PackageFile } from '../lib/packages.js';
import { fmt, type Row } from '../lib/report.js';
import { median } from '../lib/stats.js';
import { curlMs, PROCESSES, rateOf, updateRun, type UpdateRun } from '../lib/update-run.js';

// Download throughput against curl on the same file from the same server at loopback speed (the
// 10 Mbit/s link is benches/capped.ts); and the memory of each process across a whole update (download and
// install) of a small and a large package, which must not grow with the package.

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
    // interleaved, so that both see the same machine, each after the last one's writes are on disk
    await writeBack();
    r.curl.push(await curlMs(ctx.scratch, ctx.origin, pkg));
    await writeBack();
    r.runs.push(await updateRun(ctx.origin, pkg));
    const copy = path.join(ctx.scratch, 'copy.zip');
    await writeBack();
    r.copy.push(await timeCommand('sh', ['-c', 'cp "$0" "$1" && sync', pkg.file, copy]));
    await fsp.rm(copy, { force: true });
  }
  return r;
}

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
      value: fmt.rate(ours),
      reference: `curl -o, same server: ${fmt.rate(curl)}`,
      ratio: fmt.ratio(ours / curl),
      runs: String(s.runs.length),
    });
  }
  rows.push({
    measure: `MD5+SHA-256 of the ${fmt.size(packages.small.payloadBytes)} file on one Node thread, from the page cache (the fetcher's CPU ceiling)`,
    value: fmt.rate(hashRate),
    reference: `curl -o, same server: ${fmt.rate(curlSmall)}`,
    ratio: fmt.ratio(hashRate / curlSmall),
    runs: String(hashMs.length),
  });
  for (const s of [small, large]) {
    const ms = median(s.runs.map((r) => r.installMs));
    const copy = median(s.copy);
    rows.push({
      measure: `Install of that ${fmt.size(s.pkg.payloadBytes)} package (POST /update → success)`,
      value: fmt.ms(ms),
      reference: `cp of the package + sync: ${fmt.ms(copy)}`,
      ratio: fmt.ratio(ms / copy),
      runs: String(s.runs.length),
    });
  }

  for (const p of PROCESSES) {
    const atSmall = median(small.runs.map((r) => r.peak[p]));
    const atLarge = median(large.runs.map((r) => r.peak[p]));
    rows.push({
      measure: `Peak RSS (VmHWM) of ${p} over a ${fmt.size(small.pkg.payloadBytes)} update`,
      value: fmt.mib(atSmall),
      reference: `idle bare node: ${fmt.mib(bareRss)}`,
      ratio: fmt.ratio(atSmall / bareRss),
      runs: String(small.runs.length),
    });
    rows.push({
      measure: `Peak RSS (VmHWM) of ${p} over a ${fmt.size(large.pkg.payloadBytes)} update`,
      value: fmt.mib(atLarge),
      reference: `same, ${fmt.size(small.pkg.payloadBytes)} update: ${fmt.mib(atSmall)}`,
      ratio: fmt.ratio(atLarge / atSmall),
      runs: String(large.runs.length),
    });
  }
  for (const p of PROCESSES) {
    const after = median(large.runs.map((r) => r.idleAfter[p]));
    rows.push({
      measure: `RSS of ${p} idle, 1 s after a ${fmt.size(large.pkg.payloadBytes)} update`,
      value: fmt.mib(after),
      reference: `idle bare node: ${fmt.mib(bareRss)}`,
      ratio: fmt.ratio(after / bareRss),
      runs: String(large.runs.length),
    });
  }
  return rows;
}
