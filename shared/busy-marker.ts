import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fsyncDir } from './durable-store.js';
import { BUSY_MARKER } from './state-names.js';

export { BUSY_MARKER };

/**
 * A file that exists while a worker has work to finish. systemd's path unit starts the worker
 * at boot when it is there, so a download or an install resumes with no API call.
 */
export class BusyMarker {
  private state: boolean | null = null;

  constructor(private readonly dir: string) {}

  /** Whether the marker is there: at start, it means the last run stopped before its work was over. */
  async present(): Promise<boolean> {
    return fsp.stat(path.join(this.dir, BUSY_MARKER)).then(
      () => true,
      () => false,
    );
  }

  async set(busy: boolean): Promise<void> {
    if (busy === this.state) return;
    const file = path.join(this.dir, BUSY_MARKER);
    if (busy) await fsp.writeFile(file, '');
    else await fsp.rm(file, { force: true });
    await fsyncDir(this.dir);
    this.state = busy;
  }
}
