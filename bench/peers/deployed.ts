import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { workers, type WorkerName } from '../../shared/workers.js';
import { DeviceApi } from '../../test/helpers/device-api.js';
import { mainOf, Service, socketActivation, unitEnvironment, unitNice } from '../../test/helpers/services.js';
import { waitFor } from '../../test/helpers/wait.js';
import { BenchDevice } from '../lib/bench-device.js';
import { requestDownload, requestUpdate } from '../lib/downloads.js';
import { UNIT_PREFIX } from '../lib/packages.js';
import { readMemory } from '../lib/proc.js';
import type { Proc } from '../lib/update-run.js';
import type { PeerArtifacts } from './artifacts.js';
import type { Nginx } from './nginx.js';
import { checkInstalled, clockTicks, counters, reapScript, untilStage, type Measured } from './runs.js';
import { PAYLOAD_NAME } from './artifacts.js';

// Ours as a printer runs it, beside ours as under `make run`: the gateway up, the fetcher and the
// installer behind their command sockets (`systemd-socket-activate` standing in for the .socket
// units, with each unit's Environment= and Nice=), each started by its first command and ending
// when its work has. Each worker runs under bench/peers/reap.py, as the peers do, for its CPU, its
// bytes written and its peak RSS after it has exited (the activator's own share is a few
// milliseconds of CPU). The processes alive together are sampled every 20 ms; a worker counts
// once node runs in it, not while systemd-socket-activate holds its socket: on a printer systemd
// holds it. device-api answers the reports: a worker ends once its last one is answered.

const WORKERS: WorkerName[] = ['fetcher', 'installer'];

/** reap.py's one child: the activator, which becomes the worker's node at its first command. */
function reapedChild(reaper: Service): number | null {
  const pid = reaper.child.pid!;
  try {
    return Number(readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(' ')[0]) || null;
  } catch {
    return null; // reap.py has ended
  }
}

/** The worker's process once node runs in it; null before its exec and after its end. */
function workerNodePid(reaper: Service): number | null {
  const child = reapedChild(reaper);
  try {
    return child !== null && readlinkSync(`/proc/${child}/exe`) === process.execPath ? child : null;
  } catch {
    return null; // gone between the reads
  }
}

/** reap.py's figures, the last line it printed once its command ended. */
async function reapedFigures(reaper: Service, worker: WorkerName): Promise<Record<string, number>> {
  const { code } = await Promise.race([
    reaper.exited,
    new Promise<never>((_, fail) => setTimeout(() => fail(new Error(`${worker} did not end with its work`)), 60_000)),
  ]);
  const figures = reaper.lines.at(-1) as Record<string, number> | undefined;
  if (code !== 0 || figures?.cpu_s === undefined)
    throw new Error(`${worker} under reap.py exited ${code}: ${reaper.stderr.slice(-600)}`);
  return figures;
}

export async function runOursDeployed(nginx: Nginx, artifacts: PeerArtifacts): Promise<Measured> {
  const deviceApi = await new DeviceApi().start();
  const d = new BenchDevice({ TOPE_DEVICE_API_URL: deviceApi.url });
  const reapers: Service[] = [];
  let timer: NodeJS.Timeout | undefined;
  try {
    await d.start('api-gateway');
    await d.unitsRunning(1, UNIT_PREFIX);
    for (const worker of WORKERS) {
      const socket = d.env[workers[worker].socketSetting]!;
      const env = { ...d.env, ...unitEnvironment(worker) };
      const activator = socketActivation(socket, env, [process.execPath, mainOf(worker)]);
      const command = { file: '/usr/bin/python3', args: [reapScript, '--', activator.file, ...activator.args] };
      reapers.push(new Service(worker, {}, command, unitNice(worker)));
      await waitFor(`${worker}'s socket`, () => existsSync(socket));
    }
    const gateway = d.pid('api-gateway');
    const before = counters(gateway);
    let sumRss = 0;
    timer = setInterval(() => {
      const running = reapers.map(workerNodePid).filter((pid) => pid !== null);
      const total = [gateway, ...running].reduce((s, pid) => s + (readMemory(pid)?.rss ?? 0), 0);
      sumRss = Math.max(sumRss, total);
    }, 20);
    const version = '2.0.0';
    const t0 = performance.now();
    await requestDownload(d.base, nginx.url(path.basename(artifacts.ours.file)), artifacts.ours, version);
    let progressPolls = await untilStage(d.base, 'toInstall', 10 * 60_000);
    await requestUpdate(d.base, version);
    progressPolls += await untilStage(d.base, 'success', 10 * 60_000);
    const wallS = (performance.now() - t0) / 1000;
    const [fetcher, installer] = await Promise.all(reapers.map((r, i) => reapedFigures(r, WORKERS[i]!)));
    clearInterval(timer);
    const after = counters(gateway);
    const perProcess: Record<Proc, { cpuS: number; writtenBytes: number; peakRss: number }> = {
      'api-gateway': {
        cpuS: (after.ticks - before.ticks) / clockTicks,
        writtenBytes: after.writtenBytes - before.writtenBytes,
        peakRss: readMemory(gateway)?.peakRss ?? NaN,
      },
      fetcher: { cpuS: fetcher!.cpu_s!, writtenBytes: fetcher!.write_bytes!, peakRss: fetcher!.maxrss_kib! * 1024 },
      installer: {
        cpuS: installer!.cpu_s!,
        writtenBytes: installer!.write_bytes!,
        peakRss: installer!.maxrss_kib! * 1024,
      },
    };
    checkInstalled(
      path.join(d.sysroot, 'opt/tope/versions/current/bin', PAYLOAD_NAME),
      artifacts.payload.sha256,
      'ours, as deployed',
    );
    const all = Object.values(perProcess);
    return {
      wallS,
      exitS: wallS,
      progressPolls,
      cpuS: all.reduce((s, p) => s + p.cpuS, 0),
      largestRss: Math.max(...all.map((p) => p.peakRss)),
      sumRss,
      writtenBytes: all.reduce((s, p) => s + p.writtenBytes, 0),
      perProcess,
    };
  } finally {
    clearInterval(timer);
    // a run that failed: the workers first, which reap.py's end would leave running
    for (const pid of reapers.map(reapedChild)) if (pid !== null) process.kill(pid, 'SIGKILL');
    await Promise.all(reapers.map((r) => r.kill('SIGKILL')));
    await d.dispose();
    await deviceApi.stop();
  }
}
