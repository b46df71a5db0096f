import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { call } from '../../test/helpers/api.js';
import { BenchDevice } from '../lib/bench-device.js';
import { sleep } from '../lib/clock.js';
import { requestDownload, requestUpdate } from '../lib/downloads.js';
import { UNIT_PREFIX } from '../lib/packages.js';
import { RssSampler } from '../lib/proc.js';
import { PROCESSES, type Proc } from '../lib/update-run.js';
import { MENDER_DEVICE_TYPE, PAYLOAD_NAME, SWUPDATE_HARDWARE, type PeerArtifacts } from './artifacts.js';
import type { Nginx } from './nginx.js';

// One whole update of the same 100 MiB payload by each tool, from the same nginx, each measured
// over all of its processes: wall time start → installed, CPU user+sys, peak RSS (the largest
// process, and the processes alive together summed), and the bytes they wrote (write_bytes of
// /proc/PID/io: what each process sent or dirtied for the block layer, written back or not).

export interface Measured {
  /** Start → installed: the tool's own word that it is done (ours: /progress says success). */
  wallS: number;
  /** Start → the command's exit (ours: as wallS, the services stay up). */
  exitS: number;
  cpuS: number;
  largestRss: number;
  sumRss: number;
  writtenBytes: number;
  /** Ours only: how many /progress answers the run asked for. */
  progressPolls?: number;
  /** Ours only: CPU seconds and bytes written per service. */
  perProcess?: Record<Proc, { cpuS: number; writtenBytes: number; peakRss: number }>;
}

export const reapScript = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../bench/peers/reap.py');
export const clockTicks = 100; // USER_HZ: /proc/PID/stat's unit on every Linux architecture

/** CPU ticks of a process and of the children it waited for, and its bytes written, so far. */
export function counters(pid: number): { ticks: number; writtenBytes: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // fields after the command name: state is field 3, utime 14, stime 15, cutime 16, cstime 17
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = [11, 12, 13, 14].reduce((s, i) => s + Number(f[i]), 0);
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  return { ticks, writtenBytes: Number(/^write_bytes: (\d+)$/m.exec(io)?.[1] ?? NaN) };
}

/** The tool really installed the payload: the file it wrote has the payload's SHA-256. */
export function checkInstalled(file: string, sha256: string, tool: string): void {
  const out = execFileSync('sha256sum', [file], { encoding: 'utf8' });
  if (!out.startsWith(sha256)) throw new Error(`${tool} installed a file whose SHA-256 is not the payload's: ${out}`);
}

async function stageOf(base: string): Promise<string> {
  const r = await call(base, 'GET', '/api/v1.0/progress');
  return String(r.body?.data?.stage);
}

/**
 * How often the bench asks /progress, as ota-gui does every 500 ms: ten times as often, so that the
 * wall time overstates ours by ~25 ms a wait and not ~250, while the gateway's answers (its CPU
 * counts in ours) stay few: ~20 a second.
 */
const PROGRESS_POLL_MS = 50;

/** Polls /progress until `stage`; `failed` ends the run at once. Returns how many answers it took. */
export async function untilStage(base: string, stage: string, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (let polls = 1; ; polls++) {
    const now = await stageOf(base);
    if (now === stage) return polls;
    if (now === 'failed') {
      const r = await call(base, 'GET', '/api/v1.0/progress');
      throw new Error(`ours failed: ${JSON.stringify(r.body)}`);
    }
    if (Date.now() > deadline) throw new Error(`ours: no ${stage} after ${timeoutMs} ms (at ${now})`);
    await sleep(PROGRESS_POLL_MS);
  }
}

/**
 * One whole update through ours' API, as device-api drives it: POST /download, /progress until
 * toInstall, POST /update, /progress until success. `t0`: performance.now() at its start.
 */
