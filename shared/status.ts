import { z } from 'zod';

export const stages = ['idle', 'downloading', 'verifying', 'toInstall', 'installing', 'rebooting', 'success', 'failed'] as const;
export const stageSchema = z.enum(stages);
export type Stage = z.infer<typeof stageSchema>;

/** What /progress shows and what device-api receives. */
export const statusSchema = z.object({
  stage: stageSchema,
  progress: z.number().int().min(0).max(100),
  message: z.string(),
  error: z.string().nullable(),
});
export type Status = z.infer<typeof statusSchema>;

export const idleStatus: Status = { stage: 'idle', progress: 0, message: 'Updater ready', error: null };

/** Stages in which a worker is busy: the gateway must stay up and refuse other commands. */
export const busyStages: ReadonlySet<Stage> = new Set(['downloading', 'verifying', 'installing', 'rebooting']);

export const clampPercent = (n: number): number => Math.max(0, Math.min(100, Math.floor(n)));

/** "12.0 MB / 104.9 MB", decimal megabytes as the original's contract shows them. */
export const formatBytes = (done: number, total: number): string =>
  `${(done / 1e6).toFixed(1)} MB / ${(total / 1e6).toFixed(1)} MB`;
