import type { BenchContext } from '../context.js';
import { bounds } from '../plan.js';
import type { PackageFile } from '../lib/packages.js';
import { fmt, type Row } from '../lib/report.js';
import { median } from '../lib/stats.js';
import { curlMs, PROCESSES, rateOf, updateRun, type UpdateRun } from '../lib/update-run.js';

// The printer's own link: whole updates of the "100 MB" and "1 GB" packages through a 10 Mbit/s
// token bucket, from POST /download to `install succeeded`, against curl fetching the same file
// through the same cap. The bucket is per connection, so curl runs beside the device on its own
// "link" at the same time: one run costs the link's time once (1 GiB: ~14 min), and the two
// streams together use a few percent of one core, so neither slows the other.

interface CappedResult {
  pkg: PackageFile;
  runs: UpdateRun[];
  curl: number[];
}

async function measureCapped(ctx: BenchContext, pkg: PackageFile, runs: number): Promise<CappedResult> {
  const r: CappedResult = { pkg, runs: [], curl: [] };
  for (let i = 1; i <= runs; i++) {
    ctx.say(
      `update ${fmt.size(pkg.payloadBytes)} at 10 Mbit/s (~${Math.round(pkg.size / ctx.plan.capBytesPerSecond)} s): run ${i}/${runs}`,
    );
    const [curl, run] = await Promise.all([
      curlMs(ctx.scratch, ctx.cappedOrigin, pkg),
      updateRun(ctx.cappedOrigin, pkg),
    ]);
    r.curl.push(curl);
    r.runs.push(run);
  }
  return r;
}

export async function benchCapped(ctx: BenchContext): Promise<Row[]> {
  const { plan, packages } = ctx;
  const small = await measureCapped(ctx, packages.small, plan.runs.cappedSmall);
  const large = await measureCapped(ctx, packages.large, plan.runs.cappedLarge);
  const rows: Row[] = [];
  for (const s of [small, large]) {
    const ours = median(s.runs.map((r) => rateOf(s.pkg.size, r.downloadMs)));
    const curl = median(s.curl.map((ms) => rateOf(s.pkg.size, ms)));
    const endToEnd = median(s.runs.map((r) => r.endToEndMs));
    const curlMedian = median(s.curl);
    const bound = s === small ? `; the bound for 100 MB: ${bounds.capped100MBSeconds} s` : '';
    rows.push(
      {
        measure: `Download ${fmt.size(s.pkg.payloadBytes)} through a 10 Mbit/s token bucket (POST /download → verified)`,
        value: fmt.rate(ours),
        reference: `curl -o, same cap, beside it: ${fmt.rate(curl)}`,
        ratio: fmt.ratio(ours / curl),
        runs: String(s.runs.length),
      },
      {
        measure: `${fmt.size(s.pkg.payloadBytes)} end to end at 10 Mbit/s (POST /download → install succeeded${bound})`,
        value: fmt.ms(endToEnd),
        reference: `curl's download alone: ${fmt.ms(curlMedian)}`,
        ratio: fmt.ratio(endToEnd / curlMedian),
        runs: String(s.runs.length),
      },
    );
  }
  for (const p of PROCESSES) {
    const atSmall = median(small.runs.map((r) => r.peak[p]));
    const atLarge = median(large.runs.map((r) => r.peak[p]));
    const minutes = median(large.runs.map((r) => r.endToEndMs)) / 60_000;
    rows.push({
      measure: `Peak RSS (VmHWM) of ${p} over a ${fmt.size(large.pkg.payloadBytes)} update at 10 Mbit/s (${minutes.toFixed(1)} min)`,
      value: fmt.mib(atLarge),
      reference: `same, ${fmt.size(small.pkg.payloadBytes)} at 10 Mbit/s: ${fmt.mib(atSmall)}`,
      ratio: fmt.ratio(atLarge / atSmall),
      runs: String(large.runs.length),
    });
  }
  return rows;
}