export async function updateThroughApi(
  device: BenchDevice,
  nginx: Nginx,
  artifacts: PeerArtifacts,
): Promise<{ t0: number; wallS: number; progressPolls: number }> {
  const version = '2.0.0';
  const t0 = performance.now();
  await requestDownload(device.base, nginx.url(path.basename(artifacts.ours.file)), artifacts.ours, version);
  let progressPolls = await untilStage(device.base, 'toInstall', 10 * 60_000);
  await requestUpdate(device.base, version);
  progressPolls += await untilStage(device.base, 'success', 10 * 60_000);
  return { t0, wallS: (performance.now() - t0) / 1000, progressPolls };
}

/**
 * Ours as under `make run`: the three services already up; POST /download, /progress until
 * toInstall, POST /update, /progress until success. CPU and bytes are the services' own (and
 * their waited-for children's) between the first request and the success.
 */
export async function runOurs(nginx: Nginx, artifacts: PeerArtifacts): Promise<Measured> {
  const d = new BenchDevice();
  try {
    await d.start('fetcher', 'installer', 'api-gateway');
    await d.unitsRunning(1, UNIT_PREFIX);
    const pids = Object.fromEntries(PROCESSES.map((p) => [p, d.pid(p)])) as Record<Proc, number>;
    const sampler = new RssSampler(pids);
    const before = Object.fromEntries(PROCESSES.map((p) => [p, counters(pids[p])]));
    const { wallS, progressPolls } = await updateThroughApi(d, nginx, artifacts);
    const peaks = sampler.stop() as Record<Proc, number>;
    const perProcess = Object.fromEntries(
      PROCESSES.map((p) => {
        const after = counters(pids[p]);
        return [
          p,
          {
            cpuS: (after.ticks - before[p].ticks) / clockTicks,
            writtenBytes: after.writtenBytes - before[p].writtenBytes,
            peakRss: peaks[p],
          },
        ];
      }),
    ) as Record<Proc, { cpuS: number; writtenBytes: number; peakRss: number }>;
    // the three are alive throughout: the sum of their peaks
    return oursMeasured(d, artifacts, 'ours', { wallS, exitS: wallS, progressPolls, perProcess });
  } finally {
    await d.dispose();
  }
}

export type PerProcess = Record<Proc, { cpuS: number; writtenBytes: number; peakRss: number }>;

/**
 * Ours' figures from each service's, once the payload is checked installed (`who` names the way
 * ours ran, in the error). `sumRss`: the processes alive together; without it, the sum of each
 * one's peak (the three alive throughout).
 */
export function oursMeasured(
  device: BenchDevice,
  artifacts: PeerArtifacts,
  who: string,
  run: { wallS: number; exitS: number; progressPolls: number; perProcess: PerProcess; sumRss?: number },
): Measured {
  const installedFile = path.join(device.sysroot, 'opt/tope/versions/current/bin', PAYLOAD_NAME);
  checkInstalled(installedFile, artifacts.payload.sha256, who);
  const all = Object.values(run.perProcess);
  return {
    ...run,
    cpuS: all.reduce((s, p) => s + p.cpuS, 0),
    largestRss: Math.max(...all.map((p) => p.peakRss)),
    sumRss: run.sumRss ?? all.reduce((s, p) => s + p.peakRss, 0),
    writtenBytes: all.reduce((s, p) => s + p.writtenBytes, 0),
  };
}

/** What reap.py prints once its command and everything it started have ended. */
export interface ReapedFigures {
  exit: number | null;
  wall_s: number;
  /** With --mark: when the marked line appeared; null if it never did. */
  mark_s: number | null;
  cpu_s: number;
  maxrss_kib: number;
  peak_sum_kib: number;
  write_bytes: number;
  cancelled_write_bytes: number;
}

/**
 * A command and all it starts, measured by reap.py (see there); a non-zero exit fails the run
 * with its output. `installed`: the line of its output that says the install is done, when the
 * command lingers after it; else its exit is the end.
 */
