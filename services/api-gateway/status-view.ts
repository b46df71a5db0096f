import { DurableJson } from '../../shared/durable-store.js';
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

export class StatusView {
  private readonly stores: RecordStores;

  constructor(recordPaths: Record<WorkerName, string>) {
    this.stores = Object.fromEntries(
      workerNames.map((name) => [name, new DurableJson(recordPaths[name], workers[name].recordSchema)]),
    ) as unknown as RecordStores;
  }

  /**
   * The status shown is that of the record with the higher command sequence number (the gateway
   * hands one out with each command, so "who spoke last" needs no shared writer and no clock); on
   * a tie, the worker listed first in the workers table.
   */
  async read(): Promise<View> {
    const read = await Promise.all(workerNames.map(async (name) => [name, await this.stores[name].read()] as const));
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
