import { hasInheritedSocket } from './listen.js';

/**
 * Under socket activation a process need not stay up: after `idleMs` with nothing in flight (a
 * request, a command connection) and no work running, it ends. systemd keeps the socket and
 * starts the service again on the next connection; the state lives in files, so nothing is lost.
 * Started any other way (`make run`, by hand), nothing would start it again: it never ends.
 */
export class IdleExit {
  private inFlight = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly idleMs: number;

  constructor(
    idleMs: number,
    private readonly workRunning: () => Promise<boolean>,
    private readonly onIdle: () => void,
  ) {
    this.idleMs = hasInheritedSocket() ? idleMs : 0;
    this.arm();
  }

  /** Something began that the process must stay up for. */
  begin(): void {
    this.inFlight++;
    this.disarm();
  }

  end(): void {
    if (--this.inFlight === 0) this.arm();
  }

  private arm(): void {
    if (this.idleMs <= 0) return;
    this.disarm();
    this.timer = setTimeout(() => void this.check(), this.idleMs);
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private async check(): Promise<void> {
    this.timer = null;
    if (this.inFlight > 0) return;
    if (await this.workRunning().catch(() => true)) return this.arm();
    if (this.inFlight === 0 && !this.timer) this.onIdle();
  }
}
