import type { BenchContext } from '../context.js';
import { bareNodeRss } from '../lib/bare-node.js';
import { BenchDevice } from '../lib/bench-device.js';
import { sleep } from '../lib/clock.js';
import { readMemory } from '../lib/proc.js';
import { fmt, type Row } from '../lib/report.js';
import { median } from '../lib/stats.js';

// What runs at idle. Under systemd the goal is nothing: every service is socket-activated and
// the gateway exits when idle (the cold-start rows show it). Here, as under `make run`, each
// process is started and left alone, and its resident set read.

const PROCESSES = ['api-gateway', 'fetcher', 'installer'] as const;
const UNDER_SYSTEMD: Record<(typeof PROCESSES)[number], string> = {
  'api-gateway': 'under systemd: exits after TOPE_IDLE_EXIT_MS',
  fetcher: 'under systemd: exits after TOPE_IDLE_EXIT_MS',
  installer: 'under systemd: exits after TOPE_IDLE_EXIT_MS',
};

export async function benchIdle(ctx: BenchContext): Promise<Row[]> {
  const rss: Record<string, number[]> = Object.fromEntries(PROCESSES.map((p) => [p, []]));
  const bare: number[] = [];
  for (let i = 1; i <= ctx.plan.runs.idle; i++) {
    ctx.say(`idle RSS: run ${i}/${ctx.plan.runs.idle}`);
    const d = new BenchDevice();
    try {
      await d.start(...PROCESSES);
      await sleep(2000);
      for (const p of PROCESSES) rss[p].push(readMemory(d.pid(p))?.rss ?? NaN);
    } finally {
      await d.dispose();
    }
    bare.push(await bareNodeRss());
  }
  const node = median(bare);
  return PROCESSES.map((p) => {
    const v = median(rss[p]);
    return {
      measure: `RSS of ${p} at idle, fresh, local (${UNDER_SYSTEMD[p]})`,
      value: fmt.mib(v),
      reference: `idle bare node: ${fmt.mib(node)}`,
      ratio: fmt.ratio(v / node),
      runs: String(rss[p].length),
    };
  });
}
