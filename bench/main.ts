import { mkdirSync, mkdtempSync, promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchArm64 } from './benches/arm64.js';
import { benchBudget } from './benches/budget.js';
import { benchCapped } from './benches/capped.js';
import { benchColdStart } from './benches/cold-start.js';
import { benchDownload } from './benches/download.js';
import { benchIdle } from './benches/idle.js';
import { benchInstall } from './benches/install.js';
import { benchPeers } from './benches/peers.js';
import { benchPostCmds } from './benches/post-cmds.js';
import { benchProgressLatency } from './benches/progress-latency.js';
import { benchResume } from './benches/resume.js';
import { benchTrust } from './benches/trust.js';
import type { BenchContext } from './context.js';
import { nowMs } from './lib/clock.js';
import { requireTools } from './lib/commands.js';
import { describeCommit, describeMachine } from './lib/machine.js';
import { writeBigPackage } from './lib/packages.js';
import { fmt, table, type Row } from './lib/report.js';
import { OriginProcess } from './origin/origin-process.js';
import { makePlan, type Plan } from './plan.js';

// `make bench`: every benchmark against real service processes, one table on stdout and in
// BENCHMARKS.md. A quick run (BENCH_QUICK=1) or a selection (BENCH_ONLY=download,install) writes
// var/bench/BENCHMARKS.partial.md instead, so the committed record only ever holds full runs.
// Progress goes to stderr.

// capped first: its ~50 min are link time, a few percent of a core, and the rows that need a
// quiet machine follow it
const BENCHES: Record<string, (ctx: BenchContext) => Promise<Row[]>> = {
  capped: benchCapped,
  download: benchDownload,
  latency: benchProgressLatency,
  'cold-start': benchColdStart,
  resume: benchResume,
  install: benchInstall,
  'post-cmds': benchPostCmds,
  trust: benchTrust,
  idle: benchIdle,
  budget: benchBudget,
  // SWUpdate and Mender from Debian beside ours; `make bench-peers` runs it alone
  peers: benchPeers,
  // last: the emulated runs keep both cores busy
  arm64: benchArm64,
};

/** Benchmarks that make their own files and servers: a selection of only these skips the shared ones. */
const SELF_CONTAINED = new Set(['peers']);

type Shared = Pick<BenchContext, 'origin' | 'cappedOrigin' | 'packages'>;

/** The packages most benchmarks download, and the two servers (full speed, 10 Mbit/s) that serve them. */
async function sharedPackages(plan: Plan, served: string, cleanups: Array<() => Promise<unknown>>): Promise<Shared> {
  mkdirSync(served);
  say(
    `writing the packages (${fmt.size(plan.smallPackage)}, ${fmt.size(plan.largePackage)}, ${fmt.size(plan.resumeCappedPackage)}) to ${served}`,
  );
  const packages = {
    small: await writeBigPackage(path.join(served, 'small.zip'), '2.0.0', plan.smallPackage),
    large: await writeBigPackage(path.join(served, 'large.zip'), '2.0.0', plan.largePackage),
    resumeCapped: await writeBigPackage(path.join(served, 'resume-capped.zip'), '2.0.0', plan.resumeCappedPackage),
  };
  const origin = await OriginProcess.start(served, null);
  cleanups.push(() => origin.stop());
  const cappedOrigin = await OriginProcess.start(served, plan.capBytesPerSecond);
  cleanups.push(() => cappedOrigin.stop());
  return { origin, cappedOrigin, packages };
}

/** For a selection of self-contained benchmarks: touching the shared packages is a bug in SELF_CONTAINED. */
function withoutSharedPackages(base: Omit<BenchContext, keyof Shared>): BenchContext {
  const none = (): never => {
    throw new Error('a benchmark in SELF_CONTAINED (bench/main.ts) used the shared packages or origins');
  };
  return Object.defineProperties(
    { ...base },
    { origin: { get: none }, cappedOrigin: { get: none }, packages: { get: none } },
  ) as BenchContext;
}

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const say = (m: string) => process.stderr.write(`bench: ${m}\n`);

async function run(): Promise<void> {
  await requireTools(['curl', 'systemd-socket-activate', 'cp', 'sync']);
  const plan = makePlan();
  const unknown = plan.only?.filter((n) => !(n in BENCHES)) ?? [];
  if (unknown.length)
    throw new Error(`BENCH_ONLY: no benchmark ${unknown.join(', ')} (there are ${Object.keys(BENCHES).join(', ')})`);
  const machine = describeMachine();
  const commit = describeCommit(repo);
  const t0 = nowMs();
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'tope-bench-'));
  const cleanups: Array<() => Promise<unknown>> = [() => fsp.rm(scratch, { recursive: true, force: true })];
  let rows: Row[] = [];
  const sections: string[] = [];
  // the machine line has the load at the start only; each benchmark's own tells which rows ran beside other work
  const loads: string[] = [];
  try {
    const selected = Object.keys(BENCHES).filter((name) => !plan.only || plan.only.includes(name));
    const base = { plan, scratch, say, sections };
    const ctx: BenchContext = selected.some((name) => !SELF_CONTAINED.has(name))
      ? { ...base, ...(await sharedPackages(plan, path.join(scratch, 'served'), cleanups)) }
      : withoutSharedPackages(base);
    for (const [name, bench] of Object.entries(BENCHES)) {
      if (plan.only && !plan.only.includes(name)) continue;
      const load = os.loadavg()[0].toFixed(2);
      loads.push(`${name} ${load}`);
      say(`${name}: load average ${load}`);
      rows = rows.concat(await bench(ctx));
    }
  } finally {
    while (cleanups.length) await cleanups.pop()!().catch((e) => say(`cleanup: ${(e as Error).message}`));
  }
  const minutes = (nowMs() - t0) / 60_000;
  const out = [table(rows), ...sections].join('\n\n');
  process.stdout.write(`${out}\n`);
  // only a full run of every benchmark is a record
  const partial = plan.quick || plan.only !== null;
  const target = partial ? path.join(repo, 'var/bench/BENCHMARKS.partial.md') : path.join(repo, 'BENCHMARKS.md');
  mkdirSync(path.dirname(target), { recursive: true });
  const notes = readFileSync(path.join(repo, 'bench/NOTES.md'), 'utf8');
  writeFileSync(
    target,
    [
      '# Benchmarks',
      '',
      `Written by \`make bench\`${plan.quick ? ' (BENCH_QUICK=1: small sizes, few runs — a smoke run, not a record)' : ''}${plan.only ? ` (BENCH_ONLY=${plan.only.join(',')})` : ''} in ${minutes.toFixed(1)} min, ${commit}, on: ${machine}.`,
      '',
      'Each figure is the median of the runs its row counts; the reference beside it was measured in the same run, ' +
        'interleaved with it where the row allows, and the ratio is the figure divided by the reference, so that a run on another machine ' +
        'compares by its ratios. The services are the real processes (`dist/bundle/<service>.js`, with the NODE_OPTIONS and the Nice= of their units), each with its own ' +
        'temp directories; packages are real zips served from disk by a Node HTTP server in its own process.',
      '',
      `Load average (1 min) as each benchmark began: ${loads.join(', ')}.`,
      '',
      out,
      '',
      notes.trim(),
      '',
    ].join('\n'),
  );
  say(`done in ${minutes.toFixed(1)} min; written to ${path.relative(repo, target)}`);
}

run().catch((e) => {
  say(`failed: ${(e as Error).stack ?? e}`);
  process.exit(1);
});
