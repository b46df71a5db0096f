import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Launcher } from '../../test/helpers/services.js';
import type { OriginProcess } from '../origin/origin-process.js';
import { BenchDevice, loggedAt } from './bench-device.js';
import { sleep } from './clock.js';
import { timeCommand } from './commands.js';
import { outcome, requestDownload, requestUpdate } from './downloads.js';
import { UNIT_PREFIX, type PackageFile } from './packages.js';
import { readMemory, RssSampler } from './proc.js';

// One whole update of a fresh device as device-api drives it (POST /download, then POST /update
// as soon as /progress says toInstall), timed from the service's own log lines, with every
// process's memory; and curl's time for the same file, the reference of every download row.

export const PROCESSES = ['api-gateway', 'fetcher', 'installer'] as const;
export type Proc = (typeof PROCESSES)[number];

export interface UpdateRun {
  /** POST /download → `package verified`. */
  downloadMs: number;
  /** POST /update → `install succeeded`. */
  installMs: number;
  /** POST /download → `install succeeded`: what the printer's owner waits. */
  endToEndMs: number;
  peak: Record<Proc, number>;
  idleAfter: Record<Proc, number>;
}

/** curl's time for the same file, written to the same file system, no hashing. */
export async function curlMs(scratch: string, origin: OriginProcess, pkg: PackageFile): Promise<number> {
  // a name per call: a capped run fetches with curl while the device downloads beside it
  const out = path.join(scratch, `curl-${process.hrtime.bigint()}.out`);
  const ms = await timeCommand('curl', ['-sS', '--fail', '-o', out, origin.url(path.basename(pkg.file))]);
  await fsp.rm(out, { force: true });
  return ms;
}

/**
 * POST /download → verified, then POST /update → success, with every process's peak RSS; the
 * services started by `launcher` when given (the arm64 row: under QEMU), else by this Node.
 */
export async function updateRun(origin: OriginProcess, pkg: PackageFile, launcher?: Launcher): Promise<UpdateRun> {
  const d = new BenchDevice();
  d.launcher = launcher;
  try {
    await d.start('fetcher', 'installer', 'api-gateway');
    await d.unitsRunning(1, UNIT_PREFIX);
    const pids = Object.fromEntries(PROCESSES.map((p) => [p, d.pid(p)])) as Record<Proc, number>;
    const sampler = new RssSampler(pids);
    const fetcher = d.service('fetcher');
    const installer = d.service('installer');
    const version = '2.0.0';
    const t0 = Date.now();
    await requestDownload(d.base, origin.url(path.basename(pkg.file)), pkg, version);
    const verified = await outcome(fetcher, 0, 'package verified', 'download failed', 60 * 60_000);
    const downloadMs = loggedAt(verified) - t0;
    await d.waitStage('toInstall', 60_000); // the record follows the log line
    const from = installer.lines.length;
    const t1 = Date.now();
    await requestUpdate(d.base, version);
    const succeeded = loggedAt(await outcome(installer, from, 'install succeeded', 'install failed', 30 * 60_000));
    await d.waitStage('success', 60_000);
    const peak = sampler.stop() as Record<Proc, number>;
    await sleep(1000); // settled: what each keeps while nothing happens
    const idleAfter = Object.fromEntries(PROCESSES.map((p) => [p, readMemory(pids[p])?.rss ?? NaN])) as Record<
      Proc,
      number
    >;
    return { downloadMs, installMs: succeeded - t1, endToEndMs: succeeded - t0, peak, idleAfter };
  } finally {
    await d.dispose();
  }
}

export const rateOf = (bytes: number, ms: number) => bytes / (ms / 1000);
