import path from 'node:path';
import { DurableJson } from '../../shared/durable-store.js';
import type { Stage } from '../../shared/status.js';
import {
  FETCHER_RECORD,
  fetcherRecordSchema,
  INSTALLER_RECORD,
  installerRecordSchema,
  PACKAGES_DIR,
  type FetcherRecord,
  type InstallerRecord,
} from '../../shared/worker-records.js';
import { call } from './api.js';
import { freePort, makeDevice, startServices, type Launcher, type Service } from './services.js';
import { waitFor } from './wait.js';

/** A device under test: temp directories, the gateway's address, and its workers' records. */
export class TestDevice {
  readonly root: string;
  readonly env: Record<string, string>;
  base = '';
  running: Service[] = [];
  /** How its services start: this Node unless set (the arm64 test runs them under QEMU). */
  launcher: Launcher | undefined = undefined;
  /** Its services at their units' Nice= (the benchmarks: as deployed). */
  niceAsUnits = false;

  constructor(extra: Record<string, string> = {}) {
    ({ root: this.root, env: this.env } = makeDevice(extra));
  }

  get fetcherStore() {
    return new DurableJson(path.join(this.env.TOPE_FETCHER_STATE_DIR, FETCHER_RECORD), fetcherRecordSchema);
  }

  get installerStore() {
    return new DurableJson(path.join(this.env.TOPE_INSTALLER_STATE_DIR, INSTALLER_RECORD), installerRecordSchema);
  }

  get packagesDir(): string {
    return path.join(this.env.TOPE_FETCHER_STATE_DIR, PACKAGES_DIR);
  }

  seedFetcher(r: FetcherRecord) {
    return this.fetcherStore.write(r);
  }

  seedInstaller(r: InstallerRecord) {
    return this.installerStore.write(r);
  }

  async start(...names: string[]): Promise<Service[]> {
    if (names.includes('api-gateway') && !this.base) {
      const port = await freePort();
      this.env.TOPE_LISTEN_PORT = String(port);
      this.base = `http://127.0.0.1:${port}`;
    }
    const started = await startServices(this.env, names, this.launcher, { nice: this.niceAsUnits });
    this.running.push(...started);
    return started;
  }

  /** Kills one of its services (SIGKILL: a crash) and forgets it, so that `start` may run it again. */
  async kill(service: Service, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await service.kill(signal);
    this.running = this.running.filter((s) => s !== service);
  }

  async stop(): Promise<void> {
    await Promise.all(this.running.map((s) => s.kill('SIGTERM')));
    this.running = [];
  }

  progress() {
    return call(this.base, 'GET', '/api/v1.0/progress');
  }

  async waitStage(stage: Stage, timeoutMs = 15_000) {
    return waitFor(
      `stage ${stage}`,
      async () => {
        const p = await this.progress();
        return p.body.data.stage === stage ? p.body : null;
      },
      timeoutMs,
    );
  }
}
