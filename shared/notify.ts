import notify from 'systemd-notify';
import { LatestOnly } from './latest-only.js';
import type { Logger } from './log.js';

/**
 * READY=1 and STATUS= for `systemctl status`, through the systemd-notify binary. Outside
 * systemd (no NOTIFY_SOCKET) it does nothing; a failure is logged, never thrown.
 */
export class Notifier {
  private readonly statuses: LatestOnly<{ ready: boolean; status: string }>;

  constructor(private readonly log: Logger, private readonly env = process.env) {
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

  status(status: string): void {
    if (this.enabled) this.statuses.push({ ready: false, status });
  }

  idle(): Promise<void> {
    return this.statuses.idle();
  }
}
