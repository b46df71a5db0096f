import { appendFileSync } from 'node:fs';
import path from 'node:path';

// Named crash points for the crash campaigns (test/crash-*.test.ts). In production neither
// variable is set and failpoint() is an empty function. The test environment arms one:
//   TOPE_FAILPOINT=<name>[#<n>]  SIGKILL this process at the n-th pass (default 1) through <name>
//   TOPE_FAILPOINT_TRACE=<file>  append "<service> <name>" at each pass (the campaigns' census)
//   TOPE_FAILPOINT_STOP=<name>[#<n>]  SIGSTOP this process at the n-th pass through <name>: a test
//                                changes something under it (a file it reads), then sends SIGCONT
// SIGKILL, not an exception: nothing after the point runs, no handler, no flush, as in a power
// cut that keeps the page cache (the system tests cut power for real).

const armedSpec = (spec: string | undefined) => (spec ? /^([\w.-]+)(?:#(\d+))?$/.exec(spec) : null);
const armed = armedSpec(process.env.TOPE_FAILPOINT);
const armedHit = Number(armed?.[2] ?? 1);
const stopAt = armedSpec(process.env.TOPE_FAILPOINT_STOP);
const stopHit = Number(stopAt?.[2] ?? 1);
const trace = process.env.TOPE_FAILPOINT_TRACE;
const entry = process.argv[1] ?? '';
// the service a pass is counted for: dist/bundle/<service>.js as built and shipped, or
// dist/services/<service>/main.js as tsc leaves it
const service =
  path.basename(entry) === 'main.js' ? path.basename(path.dirname(entry)) : path.basename(entry, path.extname(entry));
const passes = new Map<string, number>();

function pass(name: string): void {
  const n = (passes.get(name) ?? 0) + 1;
  passes.set(name, n);
  if (trace) appendFileSync(trace, `${service} ${name}\n`);
  if (armed && armed[1] === name && n === armedHit) process.kill(process.pid, 'SIGKILL');
  if (stopAt && stopAt[1] === name && n === stopHit) process.kill(process.pid, 'SIGSTOP');
}

export const failpoint: (name: string) => void = armed || trace || stopAt ? pass : () => undefined;
