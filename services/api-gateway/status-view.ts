import path from 'node:path';
import { DurableJson } from '../../shared/durable-store.js';
import { idleStatus, type Status } from '../../shared/status.js';
import {
  FETCHER_RECORD, fetcherRecordSchema, INSTALLER_RECORD, installerRecordSchema,
  type FetcherRecord, type InstallerRecord,
} from '../../shared/worker-records.js';

/** What the gateway knows: both workers' records and which of them spoke last. */
export interface View {
  seq: number;
  status: Status;
  active: 'fetcher' | 'installer' | null;
  fetch: FetcherRecord | null;
  install: InstallerRecord | null;
}

export class StatusView {
  private readonly fetcher: DurableJson<typeof fetcherRecordSchema>;
  private readonly installer: DurableJson<typeof installerRecordSchema>;

  constructor(fetcherStateDir: string, installerStateDir: string) {
    this.fetcher = new DurableJson(path.join(fetcherStateDir, FETCHER_RECORD), fetcherRecordSchema);
    this.installer = new DurableJson(path.join(installerStateDir, INSTALLER_RECORD), installerRecordSchema);
  }

  async read(): Promise<View> {
    const [fetch, install] = await Promise.all([this.fetcher.read(), this.installer.read()]);
    const fSeq = fetch?.seq ?? -1;
    const iSeq = install?.seq ?? -1;
    if (fetch && fSeq >= iSeq) return { seq: fSeq, status: fetch.status, active: 'fetcher', fetch, install };
    if (install) return { seq: iSeq, status: install.status, active: 'installer', fetch, install };
    return { seq: 0, status: idleStatus, active: null, fetch, install };
  }
}
