import path from 'node:path';
import { UpdaterError } from '../../shared/errors.js';
import { PARTIAL_SUFFIX } from '../../shared/package-archive.js';
import { forEachBounded } from './bounded-work.js';
import { isPlainAbsolute } from './plain-paths.js';
import { checkManagedUnits } from './unit-policy.js';
import { keyFileNameSchema, type Manifest, type Module } from '../../shared/package-manifest.js';

export { manifestSchema, moduleSchema, type Manifest, type Module } from '../../shared/package-manifest.js';

/** Where one module's file goes: inside the version snapshot, or in place (backed up) elsewhere. */
export type Placement =
  | { module: Module; kind: 'snapshot'; rel: string }
  | { module: Module; kind: 'in-place'; dst: string; root: string; trustedKey?: boolean };

export interface Layout {
  /** Device paths: the allowed roots and the versions directory. */
  allowedRoots: string[];
  versionsDir: string;
  /** The trusted keys directory (a device path) and the key files in it now: an install root for key rotation only. */
  keysDir: string;
  trustedKeys: string[];
}

export interface InstallPlan {
  manifest: Manifest;
  placements: Placement[];
  /** Device paths of the key files the package removes (key rotation), backed up like in-place files. */
  removals: string[];
}

const bad = (message: string) => new UpdaterError('INVALID_MANIFEST', message);
/** `p` relative to `root`, `p` a normalized path below it: the tail after the root and its slash, normalized too. */
const below = (p: string, root: string): string => p.slice(root.endsWith('/') ? root.length : root.length + 1);

const under = (p: string, root: string) => p === root || p.startsWith(root.endsWith('/') ? root : `${root}/`);

/**
 * Checks the manifest against the package and the device layout and says where each file goes.
 * `dst` under the versions' parent (/opt/tope) lands in the snapshot; under another allowed root
 * it is replaced in place. `manifest` is the one the trust check parsed and validated
 * (checkPackageTrust): parsed again here, it cost as much once more (~12 ms for 1000 modules
 * under --jitless).
 */
export function planInstall(
  manifest: Manifest,
  version: string,
  files: ReadonlyMap<string, unknown>,
  layout: Layout,
): InstallPlan {
  if (manifest.version !== version) throw bad(`package claims version ${manifest.version}, expected ${version}`);
  const snapshotRoot = path.posix.dirname(layout.versionsDir);
  const seen = new Map<string, string>(); // dst -> the module writing it
  const placements = manifest.modules.map((m): Placement => {
    if (!files.has(m.src)) throw bad(`module ${m.name}: src ${m.src} is not a regular file in the package`);
    const dst = m.dst;
    if (!isPlainAbsolute(dst)) {
      throw bad(`module ${m.name}: dst ${dst} is not a normalised absolute file path`);
    }
    if (seen.has(dst)) throw bad(`module ${m.name}: dst ${dst} is written by two modules`);
    // x.tope-partial is where x is written before its rename: extracting x would remove that file
    if (dst.endsWith(PARTIAL_SUFFIX))
      throw bad(
        `module ${m.name}: dst ${dst} ends in ${PARTIAL_SUFFIX}, the name a file is written under before its rename`,
      );
    seen.set(dst, m.name);
    if (under(dst, layout.keysDir)) return keyPlacement(m, layout.keysDir);
    // the innermost allowed root holding dst: below it no component may be a symlink (safe-paths.ts)
    const root = layout.allowedRoots.filter((r) => under(dst, r) && dst !== r).sort((a, b) => b.length - a.length)[0];
    if (!root) throw bad(`module ${m.name}: dst ${dst} is outside the allowed roots ${layout.allowedRoots.join(', ')}`);
    if (under(dst, layout.versionsDir)) throw bad(`module ${m.name}: dst ${dst} is inside the versions directory`);
    return under(dst, snapshotRoot)
      ? { module: m, kind: 'snapshot', rel: below(dst, snapshotRoot) }
      : { module: m, kind: 'in-place', dst, root };
  });
  // a file where another module's file needs a directory: which of the two is refused would
  // depend on the order they are written in (several at once), so neither is tried
  for (const [dst, name] of seen) {
    for (let dir = path.posix.dirname(dst); dir !== '/'; dir = path.posix.dirname(dir)) {
      const owner = seen.get(dir);
      if (owner !== undefined) throw bad(`module ${name}: dst ${dst} is below ${dir}, a file module ${owner} writes`);
    }
  }
  const removals = (manifest.remove_keys ?? []).map((name) => path.posix.join(layout.keysDir, name));
  for (const r of removals) if (seen.has(r)) throw bad(`remove_keys: ${r} is also installed by a module`);
  const removed = new Set(manifest.remove_keys ?? []);
  const added = placements.filter((p) => p.kind === 'in-place' && p.trustedKey).length;
  if (added === 0 && layout.trustedKeys.every((k) => removed.has(k))) {
    throw bad(`remove_keys would leave no trusted key in ${layout.keysDir}`);
  }
  return { manifest, placements, removals };
}

/**
 * The keys directory is an install root for key rotation only: a module there is a `<name>.pub`
 * directly inside it, with no unit and no command; its content is checked to be an Ed25519
 * public key before anything changes.
 */
function keyPlacement(m: Module, keysDir: string): Placement {
  if (path.posix.dirname(m.dst) !== keysDir || !keyFileNameSchema.safeParse(path.posix.basename(m.dst)).success) {
    throw bad(`module ${m.name}: dst ${m.dst} is in the trusted keys directory but is not a <name>.pub directly in it`);
  }
  if (m.process_name || m.post_cmds?.length)
    throw bad(`module ${m.name}: a trusted key file takes no process_name or post_cmds`);
  return { module: m, kind: 'in-place', dst: m.dst, root: keysDir, trustedKey: true };
}

/** Units to control, in restart_order (manifest order breaks ties), each once. */
export function unitsInOrder(manifest: Manifest): string[] {
  const withUnits = manifest.modules
    .map((m, index) => ({ unit: m.process_name, order: m.restart_order ?? 0, index }))
    .filter((x): x is { unit: string; order: number; index: number } => !!x.unit)
    .sort((a, b) => a.order - b.order || a.index - b.index);
  return [...new Set(withUnits.map((x) => x.unit))];
}

/**
 * Every unit the manifest names must be one the device lets a package control (TOPE_MANAGED_UNITS)
 * and must exist, checked before anything changes: a missing one would otherwise be found only at
 * the stop step, after the staging, with the stopped units to undo.
 */
export async function checkUnits(
  manifest: Manifest,
  managed: readonly string[],
  exists: (unit: string) => Promise<boolean>,
): Promise<void> {
  checkManagedUnits(manifest, managed);
  const named = manifest.modules.filter((m): m is Module & { process_name: string } => !!m.process_name);
  // each unit looked for once, a few at once: a package whose 500 modules name one unit is one
  // `systemctl cat`, not 500 at the same time
  const found = new Map<string, boolean>();
  await forEachBounded([...new Set(named.map((m) => m.process_name))], async (unit) => {
    found.set(unit, await exists(unit));
  });
  const missing = named.find((m) => !found.get(m.process_name));
  if (missing) throw bad(`module ${missing.name}: unit ${missing.process_name} not found`);
}
