import { readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { createHash } from 'node:crypto';

// CPU time (user + system) of a process, of this one's hashing, and of shell pipelines: the
// fetcher's cost per byte against the work no design avoids (MD5 and SHA-256 of every byte).

/** User + system CPU time a live process has used so far, in ms (from /proc/PID/stat). */
export function processCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticksPerSecond = 100; // USER_HZ, 100 on every Linux ABI
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond;
}

/** MD5 and SHA-256 of a file's first `bytes` bytes on this thread, as the fetcher computes them: CPU and wall ms. */
export async function hashCost(file: string, bytes = Infinity): Promise<{ cpuMs: number; wallMs: number }> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const md5 = createHash('md5');
  const sha = createHash('sha256');
  const end = Number.isFinite(bytes) ? bytes - 1 : undefined;
  for await (const c of createReadStream(file, { highWaterMark: 1024 * 1024, end }) as AsyncIterable<Buffer>) {
    md5.update(c);
    sha.update(c);
  }
  md5.digest();
  sha.digest();
  const cpu = process.cpuUsage(cpu0);
  return { cpuMs: (cpu.user + cpu.system) / 1000, wallMs: performance.now() - t0 };
}

/** The user + system CPU time, in ms, of a bash command line and everything it starts. */
export function shellCpuMs(script: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', `TIMEFORMAT='%3U %3S'; time ( ${script} ) >/dev/null`, 'bash', ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('error', reject);
    child.on('exit', (code) => {
      const m = /([\d.]+) ([\d.]+)\s*$/.exec(stderr);
      if (code !== 0 || !m) return reject(new Error(`bash -c ${script} exited ${code}: ${stderr.trim()}`));
      resolve((Number(m[1]) + Number(m[2])) * 1000);
    });
  });
}
