import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';

/** One line about the machine the figures came from: absolute times only mean something next to it. */
export function describeMachine(date = new Date()): string {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown CPU';
  const ramGiB = (os.totalmem() / 1024 ** 3).toFixed(1);
  const load = os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  return (
    `${model}, ${os.cpus().length} cores, ${ramGiB} GiB RAM, Linux ${os.release()}, Node ${process.version}, ` +
    `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC (load average at start: ${load})`
  );
}

/** Which code the figures are of: the commit, and whether the tree had changes beside it. */
export function describeCommit(repo: string): string {
  try {
    const git = (...args: string[]) =>
      execFileSync('git', ['-C', repo, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return `commit ${git('rev-parse', '--short', 'HEAD')}${git('status', '--porcelain', '--untracked-files=no') ? ' with uncommitted changes' : ''}`;
  } catch {
    return 'no git commit (not a checkout)';
  }
}
