import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { packageOfSize } from './packages.js';
import { writeRangeHead } from './range-head.js';

const MIN_PACKAGE_BYTES = 4096;

// A real package server on loopback whose every answer the test scripts: honest Range
// support by default, and each fault a test needs on request.

export type Behaviour =
  | { kind: 'serve'; etag?: string; throttle?: { bytes: number; everyMs: number }; cutAfter?: number }
  | { kind: 'ignore-range' }
  | { kind: 'cut'; after: number }
  | { kind: 'reset'; after: number }
  | { kind: 'stall'; after: number }
  | { kind: 'short'; send: number }
  | { kind: 'long'; extra: number }
  | { kind: 'lie-length'; length: number }
  | { kind: 'status'; code: number; headers?: Record<string, string> }
  | { kind: 'redirect'; to: string; code?: number }
  | { kind: 'bad-range'; start: number }
  | { kind: 'no-range-206' };

export interface Seen {
  path: string;
  range: string | undefined;
  ifRange: string | undefined;
}

export class Origin {
  readonly requests: Seen[] = [];
  etag = '"v1"';
  body: Buffer;
  private server!: http.Server;
  private plan: (n: number, path: string) => Behaviour = () => ({ kind: 'serve' });
  private readonly sockets = new Set<import('node:net').Socket>();
  private readonly placeholder: Buffer;

  constructor(
    size: number,
    private readonly tls?: { key: string; cert: string },
  ) {
    this.body = randomBytes(size);
    this.placeholder = this.body;
  }

  get md5(): string {
    return createHash('md5').update(this.body).digest('hex');
  }

  get sha256(): string {
    return createHash('sha256').update(this.body).digest('hex');
  }

  url(path = '/pkg.zip'): string {
    const { port } = this.server.address() as AddressInfo;
    return `${this.tls ? 'https' : 'http'}://127.0.0.1:${port}${path}`;
  }

  /** Scripts the answers: `plan(n, path)` gives the behaviour for the n-th request (0-based). */
  script(plan: (n: number, path: string) => Behaviour): void {
    this.plan = plan;
  }

  /** Answers the first requests with `first`, then serves honestly. */
  sequence(...first: Behaviour[]): void {
    this.script((n) => first[n] ?? { kind: 'serve' });
  }

  async start(): Promise<this> {
    // a body the test did not choose is a signed package of the size asked for: the fetcher
    // accepts only those (a tiny one stays random bytes, for tests that never verify it)
    if (this.body === this.placeholder && this.body.length >= MIN_PACKAGE_BYTES)
      this.body = await packageOfSize(this.body.length);
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => this.handle(req, res);
    this.server = this.tls ? https.createServer(this.tls, handler) : http.createServer(handler);
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((ok) => this.server.listen(0, '127.0.0.1', ok));
    return this;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((ok) => this.server.close(() => ok()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const n = this.requests.length;
    const path = req.url ?? '/';
    this.requests.push({ path, range: req.headers.range, ifRange: req.headers['if-range'] as string | undefined });
    const b = this.plan(n, path);
    const size = this.body.length;
    const common = { etag: this.etag, 'last-modified': 'Wed, 25 Nov 2026 10:00:00 GMT', 'accept-ranges': 'bytes' };
    switch (b.kind) {
      case 'status':
        res.writeHead(b.code, b.headers).end();
        return;
      case 'redirect':
        res.writeHead(b.code ?? 302, { location: b.to }).end();
        return;
      case 'ignore-range':
        res.writeHead(200, { ...common, 'content-length': size }).end(this.body);
        return;
      case 'cut':
        return this.serve(req, res, { kind: 'serve', cutAfter: b.after }, common);
      case 'reset':
        // a TCP RST after `after` bytes, as a NAT or a dying router sends
        res.writeHead(200, { ...common, 'content-length': size });
        res.write(this.body.subarray(0, b.after), () => res.socket?.resetAndDestroy());
        return;
      case 'stall':
        res.writeHead(200, { ...common, 'content-length': size });
        res.write(this.body.subarray(0, b.after));
        return; // never ends, never closes
      case 'short':
        res.writeHead(200, { ...common, 'content-length': size });
        res.end(this.body.subarray(0, b.send), () => res.socket?.destroy());
        return;
      case 'long':
        res.writeHead(200, { ...common });
        res.end(Buffer.concat([this.body, randomBytes(b.extra)]));
        return;
      case 'lie-length':
        res.writeHead(200, { ...common, 'content-length': b.length });
        res.end(this.body.subarray(0, Math.min(b.length, size)));
        return;
      case 'bad-range':
        res.writeHead(206, {
          ...common,
          'content-range': `bytes ${b.start}-${size - 1}/${size}`,
          'content-length': size - b.start,
        });
        res.end(this.body.subarray(b.start));
        return;
      case 'no-range-206':
        res.writeHead(206, { ...common, 'content-length': size });
        res.end(this.body);
        return;
      case 'serve':
        return this.serve(req, res, b, common);
    }
  }

  private serve(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    b: Extract<Behaviour, { kind: 'serve' }>,
    common: Record<string, string>,
  ): void {
    const size = this.body.length;
    const etag = b.etag ?? this.etag;
    const headers = { ...common, etag };
    const start = writeRangeHead(req, res, size, headers, [etag, common['last-modified']]);
    if (start === null) return;
    if (b.cutAfter !== undefined) {
      // headers promise the whole rest; the connection dies after `cutAfter` bytes of it
      res.write(this.body.subarray(start, start + b.cutAfter), () => setTimeout(() => res.socket?.destroy(), 10));
      return;
    }
    if (!b.throttle) {
      res.end(this.body.subarray(start));
      return;
    }
    const { bytes, everyMs } = b.throttle;
    let at = start;
    const timer = setInterval(() => {
      if (res.destroyed) return clearInterval(timer);
      const end = Math.min(size, at + bytes);
      res.write(this.body.subarray(at, end));
      at = end;
      if (at >= size) {
        clearInterval(timer);
        res.end();
      }
    }, everyMs);
    res.on('close', () => clearInterval(timer));
  }
}
