import { promises as fsp } from 'node:fs';
import { BusyMarker } from './busy-marker.js';
import type { Config } from './config.js';
import { degradedWorker, loadConfigOrServeDegraded } from './degraded.js';
import { DurableJson, sweepTemps } from './durable-store.js';
import { IdleExit } from './idle-exit.js';
import { listen } from './listen.js';
import { createLogger, type Logger } from './log.js';
import { Notifier } from './notify.js';
import { createCommandServer, type Command, type Reply } from './protocol.js';
import { Reporter } from './reporter.js';
import { exitAtOnceStages } from './stages.js';
import type { Stage } from './status.js';
import { StatusPublisher, type Superseded } from './status-publisher.js';
import { recordPathOf, shownOver, socketOf, workerNames, workers, type WorkerName } from './workers.js';

/** What the bootstrap hands a worker's wiring. */
export interface WorkerContext {
  config: Config;
  log: Logger;
  /** Its state directory, created, with the temp files of a killed run swept. */
  stateDir: string;
  /** Its own record, which the gateway reads. */
  recordPath: string;
  /** Where each status goes once decided: device-api, and the busy marker the path unit watches. */
  publisher: StatusPublisher;
  /** STATUS= for `systemctl status`. */
  notify: (text: string) => void;
  /** Whether another worker has recorded a newer command than this one's `seq` (shownOver). */
  superseded: Superseded;
}

/** What a worker's wiring hands back. */
export interface WorkerProcess {
  /** The recovery action of whatever it had persisted, run before it takes commands. */
  recover: () => Promise<void>;
  stage: () => Stage;
  handle: (command: Command) => Promise<Reply>;
  /** What SIGTERM waits for before the process exits. */
  stop: () => Promise<void>;
  /** Whether work is under way (an idle exit waits for it to end). */
  busy: () => boolean;
  /** Resolves when the work under way, if any, has ended (its last status written and reported). */
  settled: () => Promise<void>;
  /**
   * Whether something the work started still runs inside this process's unit (the ota-gui binary
   * the installer starts when the printer has no ota-gui unit): systemd would kill it with the
   * process, so the process keeps its idle period.
   */
  holdsChildren: () => boolean;
}

/**
 * A worker process from start to exit: configuration, logger, state directory, status publisher,
 * the watchdog's pings, then the worker's own wiring (`build`), its recovery, its command socket
 * (inherited from systemd or its own path), READY=1, the idle exit and a clean SIGTERM.
 */
export async function runWorker(
  name: WorkerName,
  build: (context: WorkerContext) => Promise<WorkerProcess>,
): Promise<void> {
  const config = await loadConfigOrServeDegraded(name, degradedWorker);
  const log = createLogger(name, config.TOPE_LOG_LEVEL);
  const stateDir = workers[name].stateDir(config);
  await fsp.mkdir(stateDir, { recursive: true, mode: 0o750 });
  await sweepTemps(stateDir);
  const reporter = new Reporter(config.TOPE_DEVICE_API_URL, config.TOPE_REPORT_TIMEOUT_MS, log);
  const superseded = supersededCheck(name, config, log);
  const publisher = await StatusPublisher.open(new BusyMarker(stateDir), reporter, log, superseded);
  const notifier = new Notifier(log);
  notifier.startWatchdog();
  const worker = await build({
    config,
    log,
    stateDir,
    publisher,
    recordPath: recordPathOf(name, config),
    notify: (text) => notifier.status(text),
    superseded,
  });
  await worker.recover();
  await serveCommands(name, worker, {
    log,
    reporter,
    notifier,
    idleMs: config.TOPE_IDLE_EXIT_MS,
    socketPath: socketOf(name, config),
  });
}

/**
 * Reads the other workers' records (each one's group can read the other's state directory) and
 * applies the gateway's rule. A record it cannot read counts as not newer: the worker then acts on
 * its own record, as it did before this check existed.
 */
function supersededCheck(name: WorkerName, config: Config, log: Logger): Superseded {
  const others = workerNames
    .filter((other) => other !== name)
    .map((other) => ({ other, store: new DurableJson(recordPathOf(other, config), workers[other].recordSchema) }));
  return async (seq) => {
    for (const { other, store } of others) {
      const record = await store.read().catch((e: unknown) => {
        log.warn({ err: (e as Error).message, worker: other }, "cannot read another worker's record");
        return null;
      });
      if (record && shownOver(other, record.seq, name, seq)) return true;
    }
    return false;
  };
}

interface ServeDeps {
  log: Logger;
  reporter: Reporter;
  notifier: Notifier;
  idleMs: number;
  socketPath: string;
}

async function serveCommands(name: WorkerName, worker: WorkerProcess, deps: ServeDeps): Promise<void> {
  const { log, reporter, notifier } = deps;
  // One command at a time: a worker's checks (is one running?) and the write that starts it must
  // not interleave with the next command's. A gateway that gave up on a worker still starting
  // and was asked again queues copies of one command, which arrive together at its start.
  let turn: Promise<unknown> = Promise.resolve();
  const server = createCommandServer(
    (command) => {
      // in flight from now, not only while its connection is open: a command queued behind work
      // that is ending must not see the process exit under it (its sender may have given up)
      idle.begin();
      const reply = turn
        .then(async () => {
          log.info({ command: command.type, seq: command.seq }, 'command received');
          const answer = await worker.handle(command);
          exitWhenWorkEnds();
          return answer;
        })
        .finally(() => idle.end());
      turn = reply.catch(() => undefined);
      return reply;
    },
    (e) => log.error({ err: e }, 'command connection failed'),
  );
  // all of it set up before listening: a command read while listen() still awaits (the socket's
  // chmod, when not socket-activated) finds the idle exit there
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    server.close();
    await worker.stop();
    await reporter.close();
    await notifier.idle();
    process.exit(0);
  };
  // socket-activated, an idle worker ends: systemd starts it again at the next command, and
  // work left unfinished has its busy marker, which the path unit watches
  const idle = new IdleExit(
    deps.idleMs,
    async () => worker.busy(),
    () => void shutdown('idle'),
  );
  /**
   * A command, or the recovery, that started work: when that work ends, the process ends at once
   * if it ended in a stage that allows it (shared/stages.ts) and left nothing running, else a whole
   * idle period later (see IdleExit).
   */
  function exitWhenWorkEnds(): void {
    if (!worker.busy()) return;
    const ended = () => {
      const succeeded = exitAtOnceStages.has(worker.stage());
      const held = succeeded && worker.holdsChildren();
      if (held)
        log.info(
          { idleMs: deps.idleMs },
          'a process the work started still runs in this unit: ending after the idle period',
        );
      idle.workEnded(succeeded && !held);
    };
    void worker.settled().then(ended, ended);
  }
  server.on('connection', (socket) => {
    idle.begin();
    socket.on('close', () => idle.end());
  });
  const where = await listen(server, { socketPath: deps.socketPath, mode: 0o660 });
  // the CPU and Node it runs on, for a field report (the same build runs on x64 and arm64 boards)
  log.info({ where, stage: worker.stage(), arch: process.arch, node: process.version }, `${name} ready`);
  notifier.ready(`Ready: ${worker.stage()}`);
  exitWhenWorkEnds();
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}
