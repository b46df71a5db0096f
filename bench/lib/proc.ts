import { readFileSync, readlinkSync } from 'node:fs';

/** Memory figures of a live process from /proc/PID/status, in bytes. */
export interface Memory {
  rss: number;
  /** VmHWM: the peak resident set since the process started. */
  peakRss: number;
}

export function readMemory(pid: number): Memory | null {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null; // the process is gone
  }
  const kB = (field: string) => Number(new RegExp(`^${field}:\\s*(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kB('VmRSS'), peakRss: kB('VmHWM') };
}

/** The first child of `pid` (/proc/PID/task/PID/children), or null: none, or `pid` gone. */
export function firstChild(pid: number): number | null {
  try {
    return Number(readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(' ')[0]) || null;
  } catch {
    return null;
  }
}

/**
 * `pid` when node runs in it (its /proc/PID/exe is this node binary), else null: gone, or still
 * the systemd-socket-activate that holds a worker's socket until its first command execs node.
 * On a printer systemd holds that socket, so the benches count a worker from its exec.
 */
export function runningNode(pid: number | null | undefined): number | null {
  if (!pid) return null;
  try {
    return readlinkSync(`/proc/${pid}/exe`) === process.execPath ? pid : null;
  } catch {
    return null;
  }
}

/**
 * Samples VmRSS of some processes while work runs and keeps each one's largest value; the
 * kernel's own VmHWM is read at the end as well, since a spike between samples shows there.
 */
export class RssSampler {
  private readonly peaks = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly pids: Record<string, number>,
    everyMs = 50,
  ) {
    this.timer = setInterval(() => this.sample(), everyMs);
    this.sample();
  }

  private sample(): void {
    for (const [name, pid] of Object.entries(this.pids)) {
      const m = readMemory(pid);
      if (m) this.peaks.set(name, Math.max(this.peaks.get(name) ?? 0, m.rss));
    }
  }

  /** Stops sampling; per process, the larger of the sampled peak and VmHWM. */
  stop(): Record<string, number> {
    clearInterval(this.timer);
    this.sample();
    const out: Record<string, number> = {};
    for (const [name, pid] of Object.entries(this.pids)) {
      out[name] = Math.max(this.peaks.get(name) ?? 0, readMemory(pid)?.peakRss ?? 0);
    }
    return out;
  }
}
