import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, test } from 'node:test';
import { TestDevice } from './helpers/device.js';
import { rawRequest, requestText } from './helpers/raw-http.js';
import { distDir } from './helpers/services.js';

// The gateway bounds slow clients with real sockets on loopback: a request's headers and its
// body each within a deadline, a cap of connections that closes the oldest waiting one, and
// under 3000 clients each sending a body a byte every 2 s it stays under its unit's MemoryMax
// while /progress keeps answering. The load is bounded in count and time.

const devices: TestDevice[] = [];
after(() => Promise.all(devices.map((d) => d.stop())));

async function gateway(extra: Record<string, string>): Promise<TestDevice> {
  const d = new TestDevice(extra);
  devices.push(d);
  await d.start('fetcher', 'api-gateway');
  return d;
}

const portOf = (d: TestDevice) => Number(d.env.TOPE_LISTEN_PORT);
const MiB = 1024 * 1024;

const unit = () => readFileSync(path.join(distDir, '../units/tope-api-gateway.service'), 'utf8');

/** The unit's MemoryMax= in bytes, from the unit file as shipped. */
function unitMemoryMax(): number {
  const m = /^MemoryMax=(\d+)M$/m.exec(unit());
  assert.ok(m, 'MemoryMax= in tope-api-gateway.service');
  return Number(m[1]) * MiB;
}

/** The V8 flags the unit runs node with, so that the process measured is the one shipped. */
function unitNodeOptions(): string {
  const m = /^Environment="NODE_OPTIONS=([^"]*)"$/m.exec(unit());
  assert.ok(m, 'NODE_OPTIONS in tope-api-gateway.service');
  return m[1];
}

/** A /proc/<pid>/status field in bytes (VmRSS now, VmHWM its peak). */
const procKb = (pid: number, field: string) =>
  Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;

/** Writes `head`, then `rest` one byte every `everyMs`; resolves with what came back when the gateway closed it. */
function trickle(port: number, head: string, rest: string, everyMs: number): Promise<{ answer: string; ms: number }> {
  const started = performance.now();
  const socket = net.connect(port, '127.0.0.1');
  let answer = '';
  let at = 0;
  socket.write(head);
  const timer = setInterval(() => {
    if (at < rest.length) socket.write(rest[at++]);
  }, everyMs);
  socket.setEncoding('utf8').on('data', (c: string) => {
    answer += c;
  });
  return new Promise((ok) =>
    socket
      .on('close', () => {
        clearInterval(timer);
        ok({ answer, ms: performance.now() - started });
      })
      .on('error', () => undefined),
  );
}

test('headers that trickle are 408 REQUEST_TIMEOUT within the header deadline, with the envelope', async () => {
  const d = await gateway({ TOPE_API_HEADERS_TIMEOUT_MS: '400', TOPE_API_BODY_TIMEOUT_MS: '400' });
  const { answer, ms } = await trickle(
    portOf(d),
    'GET /api/v1.0/progress HTTP/1.1\r\n',
    `host: 127.0.0.1:${portOf(d)}\r\nx-slow: ${'x'.repeat(200)}`,
    50,
  );
  assert.match(answer, /^HTTP\/1\.1 408 /);
  assert.match(answer, /"msg":"REQUEST_TIMEOUT: the request did not arrive in time"/);
  assert.ok(ms < 400 + 2000, `closed after ${Math.round(ms)} ms`);
});

test('a body that trickles is 408 REQUEST_TIMEOUT within the body deadline, and nothing is decided on', async () => {
  const d = await gateway({ TOPE_API_HEADERS_TIMEOUT_MS: '400', TOPE_API_BODY_TIMEOUT_MS: '500' });
  const body = JSON.stringify({
    version: '1.0.0',
    package_url: 'http://127.0.0.1:9/p.zip',
    package_name: 'p.zip',
    package_size: 10,
    package_md5: 'a'.repeat(32),
  });
  const head = requestText('POST', '/api/v1.0/download', {
    host: `127.0.0.1:${portOf(d)}`,
    'content-type': 'application/json',
    'content-length': String(body.length),
  });
  const { answer, ms } = await trickle(portOf(d), head, body, 50);
  assert.match(answer, /^HTTP\/1\.1 408 /);
  assert.match(answer, /"msg":"REQUEST_TIMEOUT: the request body did not arrive within 500 ms"/);
  assert.ok(ms >= 500 && ms < 500 + 2000, `closed after ${Math.round(ms)} ms`);
  assert.equal((await d.progress()).body.data.stage, 'idle');
});

