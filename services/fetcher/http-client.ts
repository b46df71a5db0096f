import type { Dispatcher } from 'undici';
import Agent from 'undici/lib/dispatcher/agent.js';
import request from 'undici/lib/api/api-request.js';
import buildConnector from 'undici/lib/core/connect.js';

// The fetcher's HTTP/1.1 client, made of the parts of undici it uses: its Agent (Pool, Client,
// the HTTP/1.1 parser), the request API and the connector. Not `import ... from 'undici'`: its
// index.js loads fetch, web streams, WebSocket, the cache stores, the mock agents and the proxy
// agents as well: the fetcher idled at 66 MiB with it, 62 without (BENCHMARKS.md, the fetcher's
// memory). HTTP/2 is not offered (ALPN says http/1.1 only): one sequential download gains nothing
// from it, and without it the bundle leaves out Node's http2 (scripts/bundle.ts): 60 MiB.

export { buildConnector };
export type { Dispatcher };

/** The fetcher's one Agent: every connection made through `connect`, HTTP/1.1 only. */
export function httpAgent(connect: buildConnector.connector, timeoutMs: number): Dispatcher {
  return new Agent({ connect, allowH2: false, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
}

/** A check of each URL before a request is sent through a dispatcher (the proxy's: proxy.ts). */
export type UrlScreen = (url: URL) => Promise<void>;
const screens = new WeakMap<Dispatcher, UrlScreen>();

/** Every GET through `dispatcher` waits for `screen(url)` first, and is not sent if it throws. */
export function screenRequests(dispatcher: Dispatcher, screen: UrlScreen): Dispatcher {
  screens.set(dispatcher, screen);
  return dispatcher;
}

/** One GET of `url` through `dispatcher` (undici's `request`, without its URL parsing). */
export async function httpGet(
  dispatcher: Dispatcher,
  url: URL,
  headers: Record<string, string>,
  signal: AbortSignal,
): Promise<Dispatcher.ResponseData> {
  await screens.get(dispatcher)?.(url);
  return request.call(dispatcher, {
    origin: url.origin,
    path: `${url.pathname}${url.search}`,
    method: 'GET',
    headers,
    signal,
  });
}
