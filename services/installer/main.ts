import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { loadConfigOrExit } from '../../shared/config.js';
import { DurableJson, sweepTemps } from '../../shared/durable-store.js';
import { createLogger } from '../../shared/log.js';
import { listen } from '../../shared/listen.js';
import { Notifier } from '../../shared/notify.js';
import { createCommandServer } from '../../shared/protocol.js';
import { Reporter } from '../../shared/reporter.js';
import { FETCHER_RECORD, fetcherRecordSchema, INSTALLER_RECORD } from '../../shared/worker-records.js';
import { Installer } from './installer.js';
import { installerStateSchema } from './journal.js';
import { startGui } from './ota-gui.js';
import { Units } from './units.js';
import { VersionStore } from './versions.js';

const config = loadConfigOrExit();
const log = createLogger('installer', config.TOPE_LOG_LEVEL);
const hostPath = (p: string) => path.join(config.TOPE_ROOT_PREFIX, p);
const stateDir = config.TOPE_INSTALLER_STATE_DIR;
await fsp.mkdir(stateDir, { recursive: true, mode: 0o750 });
await sweepTemps(stateDir);
const versions = new VersionStore(hostPath(config.TOPE_VERSIONS_DIR));
await fsp.mkdir(versions.dir, { recursive: true, mode: 0o755 });

const reporter = new Reporter(config.TOPE_DEVICE_API_URL, config.TOPE_REPORT_TIMEOUT_MS, log);
const notifier = new Notifier(log);
const units = new Units(config.TOPE_SYSTEMCTL, {
  stopMs: config.TOPE_UNIT_STOP_TIMEOUT_MS, startMs: config.TOPE_UNIT_START_TIMEOUT_MS, probationMs: config.TOPE_PROBATION_MS,
});
const installer = new Installer({
  config, log, versions, units, hostPath,
  store: new DurableJson(path.join(stateDir, INSTALLER_RECORD), installerStateSchema),
  fetcherStore: new DurableJson(path.join(config.TOPE_FETCHER_STATE_DIR, FETCHER_RECORD), fetcherRecordSchema),
  workDir: path.join(stateDir, 'work'),
  report: (s) => reporter.report(s),
  notify: (t) => notifier.status(t),
  startGui: () => startGui(units, hostPath, log),
});
await installer.recover();

const server = createCommandServer(async (command) => {
  log.info({ command: command.type, seq: command.seq }, 'command received');
  return installer.handle(command);
}, (e) => log.error({ err: e }, 'command connection failed'));
const where = await listen(server, { socketPath: config.TOPE_INSTALLER_SOCKET, mode: 0o660 });
log.info({ where, stage: installer.current.status.stage }, 'installer ready');
notifier.ready(`Ready: ${installer.current.status.stage}`);

// An install is not interrupted on purpose: SIGTERM waits for it (systemd's TimeoutStopSec bounds the wait).
let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, 'stopping after the install under way, if any');
  server.close();
  await installer.settled();
  await reporter.close();
  await notifier.idle();
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
