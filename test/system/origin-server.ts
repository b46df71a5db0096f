// Runs inside the systemd sandbox as a unit: serves the files of a directory with Range support,
// optionally throttled (ORIGIN_RATE bytes per second), on 127.0.0.1:ORIGIN_PORT.
import { createReadStream, statSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';

const dir = process.env.ORIGIN_DIR ?? '/srv/packages';
const rate = Number(process.env.ORIGIN_RATE ?? 0);
http
  .createServer((req, res) => {
    const file = path.join(dir, path.basename(req.url ?? '/'));
    let size: number;
    try {
      size = statSync(file).size;
    } catch {
      return void res.writeHead(404).end();
    }
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    const etag = `"${size}"`;
    if (m && start >= size) return void res.writeHead(416, { 'content-range': `bytes */${size}` }).end();
    const headers = { etag, 'content-length': size - start, 'accept-ranges': 'bytes' };
    if (m && (!req.headers['if-range'] || req.headers['if-range'] === etag))
      res.writeHead(206, { ...headers, 'content-range': `bytes ${start}-${size - 1}/${size}` });
    else res.writeHead(200, { ...headers, 'content-length': size });
    const from = res.statusCode === 206 ? start : 0;
    if (!rate) return void createReadStream(file, { start: from }).pipe(res);
    const stream = createReadStream(file, { start: from, highWaterMark: Math.max(1024, Math.floor(rate / 10)) });
    stream.on('data', (chunk) => {
      res.write(chunk);
      stream.pause();
      setTimeout(() => stream.resume(), 100);
    });
    stream.on('end', () => res.end());
    res.on('close', () => stream.destroy());
  })
  .listen(Number(process.env.ORIGIN_PORT ?? 8000), '127.0.0.1');
