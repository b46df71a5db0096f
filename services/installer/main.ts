import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { degradedWorker, loadConfigOrServeDegraded } from '../../shared/degraded.js';
import { BusyMarker } from '../../shared/busy-marker.js';
import { DurableJson, sweepTemps } from '../../shared/durable-store.js';
import { createLogger } from '../../shared/log.js';
import { Notifier } from '../../shared/notify.js';
import { Reporter } from '../../shared/reporter.js';
import { StatusPublisher } from '../../shared/status-publisher.js';
import { serveWorker } from '../../shared/worker-server.js';
import { FETCHER_RECORD, fetcherRecordSchema, INSTALLER_RECORD } from '../../shared/worker-records.js';
import { Installer } from './installer.js';
import { installerStateSchema } from './journal.js';
import { startGui } from './ota-gui.js';
import { Units } from './units.js';
import { VersionStore } from './versions.js';

const config = await loadConfigOrServeDegraded('installer', degradedWorker);
const log = createLogger('installer', config.TOPE_LOG_LEVEL);
const hostPath = (p: string) => path.join(config.TOPE_ROOT_PREFIX, p);
const stateDir = config.TOPE_INSTALLER_STATE_DIR;
await fsp.mkdir(stateDir, { recursive: true, mode: 0o750 });
await sweepTemps(stateDir);
const versions = new VersionStore(hostPath(config.TOPE_VERSIONS_DIR));
await fsp.mkdir(versions.dir, { recursive: true, mode: 0o755 });

const marker = new BusyMarker(stateDir);
const reporter = new Reporter(config.TOPE_DEVICE_API_URL, config.TOPE_REPORT_TIMEOUT_MS, log);
const status = await StatusPublisher.open(marker, reporter, log);
const notifier = new Notifier(log);
const units = new Units(config.TOPE_SYSTEMCTL, {
  stopMs: config.TOPE_UNIT_STOP_TIMEOUT_MS, startMs: config.TOPE_UNIT_START_TIMEOUT_MS, probationMs: config.TOPE_PROBATION_MS,
});
const installer = new Installer({
  config, log, versions, units, hostPath,
  store: new DurableJson(path.join(stateDir, INSTALLER_RECORD), installerStateSchema),
  fetcherStore: new DurableJson(path.join(config.TOPE_FETCHER_STATE_DIR, FETCHER_RECORD), fetcherRecordSchema),
  workDir: path.join(stateDir, 'work'),
  status,
  notify: (t) => notifier.status(t),
  startGui: () => startGui(units, hostPath, log),
});
await installer.recover();

await serveWorker({
  name: 'installer', socketPath: config.TOPE_INSTALLER_SOCKET,
  stage: () => installer.current.status.stage,
  handle: (c) => installer.handle(c),
  // an install is not cut on purpose: SIGTERM waits for it (TimeoutStopSec bounds the wait)
  stop: () => installer.settled(),
  busy: () => installer.busy,
}, log, reporter, notifier, config.TOPE_IDLE_EXIT_MS);
