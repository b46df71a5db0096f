import { execFile } from 'node:child_process';
import notify from 'systemd-notify';
import { LatestOnly } from './latest-only.js';
import type { Logger } from './log.js';

/**
 * READY=1 and STATUS= for `systemctl status`, through the systemd-notify binary. Outside
 * systemd (no NOTIFY_SOCKET) it does nothing; a failure is logged, never thrown.
 *
 * When the unit asks for it (WatchdogSec= sets WATCHDOG_USEC), `startWatchdog()` sends WATCHDOG=1
 * every half of that interval from a timer of the event loop: a loop that is blocked or spinning
 * stops the pings, and systemd kills the process and restarts it, which is always safe here since
 * every persisted state has its recovery action at start. The pings begin before READY=1, so a
 * long recovery at start is not taken for a hang.
 */
export class Notifier {
  private readonly statuses: LatestOnly<{ ready: boolean; status: string }>;
  private watchdog: NodeJS.Timeout | null = null;

  constructor(
    private readonly log: Logger,
    private readonly env = process.env,
  ) {
    this.statuses = new LatestOnly(async (opts) => {
      try {
        await notify(opts);
      } catch (e) {
        this.log.warn({ err: String(e) }, 'sd_notify failed');
      }
    });
  }

  get enabled(): boolean {
    return !!this.env.NOTIFY_SOCKET;
  }

  ready(status: string): void {
    if (this.enabled) this.statuses.push({ ready: true, status });
  }

  /** Half of WATCHDOG_USEC in ms, or null when the watchdog is off or meant for another process. */
  get watchdogPingMs(): number | null {
    const usec = Number(this.env.WATCHDOG_USEC);
    if (!this.enabled || !Number.isInteger(usec) || usec <= 0) return null;
    if (this.env.WATCHDOG_PID && this.env.WATCHDOG_PID !== String(process.pid)) return null;
    return Math.max(1, Math.floor(usec / 2000));
  }

  /** Idempotent; does nothing unless WATCHDOG_USEC is set for this process. */
  startWatchdog(): void {
    const everyMs = this.watchdogPingMs;
    if (everyMs === null || this.watchdog) return;
    let inFlight = false;
    const ping = () => {
      if (inFlight) return; // the last one is still waiting for systemd: one is enough
      inFlight = true;
      // systemd-notify waits until systemd has read the message, so it is counted for this unit;
      // one that never returns is killed by the next ping's time, so the pings go on
      execFile('systemd-notify', ['WATCHDOG=1'], { env: this.env, timeout: everyMs }, (e) => {
        inFlight = false;
        if (e) this.log.warn({ err: e.message }, 'watchdog ping failed');
      });
    };
    ping();
    // the pings never keep a process up that is otherwise done
    this.watchdog = setInterval(ping, everyMs).unref();
  }

  status(status: string): void {
    if (this.enabled) this.statuses.push({ ready: false, status });
  }

  idle(): Promise<void> {
    return this.statuses.idle();
  }
}
