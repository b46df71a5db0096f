import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { DurableJson } from '../../shared/durable-store.js';
import { runWorker } from '../../shared/worker-main.js';
import { fetcherRecordSchema, PACKAGES_DIR } from '../../shared/worker-records.js';
import { recordPathOf, workers } from '../../shared/workers.js';
import { trustSettings } from '../../shared/trust/package-trust.js';
import { SecurityFloor } from '../../shared/trust/security-floor.js';
import { Installer } from './installer.js';
import { installerStateSchema } from './journal.js';
import { OtaGui, startGui } from './ota-gui.js';
import { PostCmdRunner } from './post-cmds.js';
import { Units } from './units.js';
import { VersionStore } from './versions.js';

await runWorker('installer', async ({ config, log, stateDir, recordPath, publisher, notify }) => {
  const hostPath = (devicePath: string) => path.join(config.TOPE_ROOT_PREFIX, devicePath);
  const versions = new VersionStore(hostPath(config.TOPE_VERSIONS_DIR));
  await fsp.mkdir(versions.dir, { recursive: true, mode: 0o755 });
  const units = new Units(config.TOPE_SYSTEMCTL, {
    stopMs: config.TOPE_UNIT_STOP_TIMEOUT_MS,
    startMs: config.TOPE_UNIT_START_TIMEOUT_MS,
    probationMs: config.TOPE_PROBATION_MS,
  });
  const postCmds = new PostCmdRunner(
    { sandbox: config.TOPE_POST_CMD_SANDBOX, systemdRun: config.TOPE_SYSTEMD_RUN, systemctl: config.TOPE_SYSTEMCTL },
    log,
  );
  postCmds.logChoice();
  const floor = new SecurityFloor(stateDir);
  const gui = new OtaGui(() => startGui(units, hostPath, log));
  const installer = new Installer({
    config,
    log,
    versions,
    units,
    postCmds,
    hostPath,
    notify,
    trust: trustSettings(config, () => floor.current(), log),
    floor,
    store: new DurableJson(recordPath, installerStateSchema),
    fetcherStore: new DurableJson(recordPathOf('fetcher', config), fetcherRecordSchema),
    workDir: path.join(stateDir, 'work'),
    packagesDir: path.join(workers.fetcher.stateDir(config), PACKAGES_DIR),
    publisher,
    gui,
  });
  return {
    recover: async () => {
      await postCmds.stopLeftovers();
      await installer.recover();
    },
    stage: () => installer.current.status.stage,
    handle: (command) => installer.handle(command),
    // an install is not cut on purpose: SIGTERM waits for it (TimeoutStopSec bounds the wait)
    stop: () => installer.settled(),
    busy: () => installer.busy,
    settled: () => installer.settled(),
    holdsChildren: () => gui.holdsBinary(),
  };
});
