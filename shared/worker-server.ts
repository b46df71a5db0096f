import type { Logger } from './log.js';
import { IdleExit } from './idle-exit.js';
import { listen } from './listen.js';
import type { Notifier } from './notify.js';
import { createCommandServer, type Command, type Reply } from './protocol.js';
import type { Reporter } from './reporter.js';

export interface Worker {
  name: string;
  socketPath: string;
  stage: () => string;
  handle: (command: Command) => Promise<Reply>;
  /** What SIGTERM waits for before the process exits. */
  stop: () => Promise<void>;
  /** Whether work is under way (an idle exit waits for it to end). */
  busy: () => boolean;
}

/** A worker's command socket (inherited from systemd or its own), READY=1, and a clean SIGTERM. */
export async function serveWorker(w: Worker, log: Logger, reporter: Reporter, notifier: Notifier, idleMs = 0): Promise<void> {
  // One command at a time: a worker's checks (is one running?) and the write that starts it must
  // not interleave with the next command's. A gateway that gave up on a worker still starting
  // and was asked again queues copies of one command, which arrive together at its start.
  let turn: Promise<unknown> = Promise.resolve();
  const server = createCommandServer((command) => {
    const reply = turn.then(() => {
      log.info({ command: command.type, seq: command.seq }, 'command received');
      return w.handle(command);
    });
    turn = reply.catch(() => undefined);
    return reply;
  }, (e) => log.error({ err: e }, 'command connection failed'));
  const where = await listen(server, { socketPath: w.socketPath, mode: 0o660 });
  log.info({ where, stage: w.stage() }, `${w.name} ready`);
  notifier.ready(`Ready: ${w.stage()}`);

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    server.close();
    await w.stop();
    await reporter.close();
    await notifier.idle();
    process.exit(0);
  };
  // socket-activated, an idle worker ends: systemd starts it again at the next command, and
  // work left unfinished has its busy marker, which the path unit watches
  const idle = new IdleExit(idleMs, async () => w.busy(), () => void shutdown('idle'));
  server.on('connection', (socket) => {
    idle.begin();
    socket.on('close', () => idle.end());
  });
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}
