import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { buildPackage } from '../../test/helpers/packages.js';
import type { BenchContext } from '../context.js';
import { BenchDevice, loggedAt } from '../lib/bench-device.js';
import { timeCommand, writeBack } from '../lib/commands.js';
import { outcome, requestUpdate } from '../lib/downloads.js';
import { treePath, UNIT_PREFIX } from '../lib/packages.js';
import { fmt, type Row } from '../lib/report.js';
import { median } from '../lib/stats.js';
import { downtimeOf, writeTree } from './install.js';

// What keeping the running version out of a post_cmd's reach costs: a package of one file with
// one unit, over a running version of N files, with a post_cmd (':', which touches nothing) and
// without, run by run in turn. With it, the installer replaces the N shared files of the new
// snapshot by private copies before the units stop (a full copy on ext4, a reflink on btrfs or
// xfs) and links the untouched ones back after the post_cmds, inside the downtime. Reference:
// `cp -a` of such a tree + sync, as the install rows.

interface Run {
  installMs: number;
  downtimeMs: number;
}

async function measure(ctx: BenchContext, count: number) {
  const { plan } = ctx;
  const d = new BenchDevice();
  const runs = { with: [] as Run[], without: [] as Run[], copyMs: [] as number[] };
  const src = path.join(ctx.scratch, `post-cmd-tree-${count}`);
  try {
    await writeTree(path.join(d.versionsDir, 'v1.0.0'), count, plan.installFileBytes);
    await fsp.symlink('v1.0.0', path.join(d.versionsDir, 'current'));
    await writeTree(src, count, plan.installFileBytes);
    await d.unitsRunning(1, UNIT_PREFIX);
    await d.start('installer', 'api-gateway');
    const installer = d.service('installer');
    // one install of each first, not counted: from then on each has a current and a previous to keep
    for (let r = 0; r <= plan.runs.install; r++) {
      for (const kind of ['with', 'without'] as const) {
        if (r > 0) ctx.say(`post_cmd install over ${count} files (${kind}): run ${r}/${plan.runs.install}`);
        const version = `1.${r + 1}.${kind === 'with' ? 1 : 0}`;
        const module = {
          name: 'm0',
          dst: `/opt/tope/${treePath(0)}`,
          data: `${version}\n`,
          process_name: `${UNIT_PREFIX}0.service`,
          ...(kind === 'with' ? { post_cmds: [':'] } : {}),
        };
        await d.verified(await buildPackage(version, [module]), version);
        await fsp.rm(path.join(d.standInDir, 'calls.log'), { force: true });
        const from = installer.lines.length;
        await writeBack();
        const t0 = Date.now();
        await requestUpdate(d.base, version);
        const done = await outcome(installer, from, 'install succeeded', 'install failed', 10 * 60_000);
        const run = { installMs: loggedAt(done) - t0, downtimeMs: downtimeOf(await d.standInCalls()) };
        await d.waitStage('success', 60_000);
        if (r > 0) runs[kind].push(run);
      }
      if (r === 0) continue;
      const dst = d.referenceCopyDir(`post-cmd-copy-${count}`);
      await writeBack();
      runs.copyMs.push(await timeCommand('sh', ['-c', 'cp -a "$0" "$1" && sync', src, dst]));
      await fsp.rm(dst, { recursive: true, force: true });
    }
    return runs;
  } finally {
    await d.dispose();
    await fsp.rm(src, { recursive: true, force: true });
  }
}

export async function benchPostCmds(ctx: BenchContext): Promise<Row[]> {
  const rows: Row[] = [];
  const kib = ctx.plan.installFileBytes / 1024;
  for (const count of ctx.plan.installFileCounts) {
    const m = await measure(ctx, count);
    const copy = median(m.copyMs);
    const over = `a 1-file package over a running version of ${count} files × ${kib} KiB`;
    for (const kind of ['without', 'with'] as const) {
      const ms = median(m[kind].map((r) => r.installMs));
      rows.push({
        measure:
          kind === 'with'
            ? `Install of ${over}, with a post_cmd: its ${count - 1} shared files made private, then linked back (POST /update → success)`
            : `Install of ${over}, no post_cmd: every file shared (POST /update → success)`,
        value: fmt.ms(ms),
        reference: `cp -a of such a tree + sync: ${fmt.ms(copy)}`,
        ratio: fmt.ratio(ms / copy),
        runs: String(m[kind].length),
      });
    }
    const down = median(m.with.map((r) => r.downtimeMs));
    const before = median(m.without.map((r) => r.downtimeMs));
    rows.push({
      measure: `Switch downtime of ${over}, with a post_cmd (':'; the link-back inside it)`,
      value: fmt.ms(down),
      reference: `same package without the post_cmd: ${fmt.ms(before)}`,
      ratio: fmt.ratio(down / before),
      runs: String(m.with.length),
    });
  }
  return rows;
}
