import type http from 'node:http';
import type { Socket } from 'node:net';
import { envelopeCodeOf, type ErrorCode } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { errorEnvelope } from './envelope.js';

// The gateway bounds what slow or hostile clients can hold: a request's headers and then its
// body each arrive within seconds, an idle keep-alive connection goes after seconds, and past a
// cap of connections the oldest one that is not being answered is closed to make room (so a
// flood of slow clients cannot lock device-api or ota-gui out, as a plain cap would). Node's
// own answers to broken requests (400, 431, 408) carry the API's envelope too.

export interface ConnectionLimits {
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
  maxConnections: number;
  log: Logger;
}

/** How long a kept-alive connection may wait for its next request. */
export const KEEP_ALIVE_MS = 5000;
/** Headers beyond this many bytes are answered 431 (Node's default is 16 KiB; the API needs a few hundred bytes). */
export const MAX_HEADER_BYTES = 8192;

/** Options for http.createServer: Node's own deadlines, checked often enough to matter at seconds. */
export const serverOptions = (
  limits: Pick<ConnectionLimits, 'headersTimeoutMs' | 'bodyTimeoutMs'>,
): http.ServerOptions => ({
  headersTimeout: limits.headersTimeoutMs,
  // the whole request; the body's own deadline below answers first, this is the backstop
  requestTimeout: limits.headersTimeoutMs + limits.bodyTimeoutMs + 1000,
  keepAliveTimeout: KEEP_ALIVE_MS,
  connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4))),
  maxHeaderSize: MAX_HEADER_BYTES,
  // an HTTP/1.1 request without Host goes on to the Host check, which answers with the envelope
  // (Node's own check would answer a bare 400)
  requireHostHeader: false,
});

/** A whole HTTP/1.1 answer with the envelope, for a socket Node has not (or no longer) parsed a request on. */
export function rawAnswer(error: ErrorCode, text: string): string {
  const code = envelopeCodeOf[error];
  const body = JSON.stringify(errorEnvelope(code, error, text));
  return (
    `HTTP/1.1 ${code} ${error}\r\ncontent-type: application/json; charset=utf-8\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n${body}`
  );
}

/** Node's reason for a broken request, as the envelope says it. */
function clientErrorAnswer(err: NodeJS.ErrnoException): { error: ErrorCode; text: string } {
  if (err.code === 'HPE_HEADER_OVERFLOW')
    return { error: 'HEADERS_TOO_LARGE', text: `request headers larger than ${MAX_HEADER_BYTES} bytes` };
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT')
    return { error: 'REQUEST_TIMEOUT', text: 'the request did not arrive in time' };
  return { error: 'VALIDATION_ERROR', text: `malformed HTTP request (${err.code ?? err.message})` };
}

interface Tracked {
  /** A request whose whole body is in and whose answer is being made: not closed to make room. */
  answering: boolean;
}

/** Applies the limits to a server made with serverOptions(). */
export function limitConnections(server: http.Server, limits: ConnectionLimits): void {
  // insertion order is arrival order: the first evictable entry is the oldest
  const open = new Map<Socket, Tracked>();
  let evicted = 0;

  server.on('connection', (socket: Socket) => {
    open.set(socket, { answering: false });
    socket.once('close', () => open.delete(socket));
    if (open.size <= limits.maxConnections) return;
    for (const [oldest, state] of open) {
      if (state.answering || oldest === socket) continue;
      oldest.destroy();
      open.delete(oldest);
      if (evicted++ % 1000 === 0)
        limits.log.warn({ open: open.size, evicted }, 'connection cap reached; closing the oldest waiting connections');
      return;
    }
    open.delete(socket);
    socket.destroy(); // every other one is being answered: this one waits for none of them
  });

  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (err.code === 'ECONNRESET' || !socket.writable) return void socket.destroy();
    const { error, text } = clientErrorAnswer(err);
    socket.end(rawAnswer(error, text));
    socket.destroySoon();
  });

  // the body's deadline; the request counts as being answered once its body is in
  server.prependListener('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const tracked = open.get(req.socket);
    const bodyIn = () => {
      clearTimeout(timer);
      if (tracked) tracked.answering = true;
    };
    const timer = setTimeout(() => {
      if (res.headersSent) return void req.socket.destroy();
      const body = rawAnswer('REQUEST_TIMEOUT', `the request body did not arrive within ${limits.bodyTimeoutMs} ms`);
      req.socket.end(body);
      req.socket.destroySoon();
    }, limits.bodyTimeoutMs);
    const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
    if (req.complete || !hasBody) bodyIn();
    else req.once('end', bodyIn);
    res.once('close', () => {
      clearTimeout(timer);
      if (tracked) tracked.answering = false;
    });
  });
}
