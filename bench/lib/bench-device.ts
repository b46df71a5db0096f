import { mkdirSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { InstallDevice } from '../../test/helpers/install-device.js';
import type { Service } from '../../test/helpers/services.js';

/** From dist/bench/lib back to the source tree, where the shell stand-in lives. */
export const standInSystemctl = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../../bench/fixtures/systemctl-stand-in.sh',
);

/**
 * A device in a temp dir with production-like settings (info logs, default timeouts; started
 * directly, its services stay up) and the fast systemctl stand-in. `dispose` stops its services
 * and deletes it.
 */
export class BenchDevice extends InstallDevice {
  readonly standInDir: string;

  constructor(extra: Record<string, string> = {}) {
    super({
      TOPE_LOG_LEVEL: 'info',
      TOPE_HTTP_TIMEOUT_MS: '30000',
      TOPE_RETRY_BASE_MS: '1000',
      // probation is a deliberate wait, not work: it would only add its own length to each install
      TOPE_PROBATION_MS: '0',
      TOPE_UNIT_START_TIMEOUT_MS: '30000',
      TOPE_UNIT_STOP_TIMEOUT_MS: '10000',
      ...extra,
    });
    this.standInDir = path.join(this.root, 'stand-in');
    mkdirSync(this.standInDir);
    Object.assign(this.env, { TOPE_SYSTEMCTL: standInSystemctl, STANDIN_SYSTEMCTL_DIR: this.standInDir });
    // as systemd runs them: the fetcher at its unit's Nice=10, below the gateway that answers /progress
    this.niceAsUnits = true;
  }

  service(name: string): Service {
    const s = this.running.find((r) => r.lines.some((l) => l.msg === `${name} ready`));
    if (!s) throw new Error(`${name} is not running`);
    return s;
  }

  pid(name: string): number {
    return this.service(name).child.pid!;
  }

  /**
   * Where a reference copy goes (`cp -a` of a tree, against an install of it): beside the versions
   * directory, in the device's own tree. A directory elsewhere on the same file system can sit in
   * another part of it: on this machine a file made under /tmp took ~0.6 ms and one under /root
   * ~0.04 ms, so a reference in the bench's scratch directory measured where it landed.
   */
  referenceCopyDir(name: string): string {
    return path.join(path.dirname(this.versionsDir), `.reference-${name}`);
  }

  /** Units the package controls, running before the install as they would be on a printer. */
  async unitsRunning(count: number, prefix: string): Promise<void> {
    for (let i = 0; i < count; i++) await fsp.writeFile(path.join(this.standInDir, `${prefix}${i}.service.active`), '');
  }

  /** The stand-in's calls: [ns timestamp, command, unit]. */
  async standInCalls(): Promise<Array<{ ns: bigint; cmd: string; unit: string }>> {
    const text = await fsp.readFile(path.join(this.standInDir, 'calls.log'), 'utf8').catch(() => '');
    return text
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const [ns, cmd, unit] = l.split(' ');
        return { ns: BigInt(ns), cmd, unit };
      });
  }

  async dispose(): Promise<void> {
    await this.stop();
    await fsp.rm(this.root, { recursive: true, force: true });
  }
}

/** The wall-clock time (ms since the epoch) pino stamped on a log line. */
export const loggedAt = (line: Record<string, unknown>): number => Number(line.time);
