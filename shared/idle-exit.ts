import { hasInheritedSocket } from './listen.js';

/**
 * Under socket activation a process need not stay up: after `idleMs` with nothing in flight (a
 * request, a command connection) and no work running, it ends. systemd keeps the socket and
 * starts the service again on the next connection; the state lives in files, so nothing is lost.
 * Started any other way (`make run`, by hand), nothing would start it again: it never ends.
 *
 * A worker whose work has succeeded ends at once instead (`workEnded`; which stages allow it is
 * shared/stages.ts's decision): its next command may be days away, and on a printer with 512 MiB
 * the fetcher's ~60 MiB would otherwise stay beside the installer for the whole install that
 * follows a download.
 */
export class IdleExit {
  private inFlight = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly idleMs: number;
  /** The work that ran has ended and no command came since: the next check is not waited for. */
  private workDone = false;

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
    this.workDone = false;
    this.disarm();
  }

  end(): void {
    if (--this.inFlight === 0) this.arm();
  }

  /**
   * The work a command or the recovery started has ended. `atOnce`: with nothing in flight, the
   * process ends now; else a whole idle period from now (not from the command, which may be that
   * long ago already: device-api's retry of a failure finds the same process).
   */
  workEnded(atOnce: boolean): void {
    this.workDone = atOnce;
    if (this.inFlight === 0) this.arm();
  }

  private arm(): void {
    if (this.idleMs <= 0) return;
    this.disarm();
    this.timer = setTimeout(() => void this.check(), this.workDone ? 0 : this.idleMs);
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private async check(): Promise<void> {
    this.timer = null;
    if (this.inFlight > 0) return;
    if (await this.workRunning().catch(() => true)) {
      // the work's end calls workEnded(); until then, the usual period
      this.workDone = false;
      return this.arm();
    }
    if (this.inFlight === 0 && !this.timer) this.onIdle();
  }
}
