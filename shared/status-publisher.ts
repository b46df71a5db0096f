import type { BusyMarker } from './busy-marker.js';
import type { Logger } from './log.js';
import type { Reporter } from './reporter.js';
import type { Status } from './status.js';

/**
 * Where a worker's status goes once decided: its own record, device-api, and the busy marker
 * the path unit watches. The marker goes up before a busy status is written, and comes down
 * only after the report of the next status that is not busy went out, so that a crash anywhere
 * between leaves it there: the next start then resumes the work or sends that report again.
 */
export class StatusPublisher {
  private constructor(
    private readonly marker: BusyMarker,
    private readonly reporter: Reporter,
    private readonly log: Logger,
    /** The marker was there at start: the last run stopped before its work, or its last report, was done. */
    private readonly markerLeft: boolean,
  ) {}

  static async open(marker: BusyMarker, reporter: Reporter, log: Logger): Promise<StatusPublisher> {
    return new StatusPublisher(marker, reporter, log, await marker.present());
  }

  /** Writes `status` with `write`, then reports it; `busy` says whether work is still unfinished. */
  async publish(status: Status, busy: boolean, write: () => Promise<void>): Promise<void> {
    if (busy) await this.marker.set(true);
    await write();
    this.reporter.report(status);
    if (!busy) await this.reportedThenIdle();
  }

  /** A step within a busy stage (the marker is up already): device-api hears of it, nothing else. */
  report(status: Status): void {
    this.reporter.report(status);
  }

  /** At start, with no work to resume: a crash fell between the last write and the end of its report. */
  async reportAgainIfLeft(status: Status): Promise<void> {
    if (!this.markerLeft) return;
    this.log.info({ stage: status.stage }, 'reporting the last status again');
    this.reporter.report(status);
    await this.reportedThenIdle();
  }

  private async reportedThenIdle(): Promise<void> {
    await this.reporter.idle();
    await this.marker.set(false);
  }
}