function reaped(argv: string[], env: NodeJS.ProcessEnv = process.env, installed?: string): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const marks = installed ? ['--mark', installed] : [];
    // Debian's python3 (a peer package): not whatever a version manager's shim puts first in PATH
    const child = spawn('/usr/bin/python3', [reapScript, ...marks, '--', ...argv], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      stderr = (stderr + c).slice(-4000);
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`${argv.join(' ')} exited ${code}: ${stderr.trim()}`));
      const r = JSON.parse(stdout) as ReapedFigures;
      if (installed && r.mark_s === null)
        return reject(new Error(`${argv[0]} exited 0 without saying "${installed}": ${stderr.trim()}`));
      resolve({
        wallS: installed && r.mark_s !== null ? r.mark_s : r.wall_s,
        exitS: r.wall_s,
        cpuS: r.cpu_s,
        largestRss: r.maxrss_kib * 1024,
        sumRss: r.peak_sum_kib * 1024,
        writtenBytes: r.write_bytes,
      });
    });
  });
}

/** Where a peer keeps its state: a fresh directory per run, as on a device that never updated. */
export interface PeerDirs {
  /** Where the peer installs the payload (its update file names it). */
  dest: string;
  work: string;
}

/**
 * `swupdate -d "-u URL"`: SWUpdate's own downloader streams the .swu into the installer. Installed
 * when it logs "SWUPDATE successful" (after the fsync of the file); the process exits up to a
 * second later, since its downloader asks the installer's status once a second (a 1 s sleep).
 */
export async function runSwupdate(nginx: Nginx, artifacts: PeerArtifacts, dirs: PeerDirs): Promise<Measured> {
  const tmp = path.join(dirs.work, 'tmp');
  mkdirSync(tmp, { recursive: true });
  // TMPDIR: where SWUpdate puts its sockets, sw-description and the images it copies before installing
  return reaped(
    [
      'swupdate',
      '-H',
      `${SWUPDATE_HARDWARE.board}:${SWUPDATE_HARDWARE.revision}`,
      '-k',
      artifacts.swuCert,
      '-d',
      `-u ${nginx.url(path.basename(artifacts.swu))}`,
    ],
    { ...process.env, TMPDIR: tmp },
    'SWUPDATE successful',
  );
}

/**
 * `mender install URL` then `mender commit` (standalone mode), with the configuration and state in
 * temp dirs. Mender 3.4 reads the artifact name of a device that never updated from
 * /etc/mender/artifact_info whatever its configuration says, so that directory is bound over by a
 * temp one in a mount namespace of its own (unshare -m): nothing of the host's /etc changes.
 */
export async function runMender(nginx: Nginx, artifacts: PeerArtifacts, dirs: PeerDirs): Promise<Measured> {
  const data = path.join(dirs.work, 'data');
  const etc = path.join(dirs.work, 'etc');
  mkdirSync(data, { recursive: true });
  mkdirSync(etc, { recursive: true });
  await fsp.writeFile(path.join(data, 'device_type'), `device_type=${MENDER_DEVICE_TYPE}\n`);
  await fsp.writeFile(path.join(etc, 'artifact_info'), 'artifact_name=tope-bench-1.0.0\n');
  const conf = path.join(dirs.work, 'mender.conf');
  await fsp.writeFile(
    conf,
    JSON.stringify(
      {
        ArtifactVerifyKey: artifacts.menderPublicKey,
        DeviceTypeFile: path.join(data, 'device_type'),
        ModulesPath: '/usr/share/mender/modules',
        ModulesWorkPath: path.join(data, 'modules', 'v3'),
        ArtifactScriptsPath: path.join(dirs.work, 'scripts'),
        RootfsScriptsPath: path.join(dirs.work, 'rootfs-scripts'),
      },
      null,
      2,
    ),
  );
  const mender = `mender -c "$1" -b "$1.none" -d "$2" --no-syslog -l warning`;
  return reaped([
    'unshare',
    '-m',
    'sh',
    '-c',
    `mount --bind "$3" /etc/mender && ${mender} install "$4" && ${mender} commit`,
    'sh',
    conf,
    data,
    etc,
    nginx.url(path.basename(artifacts.mender)),
  ]);
}
