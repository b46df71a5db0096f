import { statSync } from 'node:fs';
import { DurableJson } from '../../shared/durable-store.js';
import { idleStatus, type Status } from '../../shared/status.js';
import { shownOver, workerNames, workers, type WorkerName, type WorkerRecord } from '../../shared/workers.js';

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
 * Without the file, the `.prev` it falls back to (or its absence) is what identifies the record:
 * a worker that never wrote one (the installer until the first install) costs a stat per poll,
 * not two failed opens.
 */
class CachedRecord<S extends DurableJson<(typeof workers)[WorkerName]['recordSchema']>> {
  private identity: string | null = null;
  private value: Awaited<ReturnType<S['read']>> | null = null;

  constructor(private readonly store: S) {}

  async read(): Promise<Awaited<ReturnType<S['read']>> | null> {
    // the identity before the read: a write in between makes the next one read again
    const identity = fileIdentity(this.store.file) ?? `prev ${fileIdentity(this.store.prevPath) ?? 'none'}`;
    if (identity === this.identity) return this.value;
    const value = (await this.store.read()) as Awaited<ReturnType<S['read']>> | null;
    this.identity = identity;
    this.value = value;
    return value;
  }
}

/**
 * Synchronous on purpose: a stat of a file whose inode is cached takes microseconds, while the
 * asynchronous one is a round trip through libuv's thread pool, which on a board whose cores are
 * busy downloading and hashing waits for a thread to be scheduled, once per record per poll.
 */
function fileIdentity(file: string): string | null {
  const s = statSync(file, { bigint: true, throwIfNoEntry: false });
  return s ? `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}` : null;
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
      if (record && (view.active === null || shownOver(name, record.seq, view.active, view.seq))) {
        view = { seq: record.seq, status: record.status, active: name, records };
      }
    }
    return view;
  }
}
