import { execFile } from 'node:child_process';
import { closeSync, openSync, readSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { distDir, type Launcher } from './services.js';

// The services on arm64 code: the pinned Node's arm64 build run by QEMU's user-mode emulator,
// invoked explicitly (no binfmt_misc), with the arm64 C and C++ libraries from a sysroot that
// scripts/arm64-runtime.sh fetches once. Start-up under emulation takes seconds, hence the
// launcher's long wait for "ready".

const runtimeScript = path.join(distDir, '..', 'scripts', 'arm64-runtime.sh');

export interface Arm64Runtime {
  qemu: string;
  node: string;
  sysroot: string;
}

/** The emulator, the arm64 Node and the sysroot, or why they cannot be had on this machine. */
export async function findArm64Runtime(): Promise<Arm64Runtime | { missing: string }> {
  try {
    const { stdout } = await promisify(execFile)('bash', [runtimeScript], { timeout: 10 * 60_000 });
    const found = Object.fromEntries(
      stdout
        .trim()
        .split('\n')
        .map((l) => l.split(/=(.*)/s, 2)),
    ) as Record<string, string>;
    if (!found.qemu || !found.node || !found.sysroot) return { missing: `arm64-runtime.sh printed ${stdout}` };
    return { qemu: found.qemu, node: found.node, sysroot: found.sysroot };
  } catch (e) {
    const stderr = (e as { stderr?: string }).stderr?.trim();
    return { missing: stderr || (e as Error).message };
  }
}

/** Starts each service as `qemu-aarch64-static -L <sysroot> <arm64 node> <main.js>`. */
export function arm64Launcher(runtime: Arm64Runtime): Launcher {
  return {
    command: (main) => ({ file: runtime.qemu, args: ['-L', runtime.sysroot, runtime.node, main] }),
    readyTimeoutMs: 180_000,
  };
}

/** The ELF machine of a file (e_machine: 62 x86-64, 183 AArch64, 40 ARM). */
export function elfMachine(file: string): number {
  const header = Buffer.alloc(20);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, header, 0, header.length, 0);
  } finally {
    closeSync(fd);
  }
  if (header.toString('latin1', 1, 4) !== 'ELF') throw new Error(`${file} is not an ELF file`);
  return header.readUInt16LE(18);
}

export const ELF_AARCH64 = 183;
