import * as z from './schema.js';
import { busyStages, stages } from './stages.js';

// The stages and which are busy: shared/stages.ts (a new stage goes there, and its Records fail
// to compile until decided).
export { busyStages, stages };
export const stageSchema = z.enum(stages);
export type Stage = z.infer<typeof stageSchema>;

/** What /progress shows and what device-api receives. */
export const statusSchema = z.object({
  stage: stageSchema,
  progress: z.number().check(z.int(), z.minimum(0), z.maximum(100)),
  message: z.string(),
  error: z.nullable(z.string()),
});
export type Status = z.infer<typeof statusSchema>;

export const clampPercent = (n: number): number => Math.max(0, Math.min(100, Math.floor(n)));

/** "12.0 MB / 104.9 MB", decimal megabytes as the wire contract shows them. */
export const formatBytes = (done: number, total: number): string =>
  `${(done / 1e6).toFixed(1)} MB / ${(total / 1e6).toFixed(1)} MB`;

// The status constructors: every status a worker persists is built here, so a stage's message
// and progress rules live in one place.
export const READY_MESSAGE = 'Updater ready';

export const idle = (reason: string = READY_MESSAGE): Status => ({
  stage: 'idle',
  progress: 0,
  message: reason,
  error: null,
});

export const idleStatus: Status = idle();

/** `atLeast`: progress never goes back within the stage, even when the server makes the download start over. */
export const downloading = (version: string, offset: number, size: number, atLeast = 0): Status => ({
  stage: 'downloading',
  progress: Math.max(clampPercent(atLeast), clampPercent((offset * 100) / size)),
  message: `Downloading version ${version}... ${formatBytes(offset, size)}`,
  error: null,
});

export const verifying = (): Status => ({
  stage: 'verifying',
  progress: 0,
  message: 'Verifying package integrity...',
  error: null,
});

export const toInstall = (version: string): Status => ({
  stage: 'toInstall',
  progress: 100,
  message: `Package ready to install: ${version}`,
  error: null,
});

export const installing = (progress: number, message: string): Status => ({
  stage: 'installing',
  progress: clampPercent(progress),
  message,
  error: null,
});

export const succeeded = (message: string): Status => ({ stage: 'success', progress: 100, message, error: null });

/** `error` is the wire text "CODE: detail" (or several joined with "; "). */
export const failed = (error: string, message: string, progress: number): Status => ({
  stage: 'failed',
  progress: clampPercent(progress),
  message,
  error,
});
