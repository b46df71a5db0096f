import path from 'node:path';
import type * as z from './schema.js';
import type { Config } from './config.js';
import { FETCHER_RECORD, fetcherRecordSchema, INSTALLER_RECORD, installerRecordSchema } from './worker-records.js';

/** What the gateway and a worker's bootstrap both need to know of a worker. */
export interface WorkerEntry {
  /** Its record's file name in its state directory, and the part of it the gateway reads. */
  recordFile: string;
  recordSchema: z.ZodMiniType<{ seq: number }>;
  stateDir: (config: Config) => string;
  /**
   * The setting that names its command socket (when not inherited from systemd): read from the
   * configuration, or alone when the configuration is invalid (shared/degraded.ts).
   */
  socketSetting: 'TOPE_FETCHER_SOCKET' | 'TOPE_INSTALLER_SOCKET';
}

/**
 * Every worker, one entry each: a new worker is an entry here and its own folder under services/.
 * The order matters once: on equal command sequence numbers the gateway shows the worker listed
 * first.
 */
export const workers = {
  fetcher: {
    recordFile: FETCHER_RECORD,
    recordSchema: fetcherRecordSchema,
    stateDir: (config: Config) => config.TOPE_FETCHER_STATE_DIR,
    socketSetting: 'TOPE_FETCHER_SOCKET',
  },
  installer: {
    recordFile: INSTALLER_RECORD,
    recordSchema: installerRecordSchema,
    stateDir: (config: Config) => config.TOPE_INSTALLER_STATE_DIR,
    socketSetting: 'TOPE_INSTALLER_SOCKET',
  },
} as const satisfies Record<string, WorkerEntry>;

export type WorkerName = keyof typeof workers;
export const workerNames = Object.keys(workers) as WorkerName[];

/**
 * The gateway's rule for the status it shows, for whoever else needs it: the record of the newer
 * command (the gateway hands a sequence number out with each), on a tie the worker listed first
 * above. True when `worker`'s record, under command `seq`, is shown rather than `than`'s.
 */
export function shownOver(worker: WorkerName, seq: number, than: WorkerName, thanSeq: number): boolean {
  return seq > thanSeq || (seq === thanSeq && workerNames.indexOf(worker) < workerNames.indexOf(than));
}

/** What the gateway reads of each worker's record. */
export type WorkerRecord<Name extends WorkerName> = z.infer<(typeof workers)[Name]['recordSchema']>;

/** A worker's command socket (when not inherited from systemd). */
export const socketOf = (name: WorkerName, config: Config): string => config[workers[name].socketSetting];

export const recordPathOf = (name: WorkerName, config: Config): string =>
  path.join(workers[name].stateDir(config), workers[name].recordFile);

export const recordPaths = (config: Config): Record<WorkerName, string> =>
  Object.fromEntries(workerNames.map((name) => [name, recordPathOf(name, config)])) as Record<WorkerName, string>;
