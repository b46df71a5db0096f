import { existsSync } from 'node:fs';
import { workers, type WorkerName } from '../../shared/workers.js';
import { Service } from '../../test/helpers/services.js';
import { waitFor } from '../../test/helpers/wait.js';
import { firstChild, readMemory, runningNode } from '../lib/proc.js';
import type { PeerArtifacts } from './artifacts.js';
import type { Nginx } from './nginx.js';
import {
  clockTicks,
  counters,
  oursMeasured,
  reapScript,
  updateThroughApi,
  type Measured,
  type PerProcess,
  type ReapedFigures,
} from './runs.js';
import { activatedWorker, deployedDevice } from '../lib/deployed.js';

// Ours as a printer runs it, beside ours as under `make run`: the gateway up, the fetcher and the
// installer behind their command sockets (`systemd-socket-activate` standing in for the .socket
// units, with each unit's Environment= and Nice=), each started by its first command and ending
// when its work has. Each worker runs under bench/peers/reap.py, as the peers do, for its CPU, its
// bytes written and its peak RSS once it has exited (the activator's own share is a few
// milliseconds of CPU). The processes alive together are summed every 20 ms by the peers' rule
// (each one's VmHWM so far), a worker from the exec of its node: on a printer systemd holds the
// socket, not an activator. device-api answers the reports: a worker ends once its last is answered.

const WORKERS: WorkerName[] = ['fetcher', 'installer'];
/** How long a worker may take to end once /progress said `success`. */
const END_DEADLINE_MS = 60_000;

/** reap.py's figures, the last line it printed once its command ended. */
async function reapedFigures(reaper: Service, worker: WorkerName): Promise<ReapedFigures> {
  let deadline: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, fail) => {
    deadline = setTimeout(() => fail(new Error(`${worker} did not end with its work`)), END_DEADLINE_MS);
  });
  const { code } = await Promise.race([reaper.exited, late]).finally(() => clearTimeout(deadline));
  const figures = reaper.lines.at(-1) as ReapedFigures | undefined;
  if (code !== 0 || figures?.cpu_s === undefined)
    throw new Error(`${worker} under reap.py exited ${code}: ${reaper.stderr.slice(-600)}`);
  return figures;
}

/** After a failed run: each worker that reap.py still watches, then reap.py itself. */
async function stopReapers(reapers: Service[]): Promise<void> {
  for (const reaper of reapers) {
    if (reaper.child.exitCode !== null || reaper.child.signalCode !== null) continue;
    const worker = firstChild(reaper.child.pid!);
    try {
      if (worker !== null) process.kill(worker, 'SIGKILL');
    } catch {
      // it ended in between
    }
  }
  await Promise.all(reapers.map((r) => r.kill('SIGKILL')));
}

export async function runOursDeployed(nginx: Nginx, artifacts: PeerArtifacts): Promise<Measured> {
  const { device: d, stop } = await deployedDevice();
  const reapers: Service[] = [];
  let timer: NodeJS.Timeout | undefined;
  try {
    for (const worker of WORKERS) {
      // --no-sum: this run sums the processes alive together itself, across the three
      const underReap = (activator: { file: string; args: string[] }) => ({
        file: '/usr/bin/python3',
        args: [reapScript, '--no-sum', '--', activator.file, ...activator.args],
      });
      reapers.push(activatedWorker(worker, d.env, underReap));
      await waitFor(`${worker}'s socket`, () => existsSync(d.env[workers[worker].socketSetting]!));
    }
    const gateway = d.pid('api-gateway');
    const before = counters(gateway);
    let sumRss = 0;
    timer = setInterval(() => {
      const alive = [gateway, ...reapers.map((r) => runningNode(firstChild(r.child.pid!)))];
      const total = alive.reduce<number>((s, pid) => s + (pid === null ? 0 : (readMemory(pid)?.peakRss ?? 0)), 0);
      sumRss = Math.max(sumRss, total);
    }, 20);
    const { t0, wallS, progressPolls } = await updateThroughApi(d, nginx, artifacts);
    const [fetcher, installer] = await Promise.all(reapers.map((r, i) => reapedFigures(r, WORKERS[i]!)));
    const exitS = (performance.now() - t0) / 1000;
    clearInterval(timer);
    const after = counters(gateway);
    const reaped = (f: ReapedFigures) => ({ cpuS: f.cpu_s, writtenBytes: f.write_bytes, peakRss: f.maxrss_kib * 1024 });
    const perProcess: PerProcess = {
      'api-gateway': {
        cpuS: (after.ticks - before.ticks) / clockTicks,
        writtenBytes: after.writtenBytes - before.writtenBytes,
        peakRss: readMemory(gateway)?.peakRss ?? NaN,
      },
      fetcher: reaped(fetcher!),
      installer: reaped(installer!),
    };
    return oursMeasured(d, artifacts, 'ours, as deployed', { wallS, exitS, progressPolls, perProcess, sumRss });
  } finally {
    clearInterval(timer);
    await stopReapers(reapers);
    await stop();
  }
}
