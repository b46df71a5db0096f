import fs, { constants, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Config } from '../../shared/config.js';
import { expiredText, UpdaterError } from '../../shared/errors.js';
import { PackageArchive, type ArchiveLimits } from '../../shared/package-archive.js';
import { refuse, type Reply } from '../../shared/protocol.js';
import type { FetcherRecord } from '../../shared/worker-records.js';

// The installer (root) reads the package the fetcher (unprivileged, and to be assumed compromised)
// verified, without copying it. What the fetcher's record says is untrusted input: the path must
// name a file directly in the fetcher's packages directory, which is opened without following a
// link (a link to /etc/shadow, or a `packages` directory replaced by a link, is refused); the file
// is opened without following a link and without blocking (a FIFO cannot hang the install), and
// must be a regular file with one name, owned by whoever owns the directory (not a hard link to
// someone else's file). From then on the install works from that descriptor only: renaming,
// removing or replacing the path changes nothing the installer reads. The fetcher still owns the
// file and may write into it while it is read: that is why every byte the install uses is checked
// against the signed manifest on its way to the disk (README, "Trust").

/**
 * The package file the fetcher's record offers for an install command of `version` (a path,
 * judged by openFetchedPackage), or the command's refusal: no verified package of that version,
 * or one verified longer ago than the trust window.
 */
export function offeredPackage(
  fetched: FetcherRecord | null,
  version: string,
  now: number,
  config: Pick<Config, 'TOPE_TRUST_WINDOW_MS'>,
): string | Reply {
  const job = fetched?.job;
  if (!fetched?.packageFile || !job || fetched.status.stage !== 'toInstall' || job.version !== version)
    return refuse('PACKAGE_NOT_FOUND', `Package not found: ${version}`);
  if (fetched.verifiedAt && now - Date.parse(fetched.verifiedAt) > config.TOPE_TRUST_WINDOW_MS)
    return refuse('PACKAGE_EXPIRED', expiredText(config.TOPE_TRUST_WINDOW_MS));
  return fetched.packageFile;
}

/** Which file the install reads: fixed when it was opened (a descriptor keeps its file). */
export interface PackageIdentity {
  dev: number;
  ino: number;
  size: number;
}

const openFd = promisify(fs.open);
const fstat = promisify(fs.fstat);
const close = promisify(fs.close);

const refused = (detail: string) =>
  new UpdaterError('PACKAGE_NOT_FOUND', `cannot read the verified package: ${detail}`);

/** The file name the record's path gives inside `packagesDir`, or the refusal when it names anything else. */
export function packageNameIn(packagesDir: string, recorded: string): string {
  const dir = path.resolve(packagesDir);
  const name = path.basename(recorded);
  if (
    !path.isAbsolute(recorded) ||
    recorded !== path.join(dir, name) ||
    [...recorded].some((c) => c.charCodeAt(0) < 0x20) ||
    name === '' ||
    name === '.' ||
    name === '..'
  ) {
    throw refused(`${JSON.stringify(recorded)} is not a file directly in the fetcher's packages directory ${dir}`);
  }
  return name;
}

/** An errno of open(2) as the refusal says it. */
function openRefusal(e: NodeJS.ErrnoException, what: string): UpdaterError {
  switch (e.code) {
    case 'ELOOP':
      return refused(`${what} is a symbolic link`);
    case 'ENXIO':
      return refused(`${what} is not a regular file`);
    default:
      return refused(e.message);
  }
}

/**
 * Opens the package the fetcher's record names (see above) and reads its zip's central directory
 * through the descriptor. The archive owns the descriptor: closing it closes the file.
 */
export async function openFetchedPackage(
  packagesDir: string,
  recorded: string,
  limits: ArchiveLimits,
): Promise<{ archive: PackageArchive; identity: PackageIdentity }> {
  const name = packageNameIn(packagesDir, recorded);
  const dir = path.resolve(packagesDir);
  let dirHandle: FileHandle;
  try {
    dirHandle = await fsp.open(dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  } catch (e) {
    // O_DIRECTORY answers a symbolic link with ENOTDIR, before O_NOFOLLOW's ELOOP
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR' || code === 'ELOOP')
      throw refused(`the packages directory ${dir} is a symbolic link or not a directory`);
    throw openRefusal(e as NodeJS.ErrnoException, `the packages directory ${dir}`);
  }
  let fd: number;
  let identity: PackageIdentity;
  try {
    const dirStat = await dirHandle.stat();
    // openat(dirfd, name) through the descriptor's /proc link: the name is looked up in the
    // directory opened above, whatever its path names by now
    try {
      fd = await openFd(
        `/proc/self/fd/${dirHandle.fd}/${name}`,
        constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY,
      );
    } catch (e) {
      throw openRefusal(e as NodeJS.ErrnoException, recorded);
    }
    try {
      const st = await fstat(fd);
      if (!st.isFile()) throw refused(`${recorded} is not a regular file`);
      if (st.nlink !== 1) throw refused(`${recorded} has ${st.nlink} names (a hard link to another file?)`);
      if (st.uid !== dirStat.uid) throw refused(`${recorded} is not owned by the packages directory's owner`);
      identity = { dev: st.dev, ino: st.ino, size: st.size };
    } catch (e) {
      await close(fd);
      throw e;
    }
  } finally {
    await dirHandle.close();
  }
  return { archive: await PackageArchive.openFd(fd, limits), identity };
}
