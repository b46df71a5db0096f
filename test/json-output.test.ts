import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { distDir } from './helpers/services.js';

// Every line a service writes is JSON: node's own output (a warning, an uncaught exception's
// stack) goes through the process's logger instead of plain text on stderr.

const logModule = path.join(distDir, 'shared/log.js');
const run = (body: string) =>
  spawnSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `import { createLogger } from '${logModule}'; const log = createLogger('probe', 'info'); ${body}`,
    ],
    { encoding: 'utf8' },
  );

test('a warning and an uncaught exception are JSON lines on stdout; nothing goes to stderr; the exit status stays 1', () => {
  const r = run("process.emitWarning('careful'); setTimeout(() => { throw new Error('boom'); }, 10);");
  assert.equal(r.status, 1);
  assert.equal(r.stderr, '');
  const lines = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.deepEqual(
    lines.map((l) => [l.service, l.level, l.msg]),
    [
      ['probe', 40, 'node warning'],
      ['probe', 60, 'uncaught exception'],
    ],
  );
  assert.equal(lines[0].err, 'careful');
  assert.equal(lines[1].err.message, 'boom');
});

test('an unhandled rejection too', () => {
  const r = run("Promise.reject(new Error('lost'));");
  assert.equal(r.status, 1);
  assert.equal(r.stderr, '');
  assert.equal(JSON.parse(r.stdout.trim()).err.message, 'lost');
});
