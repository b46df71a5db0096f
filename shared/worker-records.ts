import { z } from 'zod';
import { statusSchema } from './status.js';
import { storedJobSchema } from './package-job.js';

// The state files the workers own. The gateway reads both and shows the status whose
// command sequence number is higher: the seq is handed out by the gateway with each command,
// so "which worker spoke last" needs no shared writer and no clock.

export const checkpointSchema = z.object({
  offset: z.number().int().min(0),
  etag: z.string().nullable(),
  lastModified: z.string().nullable(),
  bootId: z.string(),
});
export type Checkpoint = z.infer<typeof checkpointSchema>;

export const fetcherRecordSchema = z.object({
  seq: z.number().int().min(0),
  status: statusSchema,
  job: storedJobSchema.nullable(),
  checkpoint: checkpointSchema.nullable(),
  verifiedAt: z.iso.datetime().nullable(),
  packageFile: z.string().nullable(),
});
export type FetcherRecord = z.infer<typeof fetcherRecordSchema>;

export const installerRecordSchema = z.object({
  seq: z.number().int().min(0),
  status: statusSchema,
  version: z.string(),
});
export type InstallerRecord = z.infer<typeof installerRecordSchema>;

export { FETCHER_RECORD, INSTALLER_RECORD, PACKAGES_DIR } from './state-names.js';
