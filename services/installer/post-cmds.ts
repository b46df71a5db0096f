import { spawn } from 'node:child_process';
import { UpdaterError } from '../../shared/errors.js';

const KEEP = 2000; // bytes of output kept for the error text

/** Runs one post_cmds entry with /bin/sh in `cwd`; its whole process group dies at the deadline. */
export function runPostCmd(cmd: string, cwd: string, timeoutMs: number, env: Record<string, string>): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', cmd], {
      cwd,
      env: { ...process.env, ...env },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      if (stdout.length < KEEP) stdout += c;
    });
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      if (stderr.length < KEEP) stderr += c;
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new UpdaterError('POST_CMD_FAILED', `'${cmd}' could not run: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) return reject(new UpdaterError('POST_CMD_TIMEOUT', `'${cmd}' timed out after ${timeoutMs} ms`));
      if (code === 0) return resolve();
      const tail = [
        stderr.trim() && ` — ${stderr.trim().slice(0, KEEP)}`,
        stdout.trim() && ` | stdout: ${stdout.trim().slice(0, KEEP)}`,
      ].join('');
      reject(new UpdaterError('POST_CMD_FAILED', `'${cmd}' exited ${code ?? signal}${tail}`));
    });
  });
}
