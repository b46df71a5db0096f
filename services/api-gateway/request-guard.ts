import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ErrorCode } from '../../shared/errors.js';
import { envelopeCodeOf } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { errorEnvelope, send } from './envelope.js';

// Only the printer may ask. The API has no authentication, so it answers only requests a web
// page cannot forge:
// - Host names this gateway (DNS rebinding: a page on evil.example whose name now resolves to
//   127.0.0.1 still sends "Host: evil.example:12315");
// - a POST says Content-Type: application/json, which no form, no-cors fetch or beacon may send
//   without a CORS preflight;
// - a request with an Origin header (every cross-origin POST a browser makes, and every
//   preflight) or a browser's Sec-Fetch-Site saying cross-site is refused; CORS is never granted.

export interface GuardOptions {
  /** Names allowed in Host beside loopback and the connection's own address (TOPE_LISTEN_HOST, TOPE_API_HOST_NAMES). */
  hostNames: string[];
  log: Logger;
}

type Listener = (req: IncomingMessage, res: ServerResponse) => void;

const loopbackNames = ['localhost', '127.0.0.1', '[::1]'];

/** "::ffff:192.0.2.1" (an IPv4 client on a dual-stack socket) reads as the IPv4 address. */
const plainAddress = (a: string | undefined): string =>
  (a ?? '').replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '').toLowerCase();
const asHost = (address: string): string => (address.includes(':') ? `[${address}]` : address);

/** The Host values this connection may carry: every allowed name with the port it arrived on. */
export function allowedHosts(req: IncomingMessage, hostNames: string[]): Set<string> {
  const port = req.socket.localPort;
  const names = new Set([
    ...loopbackNames,
    ...hostNames.map((n) => asHost(n.toLowerCase())),
    asHost(plainAddress(req.socket.localAddress)),
  ]);
  const hosts = new Set<string>();
  for (const name of names) {
    if (!name) continue;
    hosts.add(`${name}:${port}`);
    if (port === 80) hosts.add(name); // a Host without a port means 80
  }
  return hosts;
}

/** The refusal for this request, or null when it may go on to the routes. */
export function refusalOf(req: IncomingMessage, hostNames: string[]): { error: ErrorCode; text: string } | null {
  const host = (req.headers.host ?? '').toLowerCase();
  if (!allowedHosts(req, hostNames).has(host)) {
    return {
      error: 'HOST_NOT_ALLOWED',
      text: `Host ${JSON.stringify(req.headers.host ?? null)} does not name this gateway`,
    };
  }
  const site = req.headers['sec-fetch-site'];
  if (
    req.headers.origin !== undefined ||
    req.method === 'OPTIONS' ||
    (site !== undefined && site !== 'none' && site !== 'same-origin')
  ) {
    return { error: 'CROSS_ORIGIN_REFUSED', text: 'requests from web pages are not served (no CORS)' };
  }
  if (req.method === 'POST') {
    const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    if (type !== 'application/json') {
      return {
        error: 'UNSUPPORTED_MEDIA_TYPE',
        text: `Content-Type must be application/json, not ${JSON.stringify(req.headers['content-type'] ?? null)}`,
      };
    }
  }
  return null;
}

/**
 * Wraps the API's request listener: a refused request gets its envelope, with the HTTP status
 * of the envelope's code and no CORS header, and never reaches a route.
 */
export function guardRequests<Q extends IncomingMessage, S extends ServerResponse>(
  next: (req: Q, res: S) => void,
  options: GuardOptions,
): Listener {
  return (req, res) => {
    const refusal = refusalOf(req, options.hostNames);
    if (!refusal) return next(req as Q, res as S); // the app's own request types add to Node's, filled in by the app
    options.log.warn(
      { code: refusal.error, method: req.method, url: req.url, host: req.headers.host, origin: req.headers.origin },
      'request refused',
    );
    const code = envelopeCodeOf[refusal.error];
    res.setHeader('connection', 'close'); // an unread body is not worth reading
    send(res, errorEnvelope(code, refusal.error, refusal.text), code);
  };
}
