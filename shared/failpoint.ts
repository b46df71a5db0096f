import { appendFileSync } from 'node:fs';
import path from 'node:path';

// Named crash points for the crash campaigns (test/crash-*.test.ts). In production neither
// variable is set and failpoint() is an empty function. The test environment arms one:
//   TOPE_FAILPOINT=<name>[#<n>]  SIGKILL this process at the n-th pass (default 1) through <name>
//   TOPE_FAILPOINT_TRACE=<file>  append "<service> <name>" at each pass (the campaigns' census)
// SIGKILL, not an exception: nothing after the point runs, no handler, no flush, as in a power
// cut that keeps the page cache (the system tests cut power for real).

const armed = process.env.TOPE_FAILPOINT ? /^([\w.-]+)(?:#(\d+))?$/.exec(process.env.TOPE_FAILPOINT) : null;
const armedHit = Number(armed?.[2] ?? 1);
const trace = process.env.TOPE_FAILPOINT_TRACE;
const service = path.basename(path.dirname(process.argv[1] ?? ''));
const passes = new Map<string, number>();

function pass(name: string): void {
  const n = (passes.get(name) ?? 0) + 1;
  passes.set(name, n);
  if (trace) appendFileSync(trace, `${service} ${name}\n`);
  if (armed && armed[1] === name && n === armedHit) process.kill(process.pid, 'SIGKILL');
}

export const failpoint: (name: string) => void = armed || trace ? pass : () => undefined;
