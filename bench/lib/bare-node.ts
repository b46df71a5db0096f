import { spawn } from 'node:child_process';
import { sleep } from './clock.js';
import { timeCommand } from './commands.js';
import { readMemory } from './proc.js';

// What Node itself costs, measured in the same run as the services: the floor the services'
// memory and start-up figures are set against.

/** Resident set of an idle `node` process doing nothing (ms after its start). */
export async function bareNodeRss(settleMs = 500): Promise<number> {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1e9)'], { stdio: 'ignore' });
  await sleep(settleMs);
  const rss = readMemory(child.pid!)?.rss ?? NaN;
  child.kill('SIGKILL');
  return rss;
}

/** Wall time of `node -e 0`: start, run nothing, exit. */
export const bareNodeStartMs = (): Promise<number> => timeCommand(process.execPath, ['-e', '0']);
