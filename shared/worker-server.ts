import type { Logger } from './log.js';
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
}

/** A worker's command socket (inherited from systemd or its own), READY=1, and a clean SIGTERM. */
export async function serveWorker(w: Worker, log: Logger, reporter: Reporter, notifier: Notifier): Promise<void> {
  const server = createCommandServer(async (command) => {
    log.info({ command: command.type, seq: command.seq }, 'command received');
    return w.handle(command);
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
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}
