import { Agent, request } from 'undici';
import { LatestOnly } from './latest-only.js';
import type { Logger } from './log.js';
import type { Status } from './status.js';

export const REPORT_PATH = '/api/v1.0/ota/report';

/**
 * Posts status changes to device-api. Fire and forget: each post has its own deadline; a slow
 * device-api makes the progress steps within a stage coalesce into the newest one, while every
 * stage change still arrives, in order; a dead one only costs a log line.
 */
export class Reporter {
  private readonly queue: LatestOnly<Status>;
  private readonly agent: Agent;
  private readonly url: string;

  constructor(
    baseUrl: string,
    private readonly timeoutMs: number,
    private readonly log: Logger,
  ) {
    this.url = new URL(REPORT_PATH, baseUrl).toString();
    this.agent = new Agent({ connect: { timeout: timeoutMs }, keepAliveTimeout: 4000 });
    this.queue = new LatestOnly(
      (s) => this.post(s),
      (s) => s.stage,
    );
  }

  report(status: Status): void {
    this.queue.push({ ...status });
  }

  /** Waits until every report so far went out (for shutdown and tests). */
  idle(): Promise<void> {
    return this.queue.idle();
  }

  async close(): Promise<void> {
    await this.idle();
    await this.agent.close();
  }

  private async post(status: Status): Promise<void> {
    try {
      const res = await request(this.url, {
        method: 'POST',
        dispatcher: this.agent,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(status),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      await res.body.dump();
      if (res.statusCode < 200 || res.statusCode > 299) {
        this.log.warn({ statusCode: res.statusCode, stage: status.stage }, 'device-api refused the report');
      }
    } catch (e) {
      this.log.warn({ err: (e as Error).message, stage: status.stage }, 'report to device-api failed; carrying on');
    }
  }
}
