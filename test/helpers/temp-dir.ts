import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

// The one way a test makes a temporary directory. Each is removed when the test process exits,
// whether its tests passed or failed: after every test and after-hook of the file, so a test may
// still read a directory once it has stopped what wrote there, and a helper or a file's top level,
// which have no test context, make theirs the same way. Run as root, the removal also takes what
// services, sandboxes and their users wrote inside. Left behind, they had piled up by the
// thousand in the CI machine's /tmp; `make test` now fails naming any entry a test run leaves in
// its TMPDIR (scripts/fresh-tmpdir.sh).

const made: string[] = [];
process.on('exit', () => {
  for (const dir of made) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch (e) {
      // a mount left on it (disk-full.test's tmpfs, should its umount have failed): left as it is,
      // and named here, where the test that made it can be found
      process.stderr.write(`temp-dir: ${dir} not removed: ${(e as Error).message}\n`);
    }
  }
});

/** A new directory in os.tmpdir() (TMPDIR), its name `prefix` and six random characters, removed at this process's exit. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(dir);
  return dir;
}
