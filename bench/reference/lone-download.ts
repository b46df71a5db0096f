import { readFileSync } from 'node:fs';
import net from 'node:net';
import { Readable } from 'node:stream';
import { UpdaterError } from '../../shared/errors.js';
import { readBody } from '../../services/fetcher/body-reader.js';
import { tuneEngine } from '../../services/fetcher/engine-flags.js';
import type { buildConnector as Connector } from '../../services/fetcher/http-client.js';
import { PartFile } from '../../services/fetcher/part-file.js';

// The fetcher's download path with no service around it: no command socket, records, reports or
// logger. One GET of a URL into a part file through the fetcher's own body reader and part file
// (MD5 and SHA-256 as the bytes arrive, batched writes), then the process's peak RSS. Every mode
// loads what the part file imports (the package check's modules, which do not run here) and sets
// the fetcher's engine flags; they differ by their client alone. `undici`: the fetcher's Agent and
// request. `tcp`: the body straight from a socket, no HTTP parser at all: what any HTTP client in
// Node adds its own cost to. `node-http`: Node's own client, whose parser (C++) still runs under
// --jitless (undici's is WebAssembly, which --jitless turns off). The budget bench bundles it as
// the services are bundled and runs it as the fetcher's unit runs: what the fetcher's peak is made
// of, in the same run. Prints one JSON line: { peakRss, cpuMs, bytes, md5 }.

const [mode, address, partFile, sizeText] = process.argv.slice(2);
const size = Number(sizeText);

/** The body of a GET of `url` over a bare TCP connection: the head skipped, nothing parsed. */
async function tcpBody(url: URL): Promise<Readable> {
  const socket = net.connect(Number(url.port), url.hostname);
  socket.write(`GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nConnection: close\r\n\r\n`);
  let head = Buffer.alloc(0);
  for (;;) {
    const chunk = await new Promise<Buffer>((ok, fail) => socket.once('data', ok).once('error', fail));
    head = Buffer.concat([head, chunk]);
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) continue;
    socket.pause();
    // the body's first bytes in a buffer of their own, as every later read is
    if (end + 4 < head.length) socket.unshift(Buffer.from(head.subarray(end + 4)));
    return socket;
  }
}

/** The body of a GET of `url` through Node's own HTTP client (its parser is C++, not WebAssembly). */
async function nodeHttpBody(url: URL): Promise<Readable> {
  const http = await import('node:http'); // here, so that the other modes do not load it
  return new Promise((ok, fail) => http.get(url, ok).once('error', fail));
}

async function body(url: URL): Promise<Readable> {
  tuneEngine(); // in every mode, so that the modes differ by their client alone
  if (mode === 'tcp') return tcpBody(url);
  if (mode === 'node-http') return nodeHttpBody(url);
  // imported here, so that the bare TCP read does not load undici (the bundle evaluates it lazily)
  const { buildConnector, httpAgent, httpGet } = await import('../../services/fetcher/http-client.js');
  const agent = httpAgent(buildConnector({ timeout: 30_000 } as Connector.BuildOptions), 30_000);
  const answer = await httpGet(agent, url, {}, new AbortController().signal);
  if (answer.statusCode !== 200) throw new Error(`HTTP ${answer.statusCode}`);
  return answer.body;
}

const part = await PartFile.open(partFile, { offset: 0, etag: null, lastModified: null });
const stream = await body(new URL(address));
const reading = readBody(stream, part, {
  size,
  tooLong: () => new UpdaterError('PACKAGE_SIZE_MISMATCH', 'longer than announced'),
  afterWrite: () => undefined,
});
stream.resume(); // the bare socket was paused while its head was read; undici's body flows already
await reading;
const digests = await part.finish();
await part.close();
const cpu = process.cpuUsage();
const status = readFileSync('/proc/self/status', 'utf8');
process.stdout.write(
  `${JSON.stringify({
    peakRss: Number(/^VmHWM:\s*(\d+) kB/m.exec(status)?.[1]) * 1024,
    cpuMs: (cpu.user + cpu.system) / 1000,
    bytes: part.position.offset,
    md5: digests.md5,
  })}\n`,
);
process.exit(0);
