import type http from 'node:http';
import type net from 'node:net';
import { ConfigError, loadConfig, settingOrDefault, type Config } from './config.js';
import { createLogger, type Logger } from './log.js';
import { hasInheritedSocket, listen } from './listen.js';
import { Notifier } from './notify.js';
import { createCommandServer, refuse } from './protocol.js';
import { workers, type WorkerName } from './workers.js';

/** A process of the updater: the gateway or one of the workers (shared/workers.ts). */
export type Role = 'api-gateway' | WorkerName;

/** What a process with a bad configuration serves: every answer carries `error` ("CONFIG_INVALID: ..."). */
export type DegradedServer = (error: string) => net.Server;

/**
 * A bad configuration must be loud and must heal. Exiting (EX_CONFIG) on each start made every
 * connection to a socket unit start a process that died, until systemd's start limit closed the
 * socket for good. Instead the process stays up answering CONFIG_INVALID (naming the variables),
 * logs it as JSON and in STATUS=; socket-activated, it ends after TOPE_CONFIG_RECHECK_MS with
 * nothing in flight (status 0), so the next connection, or the path unit, starts it again with
 * the environment file read anew: a corrected file takes effect within that time. Started any
 * other way, nothing would start it again: it keeps answering until stopped.
 */
export async function loadConfigOrServeDegraded(
  role: Role,
  serve: DegradedServer,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Config> {
  try {
    return loadConfig(env, role);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    await serveDegraded(role, e, serve, env);
    return new Promise<never>(() => undefined); // the process ends in serveDegraded's exit
  }
}

/** A worker's degraded command server: every command is refused with the configuration error. */
export const degradedWorker: DegradedServer = (error) =>
  createCommandServer(
    async () => refuse('CONFIG_INVALID', error.replace(/^CONFIG_INVALID: /, '')),
    () => undefined,
  );

const fallbackAddress = (role: Role, env: NodeJS.ProcessEnv) =>
  role === 'api-gateway'
    ? { host: settingOrDefault('TOPE_LISTEN_HOST', env), port: settingOrDefault('TOPE_LISTEN_PORT', env) }
    : { socketPath: settingOrDefault(workers[role].socketSetting, env), mode: 0o660 };

async function serveDegraded(role: Role, e: ConfigError, serve: DegradedServer, env: NodeJS.ProcessEnv): Promise<void> {
  const error = `CONFIG_INVALID: ${e.message}`;
  const log = createLogger(role, settingOrDefault('TOPE_LOG_LEVEL', env));
  log.error({ code: 'CONFIG_INVALID', variables: e.variables, err: error }, 'configuration invalid');
  const server = serve(error);
  const where = await listen(server, fallbackAddress(role, env));
  const recheckMs = settingOrDefault('TOPE_CONFIG_RECHECK_MS', env);
  const notifier = new Notifier(log, env);
  notifier.ready(`Configuration invalid (${e.variables.join(', ')}): answering CONFIG_INVALID`);
  log.info({ where, recheckMs }, `${role} serving the configuration error`);
  const stop = (why: string) => void end(log, server, notifier, why);
  if (hasInheritedSocket(env)) setTimeout(() => stop('read the configuration again'), recheckMs);
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

async function end(log: Logger, server: net.Server, notifier: Notifier, why: string): Promise<void> {
  log.info({ why }, 'stopping');
  // no new connections; those in flight finish (systemd queues the next ones for the next start)
  const closed = new Promise((ok) => server.close(ok));
  (server as http.Server).closeIdleConnections?.();
  await closed;
  await notifier.idle();
  process.exit(0);
}
