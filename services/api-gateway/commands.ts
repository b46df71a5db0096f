import { expiredText, UpdaterError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import type { PackageJob } from '../../shared/package-job.js';
import type { Command, Reply } from '../../shared/protocol.js';
import type { WorkerName } from '../../shared/workers.js';
import { errorEnvelope, okEnvelope, stateErrorEnvelope, type Envelope } from './envelope.js';
import { decideDownload, decideUpdate, type Decision } from './rules.js';
import type { View } from './status-view.js';

/** Which worker carries out each command. */
export const workerFor: Record<Command['type'], WorkerName> = {
  download: 'fetcher',
  discard: 'fetcher',
  install: 'installer',
};

export interface CommandDeps {
  log: Logger;
  trustWindowMs: number;
  readView: () => Promise<View>;
  sendTo: (worker: WorkerName, command: Command) => Promise<Reply>;
  now: () => number;
}

/**
 * The command path. Commands are taken one at a time: each reads the workers' state, decides,
 * and has the worker persist the new stage (under the next sequence number) before its answer
 * is made, so a concurrent second command sees that stage and gets its 409. A worker's refusal
 * is thrown as its UpdaterError.
 */
export class CommandPath {
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: CommandDeps) {}

  download(job: PackageJob): Promise<Envelope> {
    return this.oneAtATime(async () => {
      const view = await this.deps.readView();
      const decision = decideDownload(view, job, this.deps.now(), this.deps.trustWindowMs);
      const stage = view.status.stage;
      this.deps.log.info(
        { route: 'download', version: job.version, stage, decision: decision.kind },
        'download requested',
      );
      return this.answer(decision, view, { type: 'download', seq: view.seq + 1, job });
    });
  }

  update(version: string): Promise<Envelope> {
    return this.oneAtATime(async () => {
      const view = await this.deps.readView();
      const decision = decideUpdate(view, version, this.deps.now(), this.deps.trustWindowMs);
      this.deps.log.info(
        { route: 'update', version, stage: view.status.stage, decision: decision.kind },
        'update requested',
      );
      const seq = view.seq + 1;
      const reason = `${expiredText(this.deps.trustWindowMs, version)} and was deleted`;
      return this.answer(decision, view, { type: 'install', seq, version }, { type: 'discard', seq, reason });
    });
  }

  private oneAtATime<T>(job: () => Promise<T>): Promise<T> {
    const run = this.chain.then(job, job);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** `onStart` is sent on a start; `onExpire`, if any, on an expiry, before the 410 reads the state again. */
  private async answer(decision: Decision, view: View, onStart: Command, onExpire?: Command): Promise<Envelope> {
    switch (decision.kind) {
      case 'reject':
        return decision.code === 409
          ? stateErrorEnvelope(decision.code, decision.error, decision.text, view.status)
          : errorEnvelope(decision.code, decision.error, decision.text);
      case 'expire': {
        if (onExpire) await this.forward(onExpire);
        const after = await this.deps.readView();
        return stateErrorEnvelope(410, 'PACKAGE_EXPIRED', expiredText(this.deps.trustWindowMs), after.status);
      }
      case 'start':
        await this.forward(onStart);
        return okEnvelope;
      case 'repeat':
        return okEnvelope;
      default:
        return decision satisfies never;
    }
  }

  private async forward(command: Command): Promise<void> {
    const reply = await this.deps.sendTo(workerFor[command.type], command);
    if (!reply.ok) throw new UpdaterError(reply.code, reply.message);
  }
}
