// The power-cut campaign: whole updates in the QEMU VM, each cut by a SIGKILL of qemu at an
// instant chosen across its stages (or, a few times, during the recovery boot that follows),
// then the same disk booted again; the guest checks every invariant and reinstalls the same
// package (test/system/powercut-vm.ts). One disk serves the whole chain of cuts: each recovery
// boot checks the last cut, then begins the next update, which the host cuts in turn.
import { PowercutVm, type Boot, type CutPlan, type Mark, type VmFinding } from '../helpers/powercut.js';

export interface PowercutOptions {
  /** The cuts, in order: random ones are made with `randomPlan`, CI's are fixed. */
  plans: Array<(ctx: PlanContext) => CutPlan>;
  work: string;
  log: (line: string) => void;
  /** Begin no new cut after this long (the figures then say how many fitted). */
  budgetMs?: number;
}

export interface PlanContext {
  /** A whole update's duration as last measured in the guest (ms of host time). */
  updateMs: number;
  /** From qemu's start to the recovery's end, as last measured. */
  recoveryMs: number;
  rand: () => number;
}

export interface CutRecord {
  cut: number;
  boot: number;
  stage: string;
  atMs: number;
  what: string;
  recoveryCut: boolean;
  /** The guest's last mark before the power went. */
  lastMark: Mark | null;
}
export interface PowercutResult {
  cuts: CutRecord[];
  boots: number;
  /** Boots whose guest checked the invariants after a cut (the recovery completed). */
  recoveries: number;
  violations: Array<{ cut: string; finding: VmFinding; console: string }>;
  byStage: Record<string, number>;
  ms: number;
  bootMs: number[];
}

const isUpdateStart = (m: Mark) => m.kind === 'update-start';

/** A cut at a uniform instant of a whole update (from its download command to the probation's end). */
export const randomUpdateCut = (ctx: PlanContext): CutPlan => ({
  from: isUpdateStart,
  delayMs: Math.round(ctx.rand() * ctx.updateMs),
  what: 'update, random instant',
});

/** A cut during the recovery boot: between the kernel's start and the units having settled. */
export const recoveryCut = (ctx: PlanContext): CutPlan => ({
  from: 'spawn',
  delayMs: Math.round(ctx.recoveryMs * (0.3 + 0.7 * ctx.rand())),
  what: 'recovery boot',
});

/** A cut `delayMs` after the guest first saw a stage (CI's deterministic cuts). */
export const cutAtStage = (label: string, test: (m: Mark) => boolean, delayMs: number) => (): CutPlan => ({
  from: (m) => m.kind === 'stage' && m.label === 'update' && test(m),
  delayMs,
  what: label,
});

/**
 * A cut at a failpoint of the install: the installer stops itself there (SIGSTOP, as
 * TOPE_FAILPOINT_STOP does), the guest marks it, and the power goes at once.
 */
export const cutAtFailpoint = (label: string, failpoint: string) => (): CutPlan => ({
  from: (m) => m.kind === 'frozen',
  delayMs: 0,
  what: label,
  freezeAt: failpoint,
});

