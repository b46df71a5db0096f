import { promises as fsp } from 'node:fs';
import { DurableJson } from '../../shared/durable-store.js';
import { isErrnoException } from '../../shared/errors.js';
import { idleStatus, type Status } from '../../shared/status.js';
import { workerNames, workers, type WorkerName, type WorkerRecord } from '../../shared/workers.js';

export type WorkerRecords = { [Name in WorkerName]: WorkerRecord<Name> | null };

/** What the gateway knows: every worker's record and which of them spoke last. */
export interface View {
  seq: number;
  status: Status;
  active: WorkerName | null;
  records: WorkerRecords;
}

type RecordStores = { [Name in WorkerName]: DurableJson<(typeof workers)[Name]['recordSchema']> };

/**
 * One worker's record as last read, and the identity of the file it came from. A worker writes
 * its record by temp file and rename, so a new record is a new inode (and the old one moves to
 * `.prev`): while inode, size, mtime and ctime are unchanged, neither file changed and the record
 * read before stands, without reading, parsing and validating it again on every /progress.
 */
class CachedRecord<S extends DurableJson<(typeof workers)[WorkerName]['recordSchema']>> {
  private identity: string | null = null;
  private value: Awaited<ReturnType<S['read']>> | null = null;

  constructor(private readonly store: S) {}

  async read(): Promise<Awaited<ReturnType<S['read']>> | null> {
    // the identity before the read: a write in between makes the next one read again
    const identity = await fileIdentity(this.store.file);
    if (identity !== null && identity === this.identity) return this.value;
    const value = (await this.store.read()) as Awaited<ReturnType<S['read']>> | null;
    // no file: read every time (the `.prev` fallback, or nothing), which is rare and cheap
    this.identity = identity;
    this.value = value;
    return value;
  }
}

async function fileIdentity(file: string): Promise<string | null> {
  try {
    const s = await fsp.stat(file, { bigint: true });
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
  } catch (e) {
    if (isErrnoException(e, 'ENOENT')) return null;
    throw e;
  }
}

type CachedRecords = { [Name in WorkerName]: CachedRecord<RecordStores[Name]> };

export class StatusView {
  private readonly records: CachedRecords;

  constructor(recordPaths: Record<WorkerName, string>) {
    this.records = Object.fromEntries(
      workerNames.map((name) => [
        name,
        new CachedRecord(new DurableJson(recordPaths[name], workers[name].recordSchema)),
      ]),
    ) as unknown as CachedRecords;
  }

  /**
   * The status shown is that of the record with the higher command sequence number (the gateway
   * hands one out with each command, so "who spoke last" needs no shared writer and no clock); on
   * a tie, the worker listed first in the workers table. The records are shared between the
   * answers until a worker writes again: callers do not change them.
   */
  async read(): Promise<View> {
    const read = await Promise.all(workerNames.map(async (name) => [name, await this.records[name].read()] as const));
    const records = Object.fromEntries(read) as WorkerRecords;
    let view: View = { seq: 0, status: idleStatus, active: null, records };
    for (const [name, record] of read) {
      if (record && (view.active === null || record.seq > view.seq)) {
        view = { seq: record.seq, status: record.status, active: name, records };
      }
    }
    return view;
  }
}
