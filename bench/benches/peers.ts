import { writeBack } from '../lib/commands.js';
import { mkdirSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import type { BenchContext } from '../context.js';
import { fmt, type Row } from '../lib/report.js';
import { median } from '../lib/stats.js';
import { PROCESSES } from '../lib/update-run.js';
import { buildPeerArtifacts, PAYLOAD_NAME } from '../peers/artifacts.js';
import { ensurePeerPackages, peerVersions } from '../peers/debian.js';
import { Nginx } from '../peers/nginx.js';
import { runOursDeployed } from '../peers/deployed.js';
import { checkInstalled, runMender, runOurs, runSwupdate, type Measured, type PeerDirs } from '../peers/runs.js';

// Against the peers, side by side: one payload installed as one file by ours (through its API,
// the services up as under `make run`, and as deployed: the workers socket-activated, each ending
// with its work: bench/peers/deployed.ts), by SWUpdate 2022.12 and by the Mender client 3.4 (single-
// file update module, standalone install + commit), all from Debian 12, each downloading the same
// payload from one nginx on loopback and checking its SHA-256 and signature. Runs alternate, the
// order rotating each round, after one round not counted (binaries and the served files cached).

const PEERS = ['swupdate', 'mender'] as const;
type Peer = (typeof PEERS)[number];

/** Ours, two ways: as under `make run` (the three up throughout) and as deployed. */
const OURS = {
  ours: { label: 'ours', short: 'ours', rowName: 'the services up as under `make run`', run: runOurs },
  deployed: {
    label: 'ours, as deployed',
    short: 'deployed',
    rowName: 'as deployed, the workers socket-activated',
    run: runOursDeployed,
  },
} as const;
type Way = keyof typeof OURS;
const WAYS = Object.keys(OURS) as Way[];

type Tool = Way | Peer;
const TOOLS: Tool[] = [...WAYS, ...PEERS];
const PEER_LABEL: Record<Peer, { label: string; short: string }> = {
  swupdate: { label: 'SWUpdate 2022.12', short: 'SWUpdate' },
  mender: { label: 'Mender 3.4', short: 'Mender' },
};
const isWay = (tool: Tool): tool is Way => tool in OURS;
const labelOf = (tool: Tool): string => (isWay(tool) ? OURS[tool] : PEER_LABEL[tool]).label;

/** The bounds against the peers: whole update (wall and CPU) <= 1.5× Mender's; bytes written <= the peers'; our peak RSS summed <= 150 MiB. */
export const peerBounds = { versusMender: 1.5, writtenVersusPeers: 1, sumRssMiB: 150 };

const MiB = 1024 * 1024;

type MetricKey = 'wall' | 'exit' | 'cpu' | 'largest' | 'sum' | 'written';

interface Metric {
  key: MetricKey;
  name: string;
  of: (m: Measured) => number;
  show: (v: number) => string;
  /** Only in the side-by-side table, not a row of the main one. */
  sideOnly?: boolean;
}

const mib = (v: number) => (v / MiB).toFixed(1);
const METRICS: Metric[] = [
  { key: 'wall', name: 'start → installed, s (wall)', of: (m) => m.wallS, show: (v) => v.toFixed(2) },
  {
    key: 'exit',
    name: 'start → the command exited, s (wall)',
    of: (m) => m.exitS,
    show: (v) => v.toFixed(2),
    sideOnly: true,
  },
  { key: 'cpu', name: 'CPU user+sys, s (every process of the tool)', of: (m) => m.cpuS, show: (v) => v.toFixed(2) },
  { key: 'largest', name: 'peak RSS of the largest process, MiB', of: (m) => m.largestRss, show: mib },
  { key: 'sum', name: 'peak RSS of the processes alive together, summed, MiB', of: (m) => m.sumRss, show: mib },
  {
    key: 'written',
    name: 'bytes written, MiB (write_bytes)',
    of: (m) => m.writtenBytes,
    show: (v) => (v / MiB).toFixed(0),
  },
];
const metric = (key: MetricKey) => METRICS.find((m) => m.key === key)!;

async function freshDirs(root: string, tool: Peer, run: number): Promise<PeerDirs> {
  const dest = path.join(root, `${tool}-dest`);
  const work = path.join(root, `${tool}-work-${run}`);
  await fsp.rm(path.join(dest, PAYLOAD_NAME), { force: true });
  mkdirSync(dest, { recursive: true });
  mkdirSync(work, { recursive: true });
  return { dest, work };
}

export async function benchPeers(ctx: BenchContext): Promise<Row[]> {
  const { plan, say } = ctx;
  await ensurePeerPackages(say);
  const versions = await peerVersions();
  const root = path.join(ctx.scratch, 'peers');
  const served = path.join(root, 'served');
  mkdirSync(served, { recursive: true });
  say(`peers: building the ${fmt.size(plan.peersPayload)} payload's three update files`);
  const artifacts = await buildPeerArtifacts(
    served,
    path.join(root, 'build'),
    plan.peersPayload,
    path.join(root, 'swupdate-dest', PAYLOAD_NAME),
    path.join(root, 'mender-dest'),
  );
  const nginx = await Nginx.start(served, path.join(root, 'nginx'));
  const results: Record<Tool, Measured[]> = { ours: [], deployed: [], swupdate: [], mender: [] };
  // before each run, what the previous one left dirty is written back
  const measureOurs = async (way: Way) => {
    await writeBack();
    return OURS[way].run(nginx, artifacts);
  };
  const measurePeer = async (peer: Peer, round: number) => {
    const dirs = await freshDirs(root, peer, round);
    await writeBack();
    const m = await (peer === 'swupdate' ? runSwupdate : runMender)(nginx, artifacts, dirs);
    checkInstalled(path.join(dirs.dest, PAYLOAD_NAME), artifacts.payload.sha256, peer);
    await fsp.rm(dirs.work, { recursive: true, force: true });
    return m;
  };
  try {
    for (let round = 0; round <= plan.runs.peers; round++) {
      const order = TOOLS.map((_, i) => TOOLS[(i + round) % TOOLS.length]);
      for (const tool of order) {
        say(`peers: ${round === 0 ? 'warm-up' : `run ${round}/${plan.runs.peers}`}: ${tool}`);
        const m = isWay(tool) ? await measureOurs(tool) : await measurePeer(tool, round);
        if (round > 0) results[tool].push(m);
      }
    }
  } finally {
    await nginx.stop();
  }

  const med = (tool: Tool, metric: Metric) => median(results[tool].map(metric.of));
  const size = fmt.size(plan.peersPayload);
  const runs = String(plan.runs.peers);
  const rows: Row[] = [];
  for (const way of WAYS)
    for (const peer of PEERS) {
      for (const m of METRICS.filter((x) => !x.sideOnly)) {
        const ours = med(way, m);
        const theirs = med(peer, m);
        rows.push({
          measure: `${size} update side by side, ours ${OURS[way].rowName}, ${m.name}${boundNote(m.key, peer)}`,
          value: `ours: ${m.show(ours)}`,
          reference: `${PEER_LABEL[peer].label}: ${m.show(theirs)}`,
          ratio: fmt.ratio(ours / theirs),
          runs,
        });
      }
    }
  ctx.sections.push(sideBySide(results, size, versions));
  return rows;
}

function boundNote(key: MetricKey, peer: Peer): string {
  if (key === 'written') return ' (the bound: ≤ 1× the peers)';
  if (key === 'sum') return ` (the bound for ours: ≤ ${peerBounds.sumRssMiB} MiB)`;
  if (peer === 'mender' && (key === 'wall' || key === 'cpu'))
    return ` (the bound: ≤ ${peerBounds.versusMender}× Mender's)`;
  return '';
}

/** The side-by-side table: ours two ways beside each peer, the ratios, and each bound met or not. */
function sideBySide(results: Record<Tool, Measured[]>, size: string, versions: string): string {
  const med = (tool: Tool, m: Metric) => median(results[tool].map(m.of));
  const ratios = WAYS.flatMap((way) => PEERS.map((peer) => [way, peer] as const));
  const head =
    `| ${size}, median of ${results.ours.length} | ${TOOLS.map(labelOf).join(' | ')} | ` +
    `${ratios.map(([way, peer]) => `${OURS[way].short} / ${PEER_LABEL[peer].short}`).join(' | ')} |`;
  const lines = [head, `|${' --- |'.repeat(1 + TOOLS.length + ratios.length)}`];
  for (const m of METRICS) {
    const values = TOOLS.map((t) => m.show(med(t, m)));
    const quotients = ratios.map(([way, peer]) => fmt.ratio(med(way, m) / med(peer, m)));
    lines.push(`| ${m.name} | ${values.join(' | ')} | ${quotients.join(' | ')} |`);
  }
  const verdict = (ok: boolean) => (ok ? 'met' : 'not met');
  /** A difference of bytes written, in KiB with its sign: the MiB of the table hide a few state files. */
  const kibDifference = (bytes: number) => `${bytes >= 0 ? '+' : '−'}${Math.abs(bytes / 1024).toFixed(0)} KiB against`;
  const [wall, cpu, sum, written] = (['wall', 'cpu', 'sum', 'written'] as const).map(metric);
  const bounds = WAYS.map((way) => {
    const wallRatio = med(way, wall) / med('mender', wall);
    const cpuRatio = med(way, cpu) / med('mender', cpu);
    const writtenOurs = med(way, written);
    const sumOurs = med(way, sum) / MiB;
    return (
      `${OURS[way].label}: wall ${fmt.ratio(wallRatio)} of Mender's (${verdict(wallRatio <= peerBounds.versusMender)}), ` +
      `CPU ${fmt.ratio(cpuRatio)} (${verdict(cpuRatio <= peerBounds.versusMender)}); bytes written ` +
      `${verdict(PEERS.every((p) => writtenOurs <= med(p, written)))} (exactly: ` +
      `${PEERS.map((p) => `${kibDifference(writtenOurs - med(p, written))} ${PEER_LABEL[p].label}'s`).join(', ')}); ` +
      `peak RSS summed ${sumOurs.toFixed(0)} MiB (${verdict(sumOurs <= peerBounds.sumRssMiB)})`
    );
  });
  const perProcess = (way: Way) =>
    PROCESSES.map((p) => {
      const cpuS = median(results[way].map((r) => r.perProcess![p].cpuS));
      const bytes = median(results[way].map((r) => r.perProcess![p].writtenBytes));
      const rss = median(results[way].map((r) => r.perProcess![p].peakRss));
      return `${p} ${cpuS.toFixed(2)} s CPU, ${fmt.mib(bytes)} written, ${fmt.mib(rss)} peak`;
    }).join('; ');
  return [
    '## Against the peers, side by side',
    '',
    `From Debian 12: ${versions}. Bounds: a whole update (wall and CPU) ≤ ${peerBounds.versusMender}× Mender's, ` +
      `bytes written ≤ the peers', our processes' peak RSS summed ≤ ${peerBounds.sumRssMiB} MiB. ` +
      `${bounds.join('. ')}.`,
    '',
    'Ours runs two ways: as under `make run` (the three services up throughout, so the sum is of their ' +
      'peaks), and as deployed (the gateway up, the fetcher and the installer behind ' +
      '`systemd-socket-activate` as their .socket units, each started by its command and ending with ' +
      'its work; the processes alive together sampled every 20 ms; its wall time and CPU include ' +
      "both workers' starts).",
    '',
    lines.join('\n'),
    '',
    WAYS.map(
      (way) =>
        `Where ${OURS[way].label} goes (medians): ${perProcess(way)}; the gateway answered ` +
        `${median(results[way].map((r) => r.progressPolls!)).toFixed(0)} /progress requests a run (the bench's poll).`,
    ).join('\n\n'),
  ].join('\n');
}
