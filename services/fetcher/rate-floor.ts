import { UpdaterError } from '../../shared/errors.js';

/** The configured floor: at least `minBytesPerS` on average over every window of `windowMs`. */
export interface RateFloorSetting {
  minBytesPerS: number;
  windowMs: number;
}

/**
 * A download's minimum average rate. The stall timeout alone ends a connection that sends
 * nothing; a server sending a byte just inside it would hold the fetcher for ever (and a
 * 100 MiB package for years). Each window of the attempt must bring its share of bytes, else the
 * download ends as DOWNLOAD_FAILED, resumable: the bytes so far stay for the next /download.
 * It is looked at as bytes arrive, so a trickle ends within one window plus one stall timeout.
 */
export class RateFloor {
  private windowStart: number;
  private windowBytes = 0;

  constructor(
    private readonly setting: RateFloorSetting,
    private readonly now: () => number = Date.now,
  ) {
    this.windowStart = now();
  }

  /** Counts bytes just received; throws once a whole window has gone by below the floor. */
  observe(bytes: number): void {
    if (this.setting.minBytesPerS === 0) return;
    this.windowBytes += bytes;
    const at = this.now();
    const elapsed = at - this.windowStart;
    if (elapsed < this.setting.windowMs) return;
    if ((this.windowBytes * 1000) / elapsed < this.setting.minBytesPerS) {
      throw new UpdaterError(
        'DOWNLOAD_FAILED',
        `too slow: ${this.windowBytes} bytes in ${elapsed} ms, ` +
          `below the floor of ${this.setting.minBytesPerS} bytes/s (resumable: the bytes so far are kept)`,
      );
    }
    this.windowStart = at;
    this.windowBytes = 0;
  }
}