test('past the connection cap the oldest waiting connection is closed, and a new request is answered', async () => {
  const d = await gateway({ TOPE_API_MAX_CONNECTIONS: '8' });
  const port = portOf(d);
  const idle = await Promise.all(
    Array.from(
      { length: 8 },
      () =>
        new Promise<net.Socket>((ok) => {
          const s = net.connect(port, '127.0.0.1', () => ok(s));
          s.on('error', () => undefined);
        }),
    ),
  );
  const oldestClosed = new Promise<void>((ok) => idle[0].on('close', () => ok()));
  // the gateway takes connections in the order they came: the eight are counted before this one
  const r = await rawRequest(
    port,
    requestText('GET', '/api/v1.0/progress', { host: `127.0.0.1:${port}`, connection: 'close' }),
  );
  assert.equal(r.body.code, 200);
  await oldestClosed; // the oldest waiting one was closed to make room
  assert.ok(
    idle.slice(1).every((s) => !s.destroyed),
    'only the oldest',
  );
  for (const s of idle) s.destroy();
});

test(
  '3000 clients sending a body a byte every 2 s: the gateway stays under its MemoryMax and /progress answers',
  { timeout: 120_000 },
  async (t) => {
    const d = await gateway({ NODE_OPTIONS: unitNodeOptions() }); // the production deadlines, cap and heap
    const port = portOf(d);
    const pid = d.running.find((s) => s.child.spawnargs.some((a) => a.includes('api-gateway')))!.child.pid!;
    const head = requestText('POST', '/api/v1.0/download', {
      host: `127.0.0.1:${port}`,
      'content-type': 'application/json',
      'content-length': '100000',
    });
    const clients = 3000;
    const loadMs = 15_000;
    const sockets = new Set<net.Socket>();
    let running = true;
    let opened = 0;
    let timeouts = 0;
    const open = () => {
      if (!running) return;
      opened++;
      const s = net.connect(port, '127.0.0.1', () => s.write(head));
      sockets.add(s);
      s.setEncoding('utf8').on('data', (c: string) => {
        if (c.includes('REQUEST_TIMEOUT')) timeouts++;
      });
      s.on('error', () => undefined).on('close', () => {
        sockets.delete(s);
        setTimeout(open, 2000 + Math.random() * 1000); // the client comes back
      });
    };
    for (let i = 0; i < clients; i++) open();
    const drip = setInterval(() => {
      for (const s of sockets) if (s.writable) s.write(' ');
    }, 2000);
    const latencies: number[] = [];
    const baseline = procKb(pid, 'VmRSS');
    const end = Date.now() + loadMs;
    let peakRss = 0;
    try {
      while (Date.now() < end) {
        const started = performance.now();
        const r = await rawRequest(
          port,
          requestText('GET', '/api/v1.0/progress', { host: `127.0.0.1:${port}`, connection: 'close' }),
          10_000,
        );
        latencies.push(performance.now() - started);
        assert.equal(r.body.code, 200);
        peakRss = Math.max(peakRss, procKb(pid, 'VmRSS'));
        await new Promise((ok) => setTimeout(ok, 200));
      }
    } finally {
      running = false;
      clearInterval(drip);
      for (const s of sockets) s.destroy();
    }
    const hwm = procKb(pid, 'VmHWM');
    latencies.sort((a, b) => a - b);
    const p50 = latencies[Math.floor(latencies.length / 2)];
    const max = latencies.at(-1)!;
    t.diagnostic(
      `${clients} slow clients, ${opened} connections over ${loadMs / 1000} s, ${timeouts} answered 408; gateway RSS ${(baseline / MiB).toFixed(1)} MiB before, ` +
        `peak ${(peakRss / MiB).toFixed(1)} MiB (VmHWM ${(hwm / MiB).toFixed(1)} MiB); /progress ${latencies.length} calls, p50 ${p50.toFixed(0)} ms, max ${max.toFixed(0)} ms`,
    );
    assert.ok(hwm < unitMemoryMax(), `VmHWM ${hwm} under MemoryMax ${unitMemoryMax()}`);
    // generous: this machine may be running other work; the figure above is what to read
    assert.ok(max < 5000, `/progress answered within 5 s every time (max ${max.toFixed(0)} ms)`);
    assert.ok(
      opened > clients,
      'connections were closed (to make room, or at their deadline) and the clients came back',
    );
  },
);
