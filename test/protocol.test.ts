import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { errorCodes, UpdaterError } from '../shared/errors.js';
import { createCommandServer, sendCommand, type Command } from '../shared/protocol.js';
import { tempDir } from './helpers/temp-dir.js';

const sockPath = () => path.join(tempDir('proto-'), 'w.sock');
const download: Command = { type: 'discard', seq: 1, reason: 'r' };

async function serve(server: net.Server): Promise<string> {
  const p = sockPath();
  await new Promise<void>((ok) => server.listen(p, ok));
  return p;
}

function rawExchange(p: string, text: string): Promise<string> {
  return new Promise((ok, fail) => {
    let out = '';
    const s = net.createConnection(p, () => s.write(text));
    s.setEncoding('utf8')
      .on('data', (c: string) => {
        out += c;
      })
      .on('end', () => ok(out))
      .on('error', fail);
  });
}

test('a command and its reply are validated at both ends', async () => {
  const seen: Command[] = [];
  const server = createCommandServer(
    async (c) => {
      seen.push(c);
      return { ok: true };
    },
    () => undefined,
  );
  const p = await serve(server);
  assert.deepEqual(await sendCommand(p, download), { ok: true });
  assert.deepEqual(seen, [download]);
  assert.deepEqual(JSON.parse(await rawExchange(p, '{"type":"download","seq":1}\n')), {
    ok: false,
    code: 'VALIDATION_ERROR',
    message: 'malformed command',
  });
  assert.deepEqual(JSON.parse(await rawExchange(p, 'not json\n')), {
    ok: false,
    code: 'VALIDATION_ERROR',
    message: 'command is not JSON',
  });
  assert.deepEqual(JSON.parse(await rawExchange(p, 'x'.repeat(70_000))), {
    ok: false,
    code: 'VALIDATION_ERROR',
    message: 'command too long',
  });
  server.close();
});

test('a failing handler answers with its code, or INTERNAL_ERROR for a bug', async () => {
  let fail: Error = new UpdaterError('OPERATION_IN_PROGRESS', 'busy');
  const errors: unknown[] = [];
  const server = createCommandServer(
    async () => {
      throw fail;
    },
    (e) => errors.push(e),
  );
  const p = await serve(server);
  assert.deepEqual(await sendCommand(p, download), { ok: false, code: 'OPERATION_IN_PROGRESS', message: 'busy' });
  fail = new TypeError('oops');
  assert.deepEqual(await sendCommand(p, download), { ok: false, code: 'INTERNAL_ERROR', message: 'command failed' });
  assert.equal(errors.length, 2);
  server.close();
});

test('an absent, silent or garbling worker is SERVICE_UNAVAILABLE', async () => {
  await assert.rejects(
    sendCommand(sockPath(), download),
    (e: unknown) => e instanceof UpdaterError && e.code === 'SERVICE_UNAVAILABLE' && /ENOENT/.test(e.message),
  );
  const silent = net.createServer(() => undefined);
  const p1 = await serve(silent);
  await assert.rejects(sendCommand(p1, download, { timeoutMs: 100 }), /no reply .* within 100 ms/);
  silent.close();
  const garbling = net.createServer((s) => s.end('{"ok":"maybe"}\n'));
  const p2 = await serve(garbling);
  await assert.rejects(sendCommand(p2, download), /malformed reply/);
  garbling.close();
  const closing = net.createServer((s) => s.end());
  const p3 = await serve(closing);
  await assert.rejects(sendCommand(p3, download), /closed without a reply/);
  closing.close();
});

test('a worker whose socket appears only later (a worker restarting) is waited for within the grace, and no longer', async () => {
  const p = sockPath();
  await assert.rejects(sendCommand(p, download, { connectGraceMs: 150, retryEveryMs: 10 }), /cannot reach .*: ENOENT/);
  const late = net.createServer((s) => s.end('{"ok":true}\n'));
  const waits: string[] = [];
  const answered = await sendCommand(p, download, {
    connectGraceMs: 30_000,
    retryEveryMs: 10,
    onWait: (why) => {
      // the socket appears only once an attempt has found none
      if (waits.push(why) === 1) late.listen(p);
    },
  });
  assert.deepEqual(answered, { ok: true });
  assert.match(waits[0], /cannot reach .*: ENOENT/);
  late.close();
});

test('every error code of the list is produced and asserted by some test', () => {
  const dir = path.dirname(fileURLToPath(import.meta.url)).replace(`${path.sep}dist${path.sep}`, path.sep);
  const sources = readdirSync(dir)
    .filter((f) => f.endsWith('.test.ts'))
    .map((f) => readFileSync(path.join(dir, f), 'utf8'))
    .join('\n');
  // each code must appear as a wire prefix ("CODE: ...") or a quoted code in some test's expectations
  const missing = errorCodes.filter((c) => !new RegExp(`(\\^${c}:|${c}: |'${c}')`).test(sources));
  assert.deepEqual(missing, []);
});
