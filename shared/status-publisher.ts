import type { BusyMarker } from './busy-marker.js';
import type { Logger } from './log.js';
import type { Reporter } from './reporter.js';
import type { Status } from './status.js';

/**
 * Whether another worker has recorded a newer command than `seq`: its record, not this worker's,
 * is the status the gateway shows (shared/workers.ts, the gateway's rule).
 */
export type Superseded = (seq: number) => Promise<boolean>;

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
    private readonly superseded: Superseded,
  ) {}

  static async open(
    marker: BusyMarker,
    reporter: Reporter,
    log: Logger,
    superseded: Superseded,
  ): Promise<StatusPublisher> {
    return new StatusPublisher(marker, reporter, log, await marker.present(), superseded);
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

  /**
   * At start, with no work to resume: a crash fell between the last write and the end of its
   * report, so `status` (the worker's own, recorded under command `seq`) goes out again. Unless
   * another worker has recorded a newer command since: then the gateway shows that one's status,
   * which its own reports carried, and this one is history. The crash fell between this worker's
   * marker and a new command's record (the fetcher's, at a download after an install), and its
   * status reported again would be device-api's last word against what /progress says. `seq`
   * null: reported whatever else was recorded (a status that must reach device-api, such as an
   * abandoned recovery's).
   */
  async reportAgainIfLeft(status: Status, seq: number | null): Promise<void> {
    if (!this.markerLeft) return;
    if (seq !== null && (await this.superseded(seq))) {
      this.log.info({ stage: status.stage, seq }, 'a newer command was recorded by another worker: not reported again');
    } else {
      this.log.info({ stage: status.stage }, 'reporting the last status again');
      this.reporter.report(status);
    }
    await this.reportedThenIdle();
  }

  private async reportedThenIdle(): Promise<void> {
    await this.reporter.idle();
    await this.marker.set(false);
  }
}
