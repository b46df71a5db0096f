import { execFile } from 'node:child_process';
import { UpdaterError } from '../../shared/errors.js';

export interface UnitTimeouts {
  stopMs: number;
  startMs: number;
  probationMs: number;
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/**
 * The environment of the systemd tools the installer runs: its own without what systemd gave its
 * unit. A systemd tool that fails sends ERRNO= to $NOTIFY_SOCKET itself, which would land on the
 * installer's unit (NotifyAccess=all).
 */
export function systemdToolEnvironment(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const unitOnly = new Set([
    'NOTIFY_SOCKET',
    'WATCHDOG_USEC',
    'WATCHDOG_PID',
    'LISTEN_FDS',
    'LISTEN_PID',
    'LISTEN_FDNAMES',
  ]);
  return Object.fromEntries(Object.entries(env).filter(([name]) => !unitOnly.has(name)));
}

const pollEvery = (windowMs: number) => Math.max(10, Math.min(500, Math.floor(windowMs / 10)));
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Service control through systemctl, every call under a deadline. "--" ends systemctl's options
 * before every unit name, so no name can read as one ("-Hroot@host", "--user").
 */
export class Units {
  constructor(
    private readonly systemctl: string,
    private readonly timeouts: UnitTimeouts,
  ) {}

  private run(args: string[], timeoutMs: number): Promise<Run> {
    return new Promise((resolve) => {
      const options = { timeout: timeoutMs, killSignal: 'SIGKILL' as const, env: systemdToolEnvironment() };
      execFile(this.systemctl, args, options, (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { killed?: boolean; code?: number | string }) | null;
        resolve({
          code: e ? (typeof e.code === 'number' ? e.code : null) : 0,
          stdout: String(stdout).trim(),
          stderr: String(stderr).trim() || (e && typeof e.code === 'string' ? e.message : ''),
          timedOut: !!e?.killed,
        });
      });
    });
  }

  /** active, inactive, failed, activating, ... ("unknown" when systemctl itself fails). */
  async state(unit: string): Promise<string> {
    const r = await this.run(['is-active', '--', unit], 5000);
    return r.stdout.split('\n')[0] || 'unknown';
  }

  async restarts(unit: string): Promise<number> {
    const r = await this.run(['show', '-p', 'NRestarts', '--value', '--', unit], 5000);
    return Number(r.stdout) || 0;
  }

  async exists(unit: string): Promise<boolean> {
    const r = await this.run(['cat', '--', unit], 5000);
    return r.code === 0;
  }

  /** Fire and forget: used for ota-gui, which must never hold the install. */
  async startNoBlock(unit: string): Promise<void> {
    await this.run(['start', '--no-block', '--', unit], 5000);
  }

  async stop(unit: string): Promise<void> {
    const r = await this.run(['stop', '--', unit], this.timeouts.stopMs);
    if (r.timedOut)
      throw new UpdaterError('SERVICE_STOP_TIMEOUT', `${unit} did not stop within ${this.timeouts.stopMs} ms`);
    if (r.code !== 0)
      throw new UpdaterError('SERVICE_STOP_FAILED', `systemctl stop ${unit} exited ${r.code}: ${r.stderr}`);
    const state = await this.state(unit);
    // a unit that ends "failed" after SIGTERM is stopped all the same
    if (state !== 'inactive' && state !== 'failed')
      throw new UpdaterError('SERVICE_STOP_FAILED', `${unit} is ${state} after stop`);
  }

  /** Starts a unit and waits until it is active; returns its restart count at that moment. */
  async start(unit: string): Promise<number> {
    const deadline = Date.now() + this.timeouts.startMs;
    const r = await this.run(['start', '--', unit], this.timeouts.startMs);
    if (r.timedOut)
      throw new UpdaterError('SERVICE_START_TIMEOUT', `${unit} did not start within ${this.timeouts.startMs} ms`);
    if (r.code !== 0)
      throw new UpdaterError('SERVICE_START_FAILED', `systemctl start ${unit} exited ${r.code}: ${r.stderr}`);
    for (;;) {
      const state = await this.state(unit);
      if (state === 'active') return this.restarts(unit);
      if (state === 'failed') throw new UpdaterError('SERVICE_START_FAILED', `${unit} failed right after start`);
      if (Date.now() > deadline)
        throw new UpdaterError(
          'SERVICE_START_TIMEOUT',
          `${unit} is ${state}, not active, after ${this.timeouts.startMs} ms`,
        );
      await pause(pollEvery(this.timeouts.startMs));
    }
  }

  /** Probation: every unit stays active and is not restarted for the whole window. */
  async probation(baseline: Map<string, number>): Promise<void> {
    const end = Date.now() + this.timeouts.probationMs;
    for (;;) {
      for (const [unit, before] of baseline) {
        const state = await this.state(unit);
        if (state !== 'active') throw new UpdaterError('SERVICE_UNHEALTHY', `${unit} is ${state} during probation`);
        const now = await this.restarts(unit);
        if (now !== before)
          throw new UpdaterError('SERVICE_UNHEALTHY', `${unit} restarted ${now - before} time(s) during probation`);
      }
      if (Date.now() >= end) return;
      await pause(Math.min(pollEvery(this.timeouts.probationMs), Math.max(0, end - Date.now())));
    }
  }
}
