import { z } from 'zod';
import { installerRecordSchema } from '../../shared/worker-records.js';

/**
 * The install journal, persisted inside install.json before each step that changes the device,
 * so that a restart knows exactly what to undo or finish.
 *
 * | phase        | what may have changed                      | recovery at start                               |
 * |--------------|--------------------------------------------|-------------------------------------------------|
 * | staging      | a staging tree or new snapshot, nothing live | remove them; failed INSTALL_INTERRUPTED         |
 * | stopping     | units stopped, in-place files replaced, post_cmds run | restore backups, remove the snapshot, start the units; failed |
 * | switching    | `current` may name the new snapshot         | as `switched` if it does, else as `stopping`     |
 * | switched     | `current` names the new snapshot            | roll forward: start units, probation; on failure roll back |
 * | rolling-back | part of a rollback                          | run the rollback again from level 1             |
 */
export const journalSchema = z.object({
  phase: z.enum(['staging', 'stopping', 'switching', 'switched', 'rolling-back']),
  version: z.string(),
  targetDir: z.string(),
  stagingDir: z.string(),
  fromDir: z.string().nullable(),
  previousBefore: z.string().nullable(),
  units: z.array(z.string()),
  backups: z.array(z.object({ dst: z.string(), backup: z.string().nullable() })),
  error: z.string().nullable(),
  /** The package's security_version: the floor rises to it once the probation succeeds (0 in older journals). */
  securityVersion: z.number().int().min(0).default(0),
});
export type Journal = z.infer<typeof journalSchema>;

export const installerStateSchema = installerRecordSchema.extend({ journal: journalSchema.nullable() });
export type InstallerState = z.infer<typeof installerStateSchema>;
