import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fsyncDir, fsyncFile } from '../../shared/durable-store.js';
import { UpdaterError } from '../../shared/errors.js';
import { failpoint } from '../../shared/failpoint.js';
import { partialName, type PackageArchive } from '../../shared/package-archive.js';
import { expectationOf } from '../../shared/trust/package-trust.js';
import { parsePublicKey, TRUSTED_KEY_MODE } from '../../shared/trust/signature.js';
import type { Placement } from './manifest.js';

// In-place files (outside the snapshot tree) are extracted into the installer's work directory
// while the snapshot is staged, so their size and SHA-256 are checked, and a new trusted key
// parsed, before any unit stops or any live file changes. After the units stop, each is copied
// over its destination the durable way.

export async function holdInPlace(
  archive: PackageArchive,
  placement: Placement & { kind: 'in-place' },
  held: string,
): Promise<void> {
  const { module } = placement;
  await archive.extractTo(module.src, held, expectationOf(module));
  if (!placement.trustedKey) return;
  try {
    parsePublicKey(await fsp.readFile(held));
  } catch (e) {
    throw new UpdaterError(
      'INVALID_PACKAGE',
      `module ${module.name}: ${module.src} is not a usable trusted key: ${(e as Error).message}`,
    );
  }
  // a public key is readable by all, whatever the zip says: the unprivileged fetcher checks
  // signatures with these files too, and a 0600 key (a vendor's umask) would make it refuse
  // every package signed by the new key while the installer accepted them
  await fsp.chmod(held, TRUSTED_KEY_MODE);
}

/** The held file over `dst`: a copy beside it (the name an undo removes), fsync, rename, fsync of the directory. */
export async function placeHeld(held: string, dst: string): Promise<void> {
  const tmp = partialName(dst);
  try {
    await fsp.mkdir(path.dirname(dst), { recursive: true, mode: 0o755 });
    await fsp.copyFile(held, tmp);
    await fsyncFile(tmp, (await fsp.stat(held)).mode & 0o777);
    failpoint('installer.in-place-before-rename');
    await fsp.rename(tmp, dst);
    await fsyncDir(path.dirname(dst));
  } catch (e) {
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    if ((e as NodeJS.ErrnoException).code === 'ENOSPC')
      throw new UpdaterError('DISK_FULL', `no space left while writing ${dst}`);
    throw new UpdaterError('DEPLOYMENT_FAILED', `cannot write ${dst}: ${(e as Error).message}`);
  }
}

/** A key file a package retires (it was backed up first, so an undo brings it back). */
export async function removeDurably(file: string): Promise<void> {
  const removed = await fsp.rm(file).then(
    () => true,
    (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return false;
      throw new UpdaterError('DEPLOYMENT_FAILED', `cannot remove ${file}: ${e.message}`);
    },
  );
  if (removed) await fsyncDir(path.dirname(file));
}
