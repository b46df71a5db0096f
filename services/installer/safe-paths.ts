import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { isErrnoException, UpdaterError } from '../../shared/errors.js';
import { forEachBounded } from './bounded-work.js';
import { isPlainAbsolute, isPlainRelative, joinPlain } from './plain-paths.js';
import type { Placement } from './manifest.js';

// A symlink already on the device (in `current`, which the staging tree copies as a symlink, or
// anywhere under an allowed root) must not carry a write elsewhere: `bin -> /etc` in the running
// snapshot would make a package's `/opt/tope/bin/x` land in /etc/x, which no undo restores. So
// every component of a destination below its root is looked at without following links (lstat)
// and a symlink among them refuses the install, before anything changes and again just before
// the write (for a staged file, its directories: its own name is renamed over, see 'staged').
// The root itself (an allowed root, the keys directory, the snapshot being built) is the
// device's configuration and is taken as it resolves.
//
// What remains: a symlink created between the check and the write. Only the installer writes the
// staging tree; in-place roots are checked again after the units stopped, right before each
// write, so the window is what a still-running process of the printer could do in microseconds.

export type FinalComponent =
  /** the destination is replaced by a rename (the snapshot): a symlink there is replaced, not followed */
  | 'replaced'
  /** the destination is backed up and replaced in place: it must be a regular file or absent, or the undo would not give back what was there */
  | 'regular-or-absent'
  /**
   * a file of the staging tree: written under a new name (O_CREAT|O_EXCL|O_NOFOLLOW) and renamed
   * over whatever is there, and rename(2) never follows its target: a symlink there is replaced,
   * a directory fails the rename. So only the directories on the way are looked at, not the name
   * itself (a look per file, 1000 of them in a package of 1000 files). A directory there is
   * refused before anything changes anyway: by checkDestinations in the running snapshot, which
   * the staging tree copies, and by planInstall among the package's own files.
   */
  | 'staged';

const refused = (message: string) => new UpdaterError('UNSAFE_DESTINATION', message);

/**
 * The directories one pass over an install's destinations has already found to be directories
 * (not symlinks): a package of 1000 files in a few directories looks at each directory once, not
 * once per file below it (most of an install's CPU before). Only for a tree that nothing but the
 * installer changes during the pass (the staging tree, the running snapshot), or for the look
 * before anything changes, whose in-place destinations are looked at again, each without one,
 * right before its write.
 */
export type SeenDirectories = Set<string>;

/**
 * Refuses `target` (a host path below `root`) when a directory on the way is a symlink or not a
 * directory, or when its last component is not what `final` allows. `shown` names the path in
 * the error as the manifest does (its device path). `seen`: directories this pass already found
 * to be directories (see SeenDirectories), skipped, and the ones found now added.
 */
export async function checkDestination(
  root: string,
  target: string,
  final: FinalComponent,
  shown = target,
  seen?: SeenDirectories,
): Promise<void> {
  // the callers' roots are absolute and normalized already: resolving them again is the cost saved
  const base = isPlainAbsolute(root) ? root : path.resolve(root);
  const rel = relativeBelow(base, target);
  if (!rel || rel.startsWith('..') || path.isAbsolute(rel)) throw refused(`${shown} is not below ${root}`);
  const parts = rel.split(path.sep);
  // `rel` is normalized (path.relative's), so each step is a concatenation, not a path.join
  let at = base;
  for (const [index, part] of parts.entries()) {
    at = joinPlain(at, part);
    const last = index === parts.length - 1;
    if (last && final === 'staged') return;
    if (!last && seen?.has(at)) continue;
    let st;
    try {
      st = await fsp.lstat(at);
    } catch (e) {
      // what is missing is created by the installer, as directories; a root that is no directory
      // (ENOTDIR) fails the write itself, with its own error
      if (isErrnoException(e, 'ENOENT') || isErrnoException(e, 'ENOTDIR')) return;
      throw e;
    }
    if (!last) {
      if (st.isSymbolicLink())
        throw refused(
          `${shown}: ${at} is a symlink (to ${await fsp.readlink(at)}); a write through it could leave ${root}`,
        );
      if (!st.isDirectory()) throw refused(`${shown}: ${at} is not a directory`);
      seen?.add(at);
    } else if (final === 'regular-or-absent' && !st.isFile()) {
      const kind = st.isSymbolicLink() ? `a symlink (to ${await fsp.readlink(at)})` : 'not a regular file';
      throw refused(`${shown} is ${kind} on the device; it would not be restored if the install failed`);
    } else if (final === 'replaced' && st.isDirectory()) {
      throw refused(`${shown} is a directory on the device`);
    }
  }
}

/**
 * path.relative(base, target) for a resolved `base`: a target that is `base`, a separator and a
 * plain relative path (a normalized relative path joined to the root, as every caller's is) is
 * that tail as it stands; anything else goes through path.relative.
 */
function relativeBelow(base: string, target: string): string {
  const prefix = joinPlain(base, '');
  if (target.startsWith(prefix)) {
    const tail = target.slice(prefix.length);
    if (tail && isPlainRelative(tail)) return tail;
  }
  return path.relative(base, target);
}

/**
 * Every destination of an install, before anything changes: in-place files below their allowed
 * root, key files a rotation removes, and snapshot files in `snapshot` (the running snapshot,
 * whose symlinks are what the staging tree copies; null on a first install).
 */
export async function checkDestinations(
  placements: readonly Placement[],
  removals: readonly string[],
  where: { hostPath: (devicePath: string) => string; snapshot: string | null },
): Promise<void> {
  const { hostPath, snapshot } = where;
  const seen: SeenDirectories = new Set();
  // a few at once (bounded-work.ts): a look changes nothing, and the refusal thrown is the one of
  // the first destination refused, as one at a time
  await forEachBounded(placements, async (placement) => {
    if (placement.kind === 'in-place')
      await checkDestination(
        hostPath(placement.root),
        hostPath(placement.dst),
        'regular-or-absent',
        placement.dst,
        seen,
      );
    else if (snapshot)
      await checkDestination(snapshot, path.join(snapshot, placement.rel), 'replaced', placement.module.dst, seen);
  });
  for (const removal of removals)
    await checkDestination(
      hostPath(path.posix.dirname(removal)),
      hostPath(removal),
      'regular-or-absent',
      removal,
      seen,
    );
}
