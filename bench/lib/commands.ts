import { execFile, spawn } from 'node:child_process';
import { nowMs } from './clock.js';

/** Runs a command to its end and returns its wall time in ms; a non-zero exit is an error. */
export function timeCommand(file: string, args: string[], env?: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = nowMs();
    const child = spawn(file, args, { stdio: ['ignore', 'ignore', 'pipe'], env: env ?? process.env });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      stderr += c;
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      const ms = nowMs() - t0;
      if (code === 0) resolve(ms);
      else reject(new Error(`${file} ${args.join(' ')} exited ${code}: ${stderr.trim()}`));
    });
  });
}

export function output(file: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, (err, stdout) => (err ? reject(err) : resolve(String(stdout))));
  });
}

/** Fails early, with the fix, when a tool the benchmarks drive is missing. */
export async function requireTools(tools: string[]): Promise<void> {
  const missing: string[] = [];
  for (const t of tools) {
    await output('sh', ['-c', `command -v ${t}`]).catch(() => missing.push(t));
  }
  if (missing.length)
    throw new Error(`missing tools: ${missing.join(', ')} (make tools, or apt-get install curl systemd)`);
}

/**
 * What earlier steps left dirty written back (`sync`), untimed, before a timed run that writes
 * durably. On ext4 (data=ordered) a journal commit first writes the data of every file whose
 * blocks it allocates, so an install's fsync, or a reference's `sync`, would otherwise also pay
 * for the package the bench wrote just before it, or for the other side's deletions.
 */
export async function writeBack(): Promise<void> {
  await timeCommand('sync', []);
}
