import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { distDir } from './services.js';
import { tempDir } from './temp-dir.js';

const repo = path.resolve(distDir, '..');
const script = path.join(repo, 'test/system/vm.sh');

/** VM tests run wherever we are root; there, a VM that cannot be prepared is an error. */
export function vmAvailable(): true | string {
  if (process.getuid?.() !== 0) return 'needs root for QEMU and its disk images';
  const r = spawnSync('bash', [script, 'prepare'], { encoding: 'utf8', timeout: 900_000 });
  if (r.status !== 0)
    throw new Error(
      `the QEMU VM cannot be prepared (status ${r.status}${r.error ? `, ${r.error.message}` : ''}): ${r.stderr}`,
    );
  return true;
}

export type VmResult = Record<string, unknown>;

/**
 * One boot of the VM (test/system/vm.sh run): `entry` runs as root at boot with the payload on
 * /mnt/payload (`files` are [source, path in the payload]). Resolves with the `TOPE-RESULT {json}`
 * lines it printed; rejects when the VM did not end cleanly within `timeoutS` (qemu is killed),
 * with the end of its console in the error (the console's directory goes when the test process
 * exits).
 */
export function runVm(entry: string, files: Array<[string, string]>, timeoutS = 300): Promise<VmResult[]> {
  const out = tempDir('tope-vm-out-');
  const args = [script, 'run', out, entry, ...files.map(([src, dst]) => `${src}:${dst}`)];
  return new Promise((resolve, reject) => {
    const child = spawn('bash', args, {
      env: { ...process.env, TOPE_VM_TIMEOUT: String(timeoutS), MAKEFLAGS: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (status) => {
      if (status !== 0) {
        reject(
          new Error(
            `the VM run failed (status ${status}):\n${stderr}\n${stdout}\n--- the end of its console ---\n${consoleEnd(out)}`,
          ),
        );
        return;
      }
      resolve(
        stdout
          .split('\n')
          .filter((l) => l.startsWith('TOPE-RESULT '))
          .map((l) => JSON.parse(l.slice('TOPE-RESULT '.length)) as VmResult),
      );
    });
  });
}

/** The console's last lines: the end of a boot that failed, and what the VM said last. */
function consoleEnd(out: string): string {
  try {
    return readFileSync(path.join(out, 'console.log'), 'utf8').split('\n').slice(-60).join('\n');
  } catch (e) {
    return `(no console: ${(e as Error).message})`;
  }
}
