import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, test } from 'node:test';
import { Agent } from 'undici';
import { transfer, type TransferOptions } from '../services/fetcher/transfer.js';
import { tempDir } from './helpers/temp-dir.js';

// Regression for undici issue 5360: a server that sends its whole body and closes the connection
// (FIN) while the client's HTTP/1 parser is paused because the consumer is slow to take the bytes.
// undici 7 threw `assert(!this.paused)` from the socket's 'end' handler, where nothing can catch
// it: the whole process (the fetcher, here the test process) died. openssl s_server -WWW, and
// any server that closes after its body, does this on every download whose disk is slower than
// the network. The server is raw TCP so that the bytes on the wire are exactly these.
// Checked with undici 7.30.2 put back in node_modules: the two answers that end their connection
// (Connection: close, HTTP/1.0) kill the test process with that assertion; the first, kept alive
// by its headers, does not crash there (its FIN is undici's "other side closed", retried).

const SIZE = 4 * 1024 * 1024;
const body = randomBytes(SIZE);
const md5 = createHash('md5').update(body).digest('hex');
const agent = new Agent({ headersTimeout: 5000, bodyTimeout: 5000 });
const servers: net.Server[] = [];
after(async () => {
  for (const s of servers) s.close();
  await agent.close();
});

type Framing = 'content-length' | 'content-length, Connection: close' | 'HTTP/1.0, no length';

/** Answers every request at once with the whole body, then FIN, as a closing server does. */
async function closingServer(framing: Framing): Promise<string> {
  const head =
    framing === 'HTTP/1.0, no length'
      ? 'HTTP/1.0 200 ok\r\nContent-Type: application/zip\r\n\r\n'
      : `HTTP/1.1 200 OK\r\nContent-Length: ${SIZE}\r\nETag: "fin"\r\n${framing.includes('close') ? 'Connection: close\r\n' : ''}\r\n`;
  const server = net.createServer((socket) => {
    socket.on('error', () => undefined);
    socket.once('data', () => {
      socket.write(head);
      socket.end(body); // the whole body, then FIN, without waiting for the reader
    });
  });
  servers.push(server);
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  return `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/pkg.zip`;
}

/** A consumer slower than loopback: each chunk's progress callback takes a few milliseconds, as a slow SD card's write would. */
const slowDisk = (): TransferOptions['onProgress'] => () => new Promise((ok) => setTimeout(ok, 3));

for (const framing of ['content-length', 'content-length, Connection: close', 'HTTP/1.0, no length'] as Framing[]) {
  test(`a server that closes after its body (${framing}) while the fetcher is slow to write: every download completes, the process survives`, async () => {
    const url = await closingServer(framing);
    const dir = tempDir('fin-');
    // several in a row through the same agent: the report saw the crash on the second. A kept-
    // alive connection the server has just closed can fail the next request ("other side
    // closed"): that is an ordinary retry, as the fetcher's configuration allows
    for (let n = 0; n < 5; n++) {
      const partFile = path.join(dir, `pkg-${n}.part`);
      const digests = await transfer({
        url,
        size: SIZE,
        partFile,
        start: { offset: 0, etag: null, lastModified: null },
        allowHttp: true,
        dispatcher: agent,
        retryAttempts: 3,
        retryBaseMs: 1,
        retryAfterMaxMs: 1,
        signal: new AbortController().signal,
        onProgress: slowDisk(),
      });
      assert.equal(digests.md5, md5, `download ${n + 1}`);
      assert.equal((await fsp.stat(partFile)).size, SIZE);
    }
  });
}
