import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { mainOf, Service, unitNodeOptions } from './services.js';
import { waitFor } from './wait.js';

// A service run under strace, to see in what order it removes files and flushes directories:
// no SIGKILL test can fail on a missing fsync (the page cache survives a killed process), and a
// power cut that falls in the window is a matter of luck (RELIABILITY.md, finding 8).

/** The system calls of a removal (`rm -r` is unlink and rmdir, or unlinkat) and of its flush. */
const TRACED = ['rmdir', 'unlink', 'unlinkat', 'fsync', 'fdatasync'];

/** Why a service cannot be traced here, or null when it can. */
export function tracingMissing(): string | null {
  for (const command of ['strace', 'setpriv']) {
    if (spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status !== 0)
      return `${command} is not installed (scripts/ensure-tools.sh installs it when run as root)`;
  }
  return null;
}

export interface TraceEvent {
  kind: 'removed' | 'flushed';
  /** The removed path as the process named it, or the path of the flushed file or directory (strace -y). */
  path: string;
  /** Its line in the trace file (1-based), for the report. */
  line: number;
}

/**
 * A service's process under `strace -f` (its threads: libuv runs the file calls on its pool),
 * writing each traced call to `traceFile`. Neither may outlive the test: both run
 * with a parent-death SIGKILL (setpriv), strace when the test process dies, the service when
 * strace dies; `stop` ends them by their pids, with a deadline.
 */
export class TracedService {
  readonly service: Service;

  constructor(
    readonly name: string,
    env: Record<string, string>,
    readonly traceFile: string,
  ) {
    const nodeOptions = unitNodeOptions(name);
    // every result is printed and judged here: with `-e status=successful` strace printed a call
    // split by another thread's as a bare `) = 0` line, which names no call
    const strace = [
      'strace',
      '-f',
      '-qq',
      '-y',
      '--seccomp-bpf',
      '-e',
      `trace=${TRACED.join(',')}`,
      '-e',
      'signal=none',
    ];
    this.service = new Service(
      name,
      { ...(nodeOptions ? { NODE_OPTIONS: nodeOptions } : {}), ...env },
      {
        file: 'setpriv',
        args: [
          ...['--pdeathsig', 'KILL', ...strace, '-o', traceFile, '--'],
          ...['setpriv', '--pdeathsig', 'KILL', process.execPath, mainOf(name)],
        ],
      },
    );
  }

  /** Resolves once the service says it is ready; else throws with what strace or the service said. */
  async ready(timeoutMs = 30_000): Promise<void> {
    try {
      await this.service.waitLog(`${this.name} ready`, timeoutMs);
    } catch (e) {
      throw new Error(`${(e as Error).message}; stderr: ${this.service.stderr.slice(-500)}`);
    }
  }

  /** The traced process: strace's child (setpriv became strace, its child setpriv became the service). */
  private tracee(): number | null {
    const strace = this.service.child.pid;
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      let stat: string;
      try {
        stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      } catch {
        continue; // gone meanwhile
      }
      const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (parent === strace) return Number(entry);
    }
    return null;
  }

  /**
   * SIGTERM to the service itself (a signal to strace would make it detach and stop tracing):
   * a worker ends once its work is over, then strace ends with it. Past the deadline both are
   * SIGKILLed and this throws.
   */
  async stop(timeoutMs = 30_000): Promise<void> {
    if (!this.running()) return;
    const tracee = await waitFor('the traced process', () => this.tracee(), 5_000).catch(() => null);
    if (tracee) process.kill(tracee, 'SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const ended = await Promise.race([
      this.service.exited.then(() => true),
      new Promise<false>((done) => (timer = setTimeout(() => done(false), timeoutMs))),
    ]);
    clearTimeout(timer);
    if (ended) return;
    await this.kill();
    throw new Error(`${this.name} under strace did not end within ${timeoutMs} ms of its SIGTERM`);
  }

  /** For a test that failed half-way: the service, then strace, SIGKILLed by their pids. */
  async kill(): Promise<void> {
    if (!this.running()) return;
    const tracee = this.tracee();
    if (tracee) process.kill(tracee, 'SIGKILL');
    await this.service.kill('SIGKILL');
  }

  private running(): boolean {
    return this.service.child.exitCode === null && this.service.child.signalCode === null;
  }

  /** undurableRemovals of `tree` in this run's trace, each problem naming the trace file. */
  undurableRemovals(tree: string, expectedRemovals = 1): string[] {
    return undurableRemovals(this.events(), tree, expectedRemovals).map(
      (p) => `${path.basename(this.traceFile)}: ${p}`,
    );
  }

  /** The removals and flushes in the trace, in its order. Read once strace has ended (it buffers). */
  events(): TraceEvent[] {
    return parseTrace(readFileSync(this.traceFile, 'utf8'));
  }
}

