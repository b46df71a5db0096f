import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { tempDir } from './helpers/temp-dir.js';

// bench/peers/reap.py measures a peer with everything it starts, orphans included: the figures of
// the side-by-side rows against SWUpdate and Mender stand on it.

const reap = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench/peers/reap.py');
const python = spawnSync('python3', ['--version']).status === 0;

function run(args: string[]) {
  const r = spawnSync('python3', [reap, ...args], { encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr, out: r.stdout ? JSON.parse(r.stdout) : null };
}

test(
  'reap.py counts what an orphaned descendant writes and burns after the command has exited',
  { skip: !python && 'no python3' },
  () => {
    const dir = tempDir('tope-reap-');
    const file = path.join(dir, 'late');
    // the command exits at once; its grandchild, orphaned, hashes and writes 8 MiB after a second
    const r = run([
      '--',
      'sh',
      '-c',
      '(sleep 1; head -c 8388608 /dev/urandom | tee "$1" | sha256sum >/dev/null) & exit 0',
      'sh',
      file,
    ]);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(r.out.write_bytes >= 8 * 1024 * 1024, `write_bytes ${r.out.write_bytes}`);
    assert.ok(r.out.cpu_s > 0, `cpu_s ${r.out.cpu_s}`);
    // the wall time is the command's own; the orphan ran on after it
    assert.ok(r.out.wall_s < 1, `wall_s ${r.out.wall_s}`);
    assert.ok(r.out.maxrss_kib > 0 && r.out.peak_sum_kib >= r.out.maxrss_kib);
  },
);

test('reap.py marks when the command says a line, and keeps its exit status', { skip: !python && 'no python3' }, () => {
  const r = run(['--mark', 'install done', '--', 'sh', '-c', 'echo "[INFO] install done"; sleep 0.5; exit 3']);
  assert.equal(r.status, 3);
  assert.ok(r.out.mark_s < r.out.wall_s - 0.3, `mark_s ${r.out.mark_s}, wall_s ${r.out.wall_s}`);
  assert.ok(r.out.wall_s >= 0.5);
  assert.equal(run(['--', 'true']).out.mark_s, null);
});
