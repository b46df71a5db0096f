import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { BenchContext } from '../context.js';
import { bareNodeStartMs } from '../lib/bare-node.js';
import { BenchDevice } from '../lib/bench-device.js';
import { hashCost } from '../lib/cpu.js';
import { sleep } from '../lib/clock.js';
import { outcome, partFileOf, requestDownload } from '../lib/downloads.js';
import type { PackageFile } from '../lib/packages.js';
import type { OriginProcess } from '../origin/origin-process.js';
import { fmt, type Row } from '../lib/report.js';
import { median } from '../lib/stats.js';

// SIGKILL of the fetcher halfway through a full-speed download, then a restart (what systemd's
// Restart=on-failure does): what the origin serves twice, and how long the restart takes to
// ask for the rest (node start, recovery, re-hash of the part file's prefix).

interface ResumeRun {
  refetched: number;
  resumeDelayMs: number;
  resumedAt: number;
}

async function resumeRun(origin: OriginProcess, pkg: PackageFile): Promise<ResumeRun> {
  const d = new BenchDevice();
  try {
    await d.start('fetcher', 'api-gateway');
    await origin.reset();
    const version = '4.0.0';
    await requestDownload(d.base, origin.url(path.basename(pkg.file)), pkg, version);
    const part = partFileOf(d.packagesDir, version);
    for (;;) {
      const size = await fsp.stat(part).then(
        (s) => s.size,
        () => 0,
      );
      if (size >= pkg.size / 2) break;
      await sleep(1);
    }
    await d.kill(d.service('fetcher'));
    const restartedAt = Date.now();
    const [fetcher] = await d.start('fetcher');
    await outcome(fetcher, 0, 'package verified', 'download failed', 10 * 60_000);
    const { bytesServed, requests } = await origin.stats();
    const ranged = requests.find((r) => r.range !== null);
    if (!ranged)
      throw new Error(`the restarted fetcher did not resume with a Range request: ${JSON.stringify(requests)}`);
    return {
      refetched: bytesServed - pkg.size,
      resumeDelayMs: ranged.at - restartedAt,
      resumedAt: Number(/\d+/.exec(ranged.range!)![0]),
    };
  } finally {
    await d.dispose();
  }
}

export async function benchResume(ctx: BenchContext): Promise<Row[]> {
  const runs: ResumeRun[] = [];
  const capped: ResumeRun[] = [];
  const bare: number[] = [];
  const rehash: number[] = [];
  for (let i = 1; i <= ctx.plan.runs.resume; i++) {
    ctx.say(`SIGKILL and resume at full speed: run ${i}/${ctx.plan.runs.resume}`);
    const run = await resumeRun(ctx.origin, ctx.packages.small);
    runs.push(run);
    bare.push(await bareNodeStartMs());
    // the part of the restart no design avoids: a hash's state does not survive the process
    rehash.push((await hashCost(ctx.packages.small.file, run.resumedAt)).wallMs);
  }
  // on a real link the socket buffers hold little: the bytes in flight at the kill are what is lost
  for (let i = 1; i <= ctx.plan.runs.cappedResume; i++) {
    ctx.say(`SIGKILL and resume at 10 Mbit/s: run ${i}/${ctx.plan.runs.cappedResume}`);
    capped.push(await resumeRun(ctx.cappedOrigin, ctx.packages.resumeCapped));
  }
  const refetchedRow = (r: ResumeRun[], pkg: PackageFile, how: string): Row => {
    const refetched = median(r.map((x) => x.refetched));
    return {
      measure: `Bytes fetched again after SIGKILL at 50 % of a ${fmt.size(pkg.payloadBytes)} download ${how}, restart (origin's count − file size)`,
      value: fmt.bytes(refetched),
      reference: `the file: ${fmt.bytes(pkg.size)}`,
      ratio: `${((refetched / pkg.size) * 100).toFixed(2)} %`,
      runs: String(r.length),
    };
  };
  const delay = median(runs.map((r) => r.resumeDelayMs));
  const at = median(runs.map((r) => r.resumedAt));
  const node = median(bare);
  const floor = median(runs.map((_, i) => bare[i] + rehash[i]));
  return [
    refetchedRow(runs, ctx.packages.small, 'at loopback speed'),
    refetchedRow(capped, ctx.packages.resumeCapped, 'through the 10 Mbit/s cap'),
    {
      measure: `Restart → ranged GET at the origin (resumed at ${fmt.mib(at)}: start, recovery, re-hash of the part file; bound: ≤ 2.00×)`,
      value: fmt.ms(delay),
      reference: `node -e 0 + MD5+SHA-256 of that prefix on one thread: ${fmt.ms(floor)} (node -e 0: ${fmt.ms(node)})`,
      ratio: fmt.ratio(delay / floor),
      runs: String(runs.length),
    },
  ];
}