const quoted = '"((?:[^"\\\\]|\\\\.)*)"';
const complete = /^(\d+)\s+(\w+)\((.*)\)\s+= (-?\d+)/;
const unfinished = /^(\d+)\s+(\w+)\((.*) <unfinished \.\.\.>$/;
const resumed = /^(\d+)\s+<\.\.\. (\w+) resumed>.*\)\s+= (-?\d+)/;

/**
 * strace -f -y lines: `1234 rmdir("/a/b") = 0`, `1234 unlinkat(5</a>, "b", AT_REMOVEDIR) = 0`,
 * `1234 fsync(21</a>) = 0`, or a call split in two by another thread's (`<unfinished ...>`,
 * `<... fsync resumed>`), placed where it began. Failed calls are left out. A line of another
 * shape throws: a call misread would read as a missing fsync.
 */
export function parseTrace(text: string): TraceEvent[] {
  const events: TraceEvent[] = [];
  const pending = new Map<string, { call: string; args: string; line: number }>();
  text.split('\n').forEach((raw, index) => {
    const line = index + 1;
    let call: { call: string; args: string; line: number; result: number } | null = null;
    let m: RegExpExecArray | null;
    if ((m = complete.exec(raw))) call = { call: m[2], args: m[3], line, result: Number(m[4]) };
    else if ((m = unfinished.exec(raw))) pending.set(m[1], { call: m[2], args: m[3], line });
    else if ((m = resumed.exec(raw))) {
      const begun = pending.get(m[1]);
      if (begun?.call !== m[2]) throw new Error(`strace line ${line} resumes no call of its thread: ${raw}`);
      pending.delete(m[1]);
      call = { ...begun, result: Number(m[3]) };
    } else if (raw.trim() && !/^\d+\s+\+\+\+ /.test(raw)) throw new Error(`strace line ${line} not understood: ${raw}`);
    if (!call || call.result !== 0) return;
    const event = eventOf(call.call, call.args, call.line);
    if (!event) throw new Error(`strace line ${call.line}: no path in ${call.call}(${call.args})`);
    events.push(event);
  });
  return events.sort((a, b) => a.line - b.line);
}

function eventOf(call: string, args: string, line: number): TraceEvent | null {
  let m: RegExpExecArray | null;
  switch (call) {
    case 'rmdir':
    case 'unlink':
      m = new RegExp(`^${quoted}`).exec(args);
      return m ? { kind: 'removed', path: path.resolve(unescape(m[1])), line } : null;
    case 'unlinkat':
      m = new RegExp(`^(?:AT_FDCWD|\\d+<([^>]*)>), ${quoted}`).exec(args);
      return m ? { kind: 'removed', path: path.resolve(m[1] ?? '.', unescape(m[2])), line } : null;
    case 'fsync':
    case 'fdatasync':
      m = /^\d+<([^>]*)>/.exec(args);
      return m ? { kind: 'flushed', path: m[1], line } : null;
    default:
      return null;
  }
}

const unescape = (s: string) => s.replace(/\\(["\\])/g, '$1');

/**
 * What is wrong with the removals of `tree` (a file or directory, named as the service names
 * it) in `events`: each removal of the tree itself (the last call of an `rm -r`) must be made
 * durable at once, i.e. the next fsync the service makes after it is of the directory that held
 * it (and comes before the tree is removed again). A later fsync of that directory for another
 * reason is not enough: until it comes, which can be minutes later, a power cut brings the tree
 * back (finding 8 was such a window, after a successful install). Also wrong: the trace does
 * not show the tree removed `expectedRemovals` times.
 */
export function undurableRemovals(events: TraceEvent[], tree: string, expectedRemovals = 1): string[] {
  const parent = realpathSync(path.dirname(tree));
  const names = new Set([tree, path.join(parent, path.basename(tree))]);
  const removals = events.filter((e) => e.kind === 'removed' && names.has(e.path));
  if (removals.length !== expectedRemovals)
    return [`${tree}: removed ${removals.length} times in the trace, expected ${expectedRemovals}`];
  return removals.flatMap((removal, i) => {
    const next = events.find((e) => e.kind === 'flushed' && e.line > removal.line);
    const again = removals[i + 1]?.line ?? Infinity;
    if (next && next.path === parent && next.line < again) return [];
    const instead = next ? `the next fsync was of ${next.path} (line ${next.line})` : 'no fsync followed';
    return [`${tree}: removed (trace line ${removal.line}), not followed by an fsync of ${parent}: ${instead}`];
  });
}
