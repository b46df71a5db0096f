import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { BenchContext } from '../context.js';
import { BenchDevice, loggedAt, standInSystemctl } from '../lib/bench-device.js';
import { timeCommand, writeBack } from '../lib/commands.js';
import { outcome, requestUpdate } from '../lib/downloads.js';
import { buildTreePackage, treePath, UNIT_PREFIX } from '../lib/packages.js';
import { fmt, type Row } from '../lib/report.js';
import { median } from '../lib/stats.js';

// Installs of packages of 10, 100 and 1000 files over a running version of the same shape,
// against `cp -a` + `sync` of such a tree; and the switch downtime, from the stand-in
// systemctl's timestamped calls: the first unit's stop to the last unit's start.

interface InstallRun {
  installMs: number;
  downtimeMs: number;
}

export async function writeTree(root: string, count: number, fileBytes: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const file = path.join(root, treePath(i));
    await fsp.mkdir(path.dirname(file), { recursive: true });
    await fsp.writeFile(file, randomBytes(fileBytes), { mode: 0o755 });
  }
}

const nsToMs = (ns: bigint) => Number(ns) / 1e6;

/** Stop of the first unit → start of the last, from one install's calls. */
export function downtimeOf(calls: Array<{ ns: bigint; cmd: string; unit: string }>): number {
  const ours = calls.filter((c) => c.unit.startsWith(UNIT_PREFIX));
  const firstStop = ours.find((c) => c.cmd === 'stop');
  const lastStart = ours.filter((c) => c.cmd === 'start').at(-1);
  if (!firstStop || !lastStart)
    throw new Error(`no stop/start in the stand-in's calls: ${JSON.stringify(ours.map((c) => `${c.cmd} ${c.unit}`))}`);
  return nsToMs(lastStart.ns - firstStop.ns);
}

/** The same systemctl calls the installer makes across the switch, back to back: their own floor. */
async function callsFloorMs(dir: string, units: number): Promise<number> {
  const names = Array.from({ length: units }, (_, i) => `${UNIT_PREFIX}${i}.service`);
  const script = [
    ...[...names].reverse().flatMap((u) => [`"$0" stop ${u}`, `"$0" is-active ${u} >/dev/null || true`]),
    ...names.flatMap((u, i) => [
      `"$0" start ${u}`,
      ...(i < names.length - 1
        ? [`"$0" is-active ${u} >/dev/null`, `"$0" show -p NRestarts --value ${u} >/dev/null`]
        : []),
    ]),
  ].join('\n');
  await fsp.rm(path.join(dir, 'calls.log'), { force: true });
  await timeCommand('sh', ['-c', script, standInSystemctl], { ...process.env, STANDIN_SYSTEMCTL_DIR: dir });
  const text = await fsp.readFile(path.join(dir, 'calls.log'), 'utf8');
  return downtimeOf(
    text
      .trim()
      .split('\n')
      .map((l) => {
        const [ns, cmd, unit] = l.split(' ');
        return { ns: BigInt(ns), cmd, unit };
      }),
  );
}

async function measureCount(
  ctx: BenchContext,
  count: number,
): Promise<{ runs: InstallRun[]; copyMs: number[]; floorMs: number[] }> {
  const { plan } = ctx;
  const d = new BenchDevice();
  const src = path.join(ctx.scratch, `tree-${count}`);
  const floorDir = path.join(ctx.scratch, `floor-${count}`);
  const out = { runs: [] as InstallRun[], copyMs: [] as number[], floorMs: [] as number[] };
  try {
    await writeTree(path.join(d.versionsDir, 'v1.0.0'), count, plan.installFileBytes);
    await fsp.symlink('v1.0.0', path.join(d.versionsDir, 'current'));
    await writeTree(src, count, plan.installFileBytes);
    await fsp.mkdir(floorDir);
    await d.unitsRunning(plan.unitsPerPackage, UNIT_PREFIX);
    await d.start('installer', 'api-gateway');
    const installer = d.service('installer');
    // one install first, not counted: from then on each has a current and a previous to keep
    for (let r = 0; r <= plan.runs.install; r++) {
      if (r > 0) ctx.say(`install ${count} files: run ${r}/${plan.runs.install}`);
      const version = `1.${r + 1}.0`;
      await d.verified(await buildTreePackage(version, count, plan.installFileBytes, plan.unitsPerPackage), version);
      await fsp.rm(path.join(d.standInDir, 'calls.log'), { force: true });
      const from = installer.lines.length;
      await writeBack();
      const t0 = Date.now();
      await requestUpdate(d.base, version);
      const done = await outcome(installer, from, 'install succeeded', 'install failed', 10 * 60_000);
      const run = { installMs: loggedAt(done) - t0, downtimeMs: downtimeOf(await d.standInCalls()) };
      await d.waitStage('success', 60_000); // the record follows the log line
      if (r === 0) continue;
      out.runs.push(run);
      const dst = d.referenceCopyDir(`copy-${count}`);
      await writeBack();
      out.copyMs.push(await timeCommand('sh', ['-c', 'cp -a "$0" "$1" && sync', src, dst]));
      await fsp.rm(dst, { recursive: true, force: true });
      out.floorMs.push(await callsFloorMs(floorDir, plan.unitsPerPackage));
    }
    return out;
  } finally {
    await d.dispose();
    await fsp.rm(src, { recursive: true, force: true });
    await fsp.rm(floorDir, { recursive: true, force: true });
  }
}

export async function benchInstall(ctx: BenchContext): Promise<Row[]> {
  const rows: Row[] = [];
  const downtimeRows: Row[] = [];
  const kib = ctx.plan.installFileBytes / 1024;
  for (const count of ctx.plan.installFileCounts) {
    const m = await measureCount(ctx, count);
    const ms = median(m.runs.map((r) => r.installMs));
    const copy = median(m.copyMs);
    rows.push({
      measure: `Install of ${count} files × ${kib} KiB over a running version of ${count} files (POST /update → success, probation 0)`,
      value: fmt.ms(ms),
      reference: `cp -a of such a tree + sync: ${fmt.ms(copy)}`,
      ratio: fmt.ratio(ms / copy),
      runs: String(m.runs.length),
    });
    const down = median(m.runs.map((r) => r.downtimeMs));
    const floor = median(m.floorMs);
    downtimeRows.push({
      measure: `Switch downtime, ${count}-file package, ${ctx.plan.unitsPerPackage} units (first unit's stop → last unit's start)`,
      value: fmt.ms(down),
      reference: `the same systemctl calls back to back: ${fmt.ms(floor)}`,
      ratio: fmt.ratio(down / floor),
      runs: String(m.runs.length),
    });
  }
  return [...rows, ...downtimeRows];
}
