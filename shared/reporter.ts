import http from 'node:http';
import { REPORT_PATH } from './device-api.js';
import { LatestOnly } from './latest-only.js';
import type { Logger } from './log.js';
import type { Status } from './status.js';

type Transport = Pick<typeof http, 'request' | 'Agent'>;

/**
 * Posts status changes to device-api. Fire and forget: each post has its own deadline; a slow
 * device-api makes the progress steps within a stage coalesce into the newest one, while every
 * stage change still arrives, in order; a dead one only costs a log line.
 *
 * Node's own http client, not undici: a small JSON post to a local service is all it does, and
 * undici costs ~15 MiB of RSS loaded (its http2, tls and web-stream dependencies), which the
 * installer would carry for nothing else (BENCHMARKS.md, the budget section). node:https is
 * loaded only for an https device-api.
 */
export class Reporter {
  private readonly queue: LatestOnly<Status>;
  private readonly url: URL;
  private readonly transport: Promise<{ module: Transport; agent: http.Agent }>;

  constructor(
    baseUrl: string,
    private readonly timeoutMs: number,
    private readonly log: Logger,
  ) {
    this.url = new URL(REPORT_PATH, baseUrl);
    const module: Promise<Transport> = this.url.protocol === 'https:' ? import('node:https') : Promise.resolve(http);
    // an idle kept-alive connection is closed after 4 s
    this.transport = module.then((m) => ({ module: m, agent: new m.Agent({ keepAlive: true, timeout: 4000 }) }));
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
    (await this.transport).agent.destroy();
  }

  private async post(status: Status): Promise<void> {
    try {
      const statusCode = await this.send(JSON.stringify(status));
      if (statusCode < 200 || statusCode > 299) {
        this.log.warn({ statusCode, stage: status.stage }, 'device-api refused the report');
      }
    } catch (e) {
      this.log.warn({ err: (e as Error).message, stage: status.stage }, 'report to device-api failed; carrying on');
    }
  }

  /** One POST, its answer read to the end; its status code, or the error that ended it. */
  private async send(body: string): Promise<number> {
    const { module, agent } = await this.transport;
    return new Promise<number>((resolve, reject) => {
      const req = module.request(
        this.url,
        {
          method: 'POST',
          agent,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
          signal: AbortSignal.timeout(this.timeoutMs),
        },
        (res) => {
          res.on('error', reject);
          res.on('end', () => resolve(res.statusCode ?? 0));
          // after 'end' this changes nothing; before it, the answer was cut short (its deadline)
          res.on('close', () => reject(new Error('the answer was cut short')));
          res.resume();
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }
}
