// Runs in place of a unit's ExecStart (a drop-in keeps every other directive) and tries to go
// beyond the unit's cgroup limits; the same probe outside the unit is the baseline.
//
//   limits-probe.js memory BYTES   allocates BYTES off the JS heap (Buffers, so V8's own heap
//                                  limit plays no part) and touches every page; prints
//                                  `allocated N` after each chunk and `done N` at the end
//   limits-probe.js tasks COUNT    spawns COUNT sleeping processes, one at a time, until one
//                                  fails; prints one JSON object: how many ran, the error met,
//                                  and the most tasks its cgroup held (pids.current)
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeSync } from 'node:fs';
import { stat } from 'node:fs/promises';

const [mode, arg] = process.argv.slice(2);
const target = Number(arg);
if (!Number.isSafeInteger(target) || target <= 0)
  throw new Error(`usage: limits-probe.js memory BYTES | tasks COUNT (got ${mode} ${arg})`);

// stdout is a file or a pipe: write synchronously, so that the last line before a SIGKILL is out
const say = (line: string) => writeSync(1, `${line}\n`);

function memory(): void {
  const chunk = 8 << 20;
  const held: Buffer[] = [];
  let total = 0;
  while (total < target) {
    // allocUnsafe: no calloc whose fresh mmap pages the kernel would leave untouched; fill writes each page
    const b = Buffer.allocUnsafe(Math.min(chunk, target - total)).fill(0x5a);
    held.push(b);
    total += b.length;
    say(`allocated ${total}`);
  }
  say(`done ${total}`);
}

function cgroupFile(name: string): string {
  const rel = /^0::(.*)$/m.exec(readFileSync('/proc/self/cgroup', 'utf8'))?.[1] ?? '';
  return `/sys/fs/cgroup${rel}/${name}`;
}

async function tasks(): Promise<void> {
  // libuv's thread pool starts on first use: start it now, not when the pids limit is reached
  await stat('/');
  const pidsCurrent = () => Number(readFileSync(cgroupFile('pids.current'), 'utf8'));
  const children: ChildProcess[] = [];
  let error: string | null = null;
  let peak = pidsCurrent();
  while (children.length < target) {
    const child = spawn('/bin/sleep', ['300'], { stdio: 'ignore' });
    const failed = await new Promise<NodeJS.ErrnoException | null>((resolve) => {
      child.once('spawn', () => resolve(null));
      child.once('error', resolve);
    });
    if (failed) {
      error = failed.code ?? String(failed);
      break;
    }
    children.push(child);
    peak = Math.max(peak, pidsCurrent());
  }
  const spawned = children.length;
  await Promise.all(
    children.map(
      (c) =>
        new Promise((resolve) => {
          c.once('exit', resolve);
          c.kill('SIGKILL');
        }),
    ),
  );
  say(JSON.stringify({ spawned, error, peak, pidsMax: readFileSync(cgroupFile('pids.max'), 'utf8').trim() }));
}

if (mode === 'memory') memory();
else if (mode === 'tasks') await tasks();
else throw new Error(`unknown probe ${mode}`);
