import http from 'node:http';
import type { AddressInfo } from 'node:net';

// The reference HTTP server: bare Node, one fixed JSON answer of the size of a /progress answer,
// no framework and no file reads. The gateway's latency and cold start are set against it.
// Under systemd-socket-activate it serves the inherited fd 3; alone, it prints its port.

const body = JSON.stringify({
  code: 200,
  msg: 'success',
  data: { stage: 'downloading', progress: 45, message: 'Downloading version 1.2.3... 47.2 MB / 104.9 MB', error: null },
  stage: null,
  progress: null,
});
const server = http.createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
});
if (process.env.LISTEN_FDS) {
  server.listen({ fd: 3 });
} else {
  server.listen(0, '127.0.0.1', () =>
    process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`),
  );
}
process.on('SIGTERM', () => process.exit(0));
