import { arm64Launcher, findArm64Runtime } from '../../test/helpers/arm64.js';
import type { BenchContext } from '../context.js';
import { fmt, type Row } from '../lib/report.js';
import { median } from '../lib/stats.js';
import { updateRun } from '../lib/update-run.js';

// Informative, not a bound: the same whole update (POST /download → install succeeded) with the
// services on the pinned Node's arm64 build under qemu-aarch64-static, beside the same update on
// this machine's own Node, interleaved. Emulation is not a board: the ratio is QEMU's cost on
// this CPU, and says nothing of an RK3566; the row shows the arm64 build does the whole update.

export async function benchArm64(ctx: BenchContext): Promise<Row[]> {
  const runtime = await findArm64Runtime();
  const measure = `Whole update of the ${fmt.size(ctx.packages.small.payloadBytes)} package (POST /download → install succeeded), services on arm64 Node ${process.version} under qemu-aarch64-static (informative: emulation, not a board)`;
  if ('missing' in runtime) {
    ctx.say(`arm64: skipped: ${runtime.missing}`);
    return [{ measure, value: 'skipped', reference: runtime.missing.split('\n')[0], ratio: '–', runs: '0' }];
  }
  const launcher = arm64Launcher(runtime);
  const emulated: number[] = [];
  const native: number[] = [];
  for (let i = 1; i <= ctx.plan.runs.arm64; i++) {
    ctx.say(`arm64 under QEMU: run ${i}/${ctx.plan.runs.arm64}`);
    native.push((await updateRun(ctx.origin, ctx.packages.small)).endToEndMs);
    const run = await updateRun(ctx.origin, ctx.packages.small, launcher);
    ctx.say(`arm64 under QEMU: download ${fmt.ms(run.downloadMs)}, install ${fmt.ms(run.installMs)}`);
    emulated.push(run.endToEndMs);
  }
  const value = median(emulated);
  const reference = median(native);
  return [
    {
      measure,
      value: fmt.ms(value),
      reference: `the same on ${process.arch} Node, natively: ${fmt.ms(reference)}`,
      ratio: fmt.ratio(value / reference),
      runs: String(emulated.length),
    },
  ];
}
