import { promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import type { BenchContext } from '../context.js';
import { bareNodeRss } from '../lib/bare-node.js';
import { BenchDevice, loggedAt } from '../lib/bench-device.js';
import { sleep } from '../lib/clock.js';
import { hashCost, processCpuMs, shellCpuMs } from '../lib/cpu.js';
import { activatedWorker, deployedDevice } from '../lib/deployed.js';
import { bundleLoneDownload, loneDownload, type LoneDownload } from '../lib/lone-download.js';
import { outcome, requestDownload, requestUpdate } from '../lib/downloads.js';
import { UNIT_PREFIX, type PackageFile } from '../lib/packages.js';
import { readMemory, runningNode } from '../lib/proc.js';
import { Service } from '../../test/helpers/services.js';
import { fmt, type Row } from '../lib/report.js';
import { median } from '../lib/stats.js';
import { PROCESSES, rateOf, type Proc } from '../lib/update-run.js';
import type { OriginProcess } from '../origin/origin-process.js';

// The printer's budget, each figure against its bound's reference in the same run:
// every process's peak RSS over a whole update of the large package against a bare node + 16 MiB;
// the sum of the two processes at work, sampled together, at the download's and the install's
// peak against 110 MiB; and the fetcher's CPU time per GiB against MD5 + SHA-256 of the same
// bytes on one thread, with curl + md5sum + sha256sum beside it.

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const PAIR_BOUND = 110 * MiB;
/** The peers' side by side: our processes' peak RSS summed during an update. */
const SUM_BOUND = 150 * MiB;

/**
 * The fetcher's download path alone, with no service around it (bench/reference/lone-download.ts),
 * down to no HTTP parser and no compiler: what its peak is made of. Each is a row beside the fetcher's.
 */
const LONE_DOWNLOADS = [
  {
    label:
      "the fetcher's download path alone: undici's request through its Agent and engine flags, its body reader and part file (MD5+SHA-256, batched writes), no service around it",
    mode: 'undici',
    flags: [],
  },
  {
    label:
      'the same with the body read from a bare TCP socket, no HTTP parser (the floor under any HTTP client in Node)',
    mode: 'tcp',
    flags: [],
  },
  {
    label:
      "the same bare TCP read under --jitless (no compiler at all; undici's parser is WebAssembly, which --jitless turns off)",
    mode: 'tcp',
    flags: ['--jitless'],
  },
  {
    label:
      "the same path with Node's own HTTP client under --jitless (its parser is C++, which --jitless leaves working)",
    mode: 'node-http',
    flags: ['--jitless'],
  },
] as const;

type Phase = 'download' | 'install';

interface BudgetRun {
  peak: Record<Proc, number>;
  /** The largest simultaneous VmRSS of gateway + fetcher while downloading. */
  downloadPair: number;
  /** The same of gateway + installer while installing. */
  installPair: number;
  /** The largest simultaneous PSS of each pair, from the same samples. */
  pairPss: Record<Phase, number>;
  fetcherCpuMs: number;
  downloadMs: number;
}

/**
 * Proportional set size (/proc/PID/smaps_rollup's Pss), in bytes: each page counted once, split
 * between the processes that map it. Two Node processes share the node binary's ~40 MiB of file
 * pages, which RSS counts in full in each; PSS counts them once across the two. Every other
 * process that maps the same node binary (another Node program on the machine) takes its share
 * too, so on a machine running other Node programs the figure is lower than on a printer where
 * only the updater's processes run node.
 */
function readPss(pid: number): number {
  try {
    const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    return Number(/^Pss:\s*(\d+) kB/m.exec(rollup)?.[1] ?? 0) * 1024;
  } catch {
    return 0; // the process is gone
  }
}

/** Samples the three processes together; `phase` says which pair's sum is being watched. */
class PairSampler {
  phase: Phase = 'download';
  readonly sums = { download: 0, install: 0 };
  /** The same pairs' PSS, read in the same samples right after their RSS. */
  readonly pss = { download: 0, install: 0 };
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly pids: Record<Proc, number>) {
    this.timer = setInterval(() => this.sample(), 20);
  }

  sample(): void {
    const rss = (p: Proc) => readMemory(this.pids[p])?.rss ?? 0;
    const worker: Proc = this.phase === 'download' ? 'fetcher' : 'installer';
    this.sums[this.phase] = Math.max(this.sums[this.phase], rss('api-gateway') + rss(worker));
    this.pss[this.phase] = Math.max(
      this.pss[this.phase],
      readPss(this.pids['api-gateway']) + readPss(this.pids[worker]),
    );
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

async function budgetRun(origin: OriginProcess, pkg: PackageFile): Promise<BudgetRun> {
  const d = new BenchDevice();
  try {
    await d.start('fetcher', 'installer', 'api-gateway');
    await d.unitsRunning(1, UNIT_PREFIX);
    const pids = Object.fromEntries(PROCESSES.map((p) => [p, d.pid(p)])) as Record<Proc, number>;
    const sampler = new PairSampler(pids);
    const version = '2.0.0';
    const cpu0 = processCpuMs(pids.fetcher);
    const t0 = Date.now();
    await requestDownload(d.base, origin.url(path.basename(pkg.file)), pkg, version);
    const verified = await outcome(d.service('fetcher'), 0, 'package verified', 'download failed', 60 * 60_000);
    const fetcherCpuMs = processCpuMs(pids.fetcher) - cpu0;
    const downloadMs = loggedAt(verified) - t0;
    sampler.sample();
    await d.waitStage('toInstall', 60_000);
    sampler.phase = 'install';
    const installer = d.service('installer');
    const from = installer.lines.length;
    await requestUpdate(d.base, version);
    await outcome(installer, from, 'install succeeded', 'install failed', 30 * 60_000);
    await d.waitStage('success', 60_000);
    sampler.sample();
    sampler.stop();
    const peak = Object.fromEntries(PROCESSES.map((p) => [p, readMemory(pids[p])?.peakRss ?? NaN])) as Record<
      Proc,
      number
    >;
    return {
      peak,
      downloadPair: sampler.sums.download,
      installPair: sampler.sums.install,
      pairPss: { ...sampler.pss },
      fetcherCpuMs,
      downloadMs,
    };
  } finally {
    await d.dispose();
  }
}

/** A deployed run's peak of the summed RSS, and what each process held in that sample. */
interface DeployedRun {
  sum: number;
  /** The RSS of each in the sample of the peak (0: not running node; an activator holding a socket counts as not running). */
  atPeak: Record<Proc, number>;
  overlapMs: number;
}

/**
 * A whole update as deployed: the gateway up, the workers socket-activated with the units' idle
 * exit (TOPE_IDLE_EXIT_MS at its default), so that each starts at its first command and ends when
 * its work has; device-api answering the reports (a worker ends only once its last one is
 * answered); the RSS of every process alive, summed in each sample (every 20 ms), a worker from
 * the exec of its node (on a printer systemd holds the socket, not an activator). /update goes
 * out when the bench's poll of /progress sees toInstall, as device-api's would.
 */
async function deployedRun(origin: OriginProcess, pkg: PackageFile): Promise<DeployedRun> {
  const { device: d, stop } = await deployedDevice();
  const activated: Service[] = [];
  let timer: NodeJS.Timeout | undefined;
  try {
    activated.push(activatedWorker('fetcher', d.env), activatedWorker('installer', d.env));
    const [fetcher, installer] = activated;
    const gateway = d.pid('api-gateway');
    let sum = 0;
    let atPeak: Record<Proc, number> = { 'api-gateway': 0, fetcher: 0, installer: 0 };
    let overlapMs = 0;
    // a worker counts from the exec of its node: on a printer systemd holds its socket, not an activator
    const alive = (s: Service) => {
      const pid = runningNode(s.child.pid);
      return pid === null ? null : readMemory(pid);
    };
    timer = setInterval(() => {
      const [f, i] = [alive(fetcher), alive(installer)];
      const sample = { 'api-gateway': readMemory(gateway)?.rss ?? 0, fetcher: f?.rss ?? 0, installer: i?.rss ?? 0 };
      const total = sample['api-gateway'] + sample.fetcher + sample.installer;
      if (total > sum) [sum, atPeak] = [total, sample];
      // both workers running node in the same sample
      if (f && i) overlapMs += 20;
    }, 20);
    const version = '2.0.0';
    await requestDownload(d.base, origin.url(path.basename(pkg.file)), pkg, version);
    await outcome(fetcher, 0, 'package verified', 'download failed', 60 * 60_000);
    await d.waitStage('toInstall', 60_000); // the record follows the log line
    await requestUpdate(d.base, version);
    await outcome(installer, 0, 'install succeeded', 'install failed', 30 * 60_000);
    await d.waitStage('success', 60_000);
    return { sum, atPeak, overlapMs };
  } finally {
    clearInterval(timer);
    await Promise.all(activated.map((s) => s.kill('SIGKILL')));
    await stop();
  }
}

export async function benchBudget(ctx: BenchContext): Promise<Row[]> {
  const { plan, packages } = ctx;
  const pkg = packages.large;
  const bare: number[] = [];
  for (let i = 0; i < 3; i++) bare.push(await bareNodeRss());
  const processBound = median(bare) + 16 * MiB;
  const runs: BudgetRun[] = [];
  const deployed: DeployedRun[] = [];
  const hashing: Array<{ cpuMs: number; wallMs: number }> = [];
  const tools: number[] = [];
  const lone: LoneDownload[][] = LONE_DOWNLOADS.map(() => []);
  const loneBundle = await bundleLoneDownload(ctx.scratch);
  for (let i = 1; i <= plan.runs.large; i++) {
    ctx.say(`budget, a whole ${fmt.size(pkg.payloadBytes)} update: run ${i}/${plan.runs.large}`);
    runs.push(await budgetRun(ctx.origin, pkg));
    deployed.push(await deployedRun(ctx.origin, pkg));
    hashing.push(await hashCost(pkg.file));
    const out = path.join(ctx.scratch, 'budget-curl.out');
    tools.push(
      await shellCpuMs('curl -sS --fail -o "$2" "$1" && md5sum "$2" && sha256sum "$2"', [
        ctx.origin.url(path.basename(pkg.file)),
        out,
      ]),
    );
    await fsp.rm(out, { force: true });
    for (const [k, { mode, flags }] of LONE_DOWNLOADS.entries()) {
      const url = ctx.origin.url(path.basename(pkg.file));
      const got = await loneDownload(loneBundle, mode, url, pkg.size, out, [...flags]);
      if (got.md5 !== pkg.md5) throw new Error(`lone download (${mode}): MD5 ${got.md5}, not ${pkg.md5}`);
      lone[k]!.push(got);
    }
    await sleep(200);
  }
  const perGiB = (ms: number) => (ms * GiB) / pkg.size;
  const size = fmt.size(pkg.payloadBytes);
  const n = String(runs.length);
  const rows: Row[] = PROCESSES.map((p) => {
    const peak = median(runs.map((r) => r.peak[p]));
    return {
      measure: `Peak RSS (VmHWM) of ${p} over a whole ${size} update at loopback speed (bound: ≤ 1.00×)`,
      value: fmt.mib(peak),
      reference: `idle bare node + 16 MiB: ${fmt.mib(processBound)}`,
      ratio: fmt.ratio(peak / processBound),
      runs: n,
    };
  });
  for (const [k, { label }] of LONE_DOWNLOADS.entries()) {
    const peak = median(lone[k]!.map((r) => r.peakRss));
    rows.push({
      measure: `Peak RSS (VmHWM) of ${label}, ${size} over loopback (informative)`,
      value: fmt.mib(peak),
      reference: `idle bare node + 16 MiB: ${fmt.mib(processBound)}`,
      ratio: fmt.ratio(peak / processBound),
      runs: n,
    });
  }
  for (const [pair, what, key, phase] of [
    ['api-gateway + fetcher', "the download's", 'downloadPair', 'download'],
    ['api-gateway + installer', "the install's", 'installPair', 'install'],
  ] as const) {
    const sum = median(runs.map((r) => r[key]));
    rows.push({
      measure: `RSS of ${pair} together at ${what} peak, ${size} (sampled every 20 ms; bound: ≤ 1.00×)`,
      value: fmt.mib(sum),
      reference: `the bound: ${fmt.mib(PAIR_BOUND)}`,
      ratio: fmt.ratio(sum / PAIR_BOUND),
      runs: n,
    });
    // beside it, the same pair with the node binary's shared pages counted once
    const pss = median(runs.map((r) => r.pairPss[phase]));
    rows.push({
      measure: `PSS of ${pair} together at ${what} peak, ${size} (same samples; shared pages split between the processes mapping them, other Node programs on the machine included)`,
      value: fmt.mib(pss),
      reference: `the bound: ${fmt.mib(PAIR_BOUND)}`,
      ratio: fmt.ratio(pss / PAIR_BOUND),
      runs: n,
    });
  }
  const deployedSum = median(deployed.map((r) => r.sum));
  // the run whose peak is the median: what each process held in its peak's sample
  const { atPeak } = [...deployed].sort((a, b) => a.sum - b.sum)[Math.floor(deployed.length / 2)]!;
  const shares = PROCESSES.map((p) => `${p} ${fmt.mib(atPeak[p])}`).join(', ');
  rows.push({
    measure: `RSS of our processes alive together, summed at its peak over a whole ${size} update, the workers socket-activated as deployed (each ends when its work has, and counts from its node's exec; the two ran node together for ${median(deployed.map((r) => r.overlapMs))} ms, sampled every 20 ms; at the median run's peak: ${shares}; the peers' bound: ≤ 1.00×)`,
    value: fmt.mib(deployedSum),
    reference: `the bound: ${fmt.mib(SUM_BOUND)}`,
    ratio: fmt.ratio(deployedSum / SUM_BOUND),
    runs: n,
  });
  const fetcherCpu = median(runs.map((r) => perGiB(r.fetcherCpuMs)));
  const hashCpu = median(hashing.map((h) => perGiB(h.cpuMs)));
  const hashRate = median(hashing.map((h) => rateOf(pkg.size, h.wallMs)));
  const downloadRate = median(runs.map((r) => rateOf(pkg.size, r.downloadMs)));
  rows.push(
    {
      measure: `Fetcher CPU time (user+sys) per GiB downloaded over loopback, ${size} (bound: ≤ 1.30×)`,
      value: `${(fetcherCpu / 1000).toFixed(2)} s`,
      reference: `MD5+SHA-256 of the same bytes on one thread: ${(hashCpu / 1000).toFixed(2)} s`,
      ratio: fmt.ratio(fetcherCpu / hashCpu),
      runs: n,
    },
    {
      measure: `Download ${size} over loopback (POST /download → verified) against one-thread hashing (bound: ≥ 0.90×)`,
      value: fmt.rate(downloadRate),
      reference: `MD5+SHA-256 on one thread: ${fmt.rate(hashRate)}`,
      ratio: fmt.ratio(downloadRate / hashRate),
      runs: n,
    },
    {
      measure: `curl -o + md5sum + sha256sum of the same file, CPU time (user+sys) per GiB (informative)`,
      value: `${(median(tools.map(perGiB)) / 1000).toFixed(2)} s`,
      reference: `MD5+SHA-256 on one Node thread: ${(hashCpu / 1000).toFixed(2)} s`,
      ratio: fmt.ratio(median(tools.map(perGiB)) / hashCpu),
      runs: n,
    },
  );
  return rows;
}
