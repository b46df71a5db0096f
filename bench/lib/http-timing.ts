import http from 'node:http';
import { nowMs } from './clock.js';

export interface Timed {
  ms: number;
  body: string;
}

/** One GET on a fresh connection (as a poller without keep-alive does), timed from connect to the last byte. */
export function timedGet(url: string, timeoutMs = 10_000): Promise<Timed> {
  return new Promise((resolve, reject) => {
    const t0 = nowMs();
    const req = http.get(url, { agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve({ ms: nowMs() - t0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
  });
}

/**
 * The first answer from a server that is still starting: connection refusals are retried at
 * once (the socket is not bound yet), anything else fails. Times from `t0` (nowMs()).
 */
export async function firstAnswer(url: string, t0: number, deadlineMs = 10_000): Promise<Timed> {
  for (;;) {
    try {
      const r = await timedGet(url, deadlineMs);
      return { ms: nowMs() - t0, body: r.body };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ECONNREFUSED' || nowMs() - t0 > deadlineMs) throw e;
      await new Promise((r) => setTimeout(r, 1));
    }
  }
}
