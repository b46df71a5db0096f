import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fsyncDir, fsyncFile } from '../../shared/durable-store.js';
import { failpoint } from '../../shared/failpoint.js';
import type { BackupEntry } from './journal.js';
import { partialName } from '../../shared/package-archive.js';

/**
 * The in-place files an install replaces (outside the versions tree, so no snapshot keeps them):
 * each is copied aside before it is replaced, and restoring them is part of every undo and
 * rollback. The journal lists the entries; the copies live in `dir` until the install is over.
 */
export class Backups {
  constructor(readonly dir: string) {}

  /** Copies `dst` aside as backup number `index` (durably); null backup: there was no file to keep. */
  async take(dst: string, index: number): Promise<BackupEntry> {
    const exists = await fsp.stat(dst).then(
      (s) => s.isFile(),
      () => false,
    );
    if (!exists) return { dst, backup: null };
    await fsp.mkdir(this.dir, { recursive: true, mode: 0o700 });
    const backup = path.join(this.dir, String(index));
    await fsp.copyFile(dst, backup);
    failpoint('installer.backup-copied');
    await fsyncFile(backup);
    await fsyncDir(this.dir);
    return { dst, backup };
  }

  /** Puts every file back as it was, the last replaced first; safe to run again after a crash. */
  async restore(entries: readonly BackupEntry[]): Promise<void> {
    for (const entry of [...entries].reverse()) {
      await fsp.rm(partialName(entry.dst), { force: true }); // an extraction cut short by a crash
      if (entry.backup) {
        const tmp = `${entry.dst}.tmp-restore`;
        await fsp.copyFile(entry.backup, tmp);
        await fsyncFile(tmp);
        await fsp.rename(tmp, entry.dst);
        await fsyncDir(path.dirname(entry.dst));
      } else {
        // the file did not exist before: remove what we put there, if we got that far
        const removed = await fsp.rm(entry.dst).then(
          () => true,
          (e: NodeJS.ErrnoException) => {
            if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return false;
            throw e;
          },
        );
        if (removed) await fsyncDir(path.dirname(entry.dst));
      }
    }
  }
}