/** Mulberry32: a seeded campaign replays its cut instants. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export async function powercutCampaign(
  opts: PowercutOptions,
  seed: number,
  versions = opts.plans.length * 2 + 4,
): Promise<PowercutResult> {
  const t0 = Date.now();
  const vm = new PowercutVm(opts.work);
  const ctx: PlanContext = { updateMs: 120_000, recoveryMs: 150_000, rand: seeded(seed) };
  const res: PowercutResult = { cuts: [], boots: 0, recoveries: 0, violations: [], byStage: {}, ms: 0, bootMs: [] };
  await vm.preparePayload(versions);
  // the first boot provisions the fresh disk, then updates; every later boot checks the cut(s)
  // before it and goes on (a violation stays on the record, and the next checks show whether
  // the device is still sound)
  vm.freshDisk();
  // what the next boot's checks are about: the cut(s) since the last check
  let pendingCuts: CutRecord[] = [];
  const learn = (b: Boot) => {
    // a whole update, from its command to its end, measured in the guest's own marks
    const start = b.marks.find(isUpdateStart);
    const end = b.marks.find((m) => m.kind === 'update-end');
    if (start && end) ctx.updateMs = end.hostMs - start.hostMs;
    else {
      const again = b.marks.filter((m) => m.label === 'again');
      if (again.length > 1) ctx.updateMs = Math.max(ctx.updateMs * 0.5, again.at(-1)!.hostMs - again[0].hostMs);
    }
    const settled = b.marks.find((m) => m.kind === 'settled');
    if (settled) ctx.recoveryMs = settled.hostMs;
  };
  const record = (b: Boot) => {
    res.boots++;
    res.bootMs.push(b.ms);
    learn(b);
    for (const f of b.findings) {
      if (f.kind === 'check') res.recoveries++;
      if (f.violations?.length) {
        const cut =
          pendingCuts
            .map((c) => `cut ${c.cut} (${c.what}) at ${c.stage}, ${c.atMs} ms into boot ${c.boot}`)
            .join(', then ') || 'no cut';
        res.violations.push({ cut, finding: f, console: vm.consoleTail(b, 80) });
        opts.log(`VIOLATION after ${cut}: ${f.violations.join('; ')}`);
      }
    }
    if (b.findings.some((f) => f.kind === 'check' || f.kind === 'error')) pendingCuts = [];
  };

  for (let i = 0; i < opts.plans.length; i++) {
    if (opts.budgetMs !== undefined && Date.now() - t0 > opts.budgetMs) {
      opts.log(`the time budget is spent: ${i} of ${opts.plans.length} cuts`);
      break;
    }
    // a recovery-boot cut needs a cut to recover from
    let plan = opts.plans[i](ctx);
    if (plan.what === 'recovery boot' && pendingCuts.length === 0) plan = randomUpdateCut(ctx);
    const b = await vm.boot(plan);
    record(b);
    if (b.cut) {
      const recoveryCutHere = plan.what === 'recovery boot' && !b.marks.some((m) => m.kind === 'settled');
      const c: CutRecord = {
        cut: res.cuts.length + 1,
        boot: res.boots,
        stage: recoveryCutHere ? 'recovery boot (before it settled)' : b.cut.stage,
        atMs: b.cut.atMs,
        what: plan.what,
        recoveryCut: recoveryCutHere,
        lastMark: b.cut.lastMark,
      };
      res.cuts.push(c);
      res.byStage[c.stage] = (res.byStage[c.stage] ?? 0) + 1;
      pendingCuts.push(c);
      opts.log(
        `cut ${c.cut}/${opts.plans.length} (${c.what}) at ${c.stage}, ${Math.round(c.atMs / 1000)} s into boot ${res.boots} (${Math.round((Date.now() - t0) / 1000)} s so far, ${res.violations.length} violations)`,
      );
    } else {
      opts.log(`boot ${res.boots} ended without a cut: ${b.findings.map((f) => f.kind).join(', ')}`);
    }
  }
  // the last cut's recovery, checked; then the VM is stopped (the disk is thrown away)
  if (pendingCuts.length) {
    const b = await vm.boot(null, (x) => x.findings.some((f) => f.kind === 'again' || f.kind === 'error'));
    record(b);
  }
  res.ms = Date.now() - t0;
  return res;
}

export function describe(result: PowercutResult): string {
  const stages = Object.entries(result.byStage)
    .sort((a, b) => b[1] - a[1])
    .map(([s, n]) => `${s}: ${n}`)
    .join('; ');
  return `cuts ${result.cuts.length} (${result.cuts.filter((c) => c.recoveryCut).length} during a recovery boot), boots ${result.boots}, recoveries ${result.recoveries}, violations ${result.violations.length}; where they fell: ${stages}`;
}
