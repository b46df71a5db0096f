import * as z from './schema.js';
import { statusSchema } from './status.js';
import { storedJobSchema } from './package-job.js';

// The state files the workers own. The gateway reads both and shows the status whose
// command sequence number is higher: the seq is handed out by the gateway with each command,
// so "which worker spoke last" needs no shared writer and no clock.

export const checkpointSchema = z.object({
  offset: z.number().check(z.int(), z.minimum(0)),
  etag: z.nullable(z.string()),
  lastModified: z.nullable(z.string()),
  bootId: z.string(),
});
export type Checkpoint = z.infer<typeof checkpointSchema>;

export const fetcherRecordSchema = z.object({
  seq: z.number().check(z.int(), z.minimum(0)),
  status: statusSchema,
  job: z.nullable(storedJobSchema),
  checkpoint: z.nullable(checkpointSchema),
  verifiedAt: z.nullable(z.iso.datetime()),
  packageFile: z.nullable(z.string()),
});
export type FetcherRecord = z.infer<typeof fetcherRecordSchema>;

export const installerRecordSchema = z.object({
  seq: z.number().check(z.int(), z.minimum(0)),
  status: statusSchema,
  version: z.string(),
});
export type InstallerRecord = z.infer<typeof installerRecordSchema>;

export { FETCHER_RECORD, INSTALLER_RECORD, PACKAGES_DIR } from './state-names.js';
