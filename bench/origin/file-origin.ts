import { promises as fsp } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { TokenBucket } from './token-bucket.js';
import { writeRangeHead } from '../../test/helpers/range-head.js';

// A package server for benchmarks: files from a directory on disk (a 1 GiB package is not held
// in memory), honest Range and If-Range, an optional rate cap, and a count of the body bytes it
// handed to the kernel, which is what "bytes fetched" means to a network link.

export interface OriginOptions {
  root: string;
  /** null: as fast as loopback goes. */
  capBytesPerSecond: number | null;
}

export interface SeenRequest {
  /** Wall-clock ms (Date.now()), comparable with the services' log times. */
  at: number;
  path: string;
  range: string | null;
}

const CHUNK = 256 * 1024;
const CAPPED_CHUNK = 16 * 1024; // small writes keep a capped stream smooth (13 ms at 10 Mbit/s)

function drainedOrClosed(res: http.ServerResponse): Promise<void> {
  return new Promise((ok) => {
    const done = () => {
      res.off('drain', done).off('close', done);
      ok();
    };
    res.on('drain', done).on('close', done);
  });
}

export class FileOrigin {
  bytesServed = 0;
  readonly requests: SeenRequest[] = [];
  private readonly server = http.createServer((req, res) => void this.handle(req, res).catch(() => res.destroy()));

  constructor(private readonly options: OriginOptions) {}

  async listen(): Promise<number> {
    await new Promise<void>((ok) => this.server.listen(0, '127.0.0.1', ok));
    return (this.server.address() as AddressInfo).port;
  }

  reset(): void {
    this.bytesServed = 0;
    this.requests.length = 0;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const name = path.basename(decodeURIComponent((req.url ?? '/').split('?')[0]));
    this.requests.push({ at: Date.now(), path: name, range: req.headers.range ?? null });
    const file = path.join(this.options.root, name);
    const st = await fsp.stat(file).catch(() => null);
    if (!st?.isFile()) {
      res.writeHead(404).end();
      return;
    }
    const size = st.size;
    const etag = `"${size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`;
    const lastModified = st.mtime.toUTCString();
    const common = { etag, 'last-modified': lastModified, 'accept-ranges': 'bytes', 'content-type': 'application/zip' };
    const start = writeRangeHead(req, res, size, common, [etag, lastModified]);
    if (start === null) return;
    await this.pump(file, start, size, res);
  }

  /** Streams [start, size) with backpressure, through the token bucket when capped. */
  private async pump(file: string, start: number, size: number, res: http.ServerResponse): Promise<void> {
    const cap = this.options.capBytesPerSecond;
    const bucket = cap ? new TokenBucket(cap, 2 * CAPPED_CHUNK) : null;
    const chunkSize = cap ? CAPPED_CHUNK : CHUNK;
    const fh = await fsp.open(file, 'r');
    let closed = false;
    res.on('close', () => {
      closed = true;
    });
    try {
      for (let at = start; at < size && !closed;) {
        const want = Math.min(chunkSize, size - at);
        if (bucket) await bucket.take(want);
        const buf = Buffer.allocUnsafe(want);
        const { bytesRead } = await fh.read(buf, 0, want, at);
        if (bytesRead === 0) break;
        const chunk = buf.subarray(0, bytesRead);
        at += bytesRead;
        // counted once the chunk is out of our hands (in the kernel's socket buffer)
        const flowing = res.write(chunk, (err) => {
          if (!err) this.bytesServed += chunk.length;
        });
        if (!flowing && !closed) await drainedOrClosed(res);
      }
      if (!closed) res.end();
    } finally {
      await fh.close();
    }
  }
}
