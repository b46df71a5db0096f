import path from 'node:path';
import http from 'node:http';
// inlined by the bundler: the bundle runs from dist/bundle/, without the tree around it
import packageJson from '../../package.json' with { type: 'json' };
import { loadConfigOrServeDegraded } from '../../shared/degraded.js';
import { degradedGateway } from './degraded.js';
import { createLogger } from '../../shared/log.js';
import { listen } from '../../shared/listen.js';
import { Notifier } from '../../shared/notify.js';
import { sendCommand } from '../../shared/protocol.js';
import { busyStages } from '../../shared/status.js';
import { createApp } from './app.js';
import { IdleExit } from '../../shared/idle-exit.js';
import { recordPaths, socketOf } from '../../shared/workers.js';
import { StatusLine } from './status-line.js';
import { StatusView } from './status-view.js';
import { ProgressAnswer, progressFirst } from './progress-answer.js';
import { limitConnections, serverOptions } from './connection-limits.js';
import { guardRequests } from './request-guard.js';

const config = await loadConfigOrServeDegraded('api-gateway', degradedGateway);
const log = createLogger('api-gateway', config.TOPE_LOG_LEVEL);
const { version } = packageJson;
const view = new StatusView(recordPaths(config));
const progress = new ProgressAnswer(() => view.read());
const notifier = new Notifier(log);
notifier.startWatchdog();

const app = createApp({
  log,
  version,
  allowHttp: config.TOPE_ALLOW_HTTP,
  trustWindowMs: config.TOPE_TRUST_WINDOW_MS,
  readView: () => view.read(),
  progress,
  sendTo: (worker, command) =>
    sendCommand(socketOf(worker, config), command, {
      connectGraceMs: config.TOPE_WORKER_CONNECT_GRACE_MS,
      onWait: (why) => log.debug({ worker, why }, 'waiting for the worker to listen'),
    }),
});
const limits = { headersTimeoutMs: config.TOPE_API_HEADERS_TIMEOUT_MS, bodyTimeoutMs: config.TOPE_API_BODY_TIMEOUT_MS };
const server = http.createServer(serverOptions(limits)).on(
  'request',
  guardRequests(progressFirst(app.attach, progress), {
    hostNames: [config.TOPE_LISTEN_HOST, ...config.TOPE_API_HOST_NAMES],
    log,
  }),
);
limitConnections(server, { ...limits, maxConnections: config.TOPE_API_MAX_CONNECTIONS, log });
const where = await listen(server, { host: config.TOPE_LISTEN_HOST, port: config.TOPE_LISTEN_PORT });
log.info({ where, version, arch: process.arch, node: process.version }, 'api-gateway ready');
const statusLine = new StatusLine(
  notifier,
  path.join(config.TOPE_ROOT_PREFIX, config.TOPE_VERSIONS_DIR, 'current'),
  () => view.read(),
);
await statusLine.ready();

const stop = async (why: string) => {
  log.info({ why }, 'stopping');
  server.close();
  server.closeIdleConnections();
  await notifier.idle();
  process.exit(0);
};
const idle = new IdleExit(
  config.TOPE_IDLE_EXIT_MS,
  async () => busyStages.has((await view.read()).status.stage),
  () => void stop('idle'),
);
server.on('request', (_req, res) => {
  idle.begin();
  res.on('close', () => {
    idle.end();
    statusLine.refresh().catch((e: Error) => log.warn({ err: e.message }, 'status line not refreshed'));
  });
});
process.on('SIGTERM', () => void stop('SIGTERM'));
process.on('SIGINT', () => void stop('SIGINT'));
