import net from 'node:net';
import * as z from './schema.js';
import { storedJobSchema, versionSchema } from './package-job.js';
import { errorCodes, isErrnoException, UpdaterError, type ErrorCode } from './errors.js';

// Commands from the gateway to the workers: one JSON line each way per connection, over the
// worker's Unix-domain socket. Both ends validate with these schemas.

export const commandSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('download'), seq: z.number().check(z.int(), z.minimum(1)), job: storedJobSchema }),
  z.object({
    type: z.literal('discard'),
    seq: z.number().check(z.int(), z.minimum(1)),
    reason: z.string().check(z.maxLength(200)),
  }),
  z.object({ type: z.literal('install'), seq: z.number().check(z.int(), z.minimum(1)), version: versionSchema }),
]);
export type Command = z.infer<typeof commandSchema>;

export const replySchema = z.discriminatedUnion('ok', [
  z.object({ ok: z.literal(true) }),
  z.object({ ok: z.literal(false), code: z.enum(errorCodes), message: z.string() }),
]);
export type Reply = z.infer<typeof replySchema>;

const MAX_LINE = 64 * 1024;

function readLine(socket: net.Socket, onLine: (line: string) => void, onTooLong: () => void): void {
  let buf = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    buf += chunk;
    const nl = buf.indexOf('\n');
    if (nl >= 0) {
      socket.removeAllListeners('data');
      onLine(buf.slice(0, nl));
    } else if (buf.length > MAX_LINE) {
      socket.removeAllListeners('data');
      onTooLong();
    }
  });
}

export interface SendOptions {
  /** No reply within this is SERVICE_UNAVAILABLE. */
  timeoutMs?: number;
  /** How long to try again while the worker's socket takes no connection (a worker restarting). */
  connectGraceMs?: number;
  /** Between two connection attempts. */
  retryEveryMs?: number;
  /** Told each time an attempt found no one listening and another will follow. */
  onWait?: (why: string) => void;
}

// Only a connection that never opened is tried again: the command was not sent, so it cannot have
// been taken twice. A worker between two lives (its unit restarting, `make run` starting it again
// after a crash) has no socket file (ENOENT) or a file no one listens on (ECONNREFUSED) for a
// moment; under systemd the socket unit holds the socket, and this never waits.
const NOT_LISTENING = ['ENOENT', 'ECONNREFUSED'];

/** Sends one command and waits for its reply; an unreachable worker is SERVICE_UNAVAILABLE. */
export async function sendCommand(
  socketPath: string,
  command: Command,
  { timeoutMs = 10_000, connectGraceMs = 0, retryEveryMs = 50, onWait }: SendOptions = {},
): Promise<Reply> {
  const giveUpAt = Date.now() + connectGraceMs;
  for (;;) {
    try {
      return await sendOnce(socketPath, command, timeoutMs);
    } catch (e) {
      if (!(e instanceof NotListening) || Date.now() + retryEveryMs > giveUpAt) {
        throw e instanceof NotListening ? e.unavailable : e;
      }
      onWait?.(e.message);
      await new Promise((wake) => setTimeout(wake, retryEveryMs));
    }
  }
}

class NotListening extends Error {
  constructor(readonly unavailable: UpdaterError) {
    super(unavailable.message);
  }
}

function sendOnce(socketPath: string, command: Command, timeoutMs: number): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(socketPath);
    let opened = false;
    const fail = (e: Error) => {
      socket.destroy();
      reject(e);
    };
    socket.setTimeout(timeoutMs, () =>
      fail(new UpdaterError('SERVICE_UNAVAILABLE', `no reply from ${socketPath} within ${timeoutMs} ms`)),
    );
    socket.on('error', (e) => {
      if (isErrnoException(e) && ['ENOENT', 'ECONNREFUSED', 'EACCES', 'ECONNRESET', 'EPIPE'].includes(e.code!)) {
        const unavailable = new UpdaterError('SERVICE_UNAVAILABLE', `cannot reach ${socketPath}: ${e.code}`);
        fail(!opened && NOT_LISTENING.includes(e.code!) ? new NotListening(unavailable) : unavailable);
      } else fail(e);
    });
    socket.on('connect', () => {
      opened = true;
      socket.write(`${JSON.stringify(commandSchema.parse(command))}\n`);
    });
    readLine(
      socket,
      (line) => {
        socket.end();
        try {
          resolve(replySchema.parse(JSON.parse(line)));
        } catch {
          reject(new UpdaterError('SERVICE_UNAVAILABLE', `malformed reply from ${socketPath}`));
        }
      },
      () => fail(new UpdaterError('SERVICE_UNAVAILABLE', `oversized reply from ${socketPath}`)),
    );
    socket.on('end', () => fail(new UpdaterError('SERVICE_UNAVAILABLE', `${socketPath} closed without a reply`)));
  });
}

export const refuse = (code: ErrorCode, message: string): Reply => ({ ok: false, code, message });

/** A worker's command server: each connection carries one command and gets one reply. */
export function createCommandServer(
  handle: (command: Command) => Promise<Reply>,
  onError: (e: unknown) => void,
): net.Server {
  return net.createServer((socket) => {
    socket.on('error', onError);
    const answer = (reply: Reply) => socket.end(`${JSON.stringify(reply)}\n`);
    readLine(
      socket,
      (line) => {
        let command: Command;
        try {
          command = commandSchema.parse(JSON.parse(line));
        } catch (e) {
          answer(refuse('VALIDATION_ERROR', e instanceof z.$ZodError ? 'malformed command' : 'command is not JSON'));
          return;
        }
        handle(command).then(answer, (e: unknown) => {
          onError(e);
          answer(e instanceof UpdaterError ? refuse(e.code, e.message) : refuse('INTERNAL_ERROR', 'command failed'));
        });
      },
      () => answer(refuse('VALIDATION_ERROR', 'command too long')),
    );
  });
}
