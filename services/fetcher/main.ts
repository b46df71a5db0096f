import { randomUUID } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { Agent } from 'undici';
import { loadConfigOrExit } from '../../shared/config.js';
import { BusyMarker } from '../../shared/busy-marker.js';
import { DurableJson, sweepTemps } from '../../shared/durable-store.js';
import { createLogger } from '../../shared/log.js';
import { Notifier } from '../../shared/notify.js';
import { Reporter } from '../../shared/reporter.js';
import { StatusPublisher } from '../../shared/status-publisher.js';
import { serveWorker } from '../../shared/worker-server.js';
import { FETCHER_RECORD, fetcherRecordSchema } from '../../shared/worker-records.js';
import { Fetcher } from './fetcher.js';
import { AddressPolicy, checkedConnector } from './url-policy.js';

const config = loadConfigOrExit();
const log = createLogger('fetcher', config.TOPE_LOG_LEVEL);
const stateDir = config.TOPE_FETCHER_STATE_DIR;
const packagesDir = path.join(stateDir, 'packages');
await fsp.mkdir(packagesDir, { recursive: true, mode: 0o750 });
await sweepTemps(stateDir);

const marker = new BusyMarker(stateDir);
// Unreadable, every start counts as a reboot: only checkpointed bytes are trusted (the safe side).
const bootId = await fsp.readFile(config.TOPE_BOOT_ID_FILE, 'utf8').then((s) => s.trim(), (e: Error) => {
  log.warn({ err: e.message }, 'boot id unreadable; resuming from checkpoints only');
  return `unknown-${randomUUID()}`;
});
const reporter = new Reporter(config.TOPE_DEVICE_API_URL, config.TOPE_REPORT_TIMEOUT_MS, log);
const status = await StatusPublisher.open(marker, reporter, log);
const notifier = new Notifier(log);
const urlPolicy = new AddressPolicy({ allowedNets: config.TOPE_ALLOWED_URL_NETS, allowPrivate: config.TOPE_ALLOW_PRIVATE_URLS });
const dispatcher = new Agent({
  connect: checkedConnector(urlPolicy, { timeout: config.TOPE_HTTP_TIMEOUT_MS }),
  headersTimeout: config.TOPE_HTTP_TIMEOUT_MS,
  bodyTimeout: config.TOPE_HTTP_TIMEOUT_MS,
});
const fetcher = new Fetcher({
  config, log, packagesDir, dispatcher,
  store: new DurableJson(path.join(stateDir, FETCHER_RECORD), fetcherRecordSchema),
  status,
  notify: (t) => notifier.status(t),
  bootId: () => bootId,
});
await fetcher.recover();

await serveWorker({
  name: 'fetcher', socketPath: config.TOPE_FETCHER_SOCKET,
  stage: () => fetcher.current.status.stage,
  handle: (c) => fetcher.handle(c),
  stop: () => fetcher.stop(), // the download resumes at the next start
  busy: () => fetcher.busy,
}, log, reporter, notifier, config.TOPE_IDLE_EXIT_MS);
