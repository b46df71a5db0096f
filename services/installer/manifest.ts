import path from 'node:path';
import { z } from 'zod';
import { UpdaterError } from '../../shared/errors.js';
import { describeIssues, versionSchema } from '../../shared/package-job.js';
import { plainText, unitNameSchema } from './names.js';

export const moduleSchema = z.object({
  name: plainText(z.string().min(1).max(128)),
  src: plainText(z.string().min(1).max(1024)),
  dst: plainText(z.string().min(2).max(1024)),
  process_name: unitNameSchema.nullish(),
  restart_order: z.number().int().min(-1000).max(1000).nullish(),
  post_cmds: z.array(z.string().min(1).max(4096)).max(32).nullish(),
});

export const manifestSchema = z.object({
  version: versionSchema,
  modules: z.array(moduleSchema).min(1).max(1000)
    .refine((ms) => new Set(ms.map((m) => m.name)).size === ms.length, 'module names must be unique'),
});

export type Manifest = z.infer<typeof manifestSchema>;
export type Module = z.infer<typeof moduleSchema>;

/** Where one module's file goes: inside the version snapshot, or in place (backed up) elsewhere. */
export type Placement =
  | { module: Module; kind: 'snapshot'; rel: string }
  | { module: Module; kind: 'in-place'; dst: string };

export interface Layout {
  /** Device paths: the allowed roots and the versions directory. */
  allowedRoots: string[];
  versionsDir: string;
}

const bad = (message: string) => new UpdaterError('INVALID_MANIFEST', message);
const under = (p: string, root: string) => p === root || p.startsWith(root.endsWith('/') ? root : `${root}/`);

/**
 * Validates the manifest against the package and the device layout and says where each file
 * goes. `dst` under the versions' parent (/opt/tope) lands in the snapshot; under another
 * allowed root it is replaced in place.
 */
export function planInstall(raw: unknown, version: string, files: ReadonlyMap<string, unknown>, layout: Layout): { manifest: Manifest; placements: Placement[] } {
  const parsed = manifestSchema.safeParse(raw);
  if (!parsed.success) throw bad(describeIssues(parsed.error));
  const manifest = parsed.data;
  if (manifest.version !== version) throw bad(`package claims version ${manifest.version}, expected ${version}`);
  const snapshotRoot = path.posix.dirname(layout.versionsDir);
  const seen = new Set<string>();
  const placements = manifest.modules.map((m): Placement => {
    if (!files.has(m.src)) throw bad(`module ${m.name}: src ${m.src} is not a regular file in the package`);
    const dst = m.dst;
    if (!dst.startsWith('/') || path.posix.normalize(dst) !== dst || dst.endsWith('/') || dst.split('/').includes('..')) {
      throw bad(`module ${m.name}: dst ${dst} is not a normalised absolute file path`);
    }
    if (!layout.allowedRoots.some((r) => under(dst, r) && dst !== r)) throw bad(`module ${m.name}: dst ${dst} is outside the allowed roots ${layout.allowedRoots.join(', ')}`);
    if (under(dst, layout.versionsDir)) throw bad(`module ${m.name}: dst ${dst} is inside the versions directory`);
    if (seen.has(dst)) throw bad(`module ${m.name}: dst ${dst} is written by two modules`);
    seen.add(dst);
    return under(dst, snapshotRoot) ? { module: m, kind: 'snapshot', rel: path.posix.relative(snapshotRoot, dst) } : { module: m, kind: 'in-place', dst };
  });
  return { manifest, placements };
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
 * Every unit the manifest names must exist, checked before anything changes: a missing one would
 * otherwise be found only at the stop step, after the staging, with the stopped units to undo.
 */
export async function checkUnitsExist(manifest: Manifest, exists: (unit: string) => Promise<boolean>): Promise<void> {
  const named = manifest.modules.filter((m): m is Module & { process_name: string } => !!m.process_name);
  const found = await Promise.all(named.map((m) => exists(m.process_name)));
  const missing = named.find((_, i) => !found[i]);
  if (missing) throw bad(`module ${missing.name}: unit ${missing.process_name} not found`);
}
