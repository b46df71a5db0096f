import { spawn } from 'node:child_process';
import { promises as fsp, constants } from 'node:fs';
import type { Logger } from '../../shared/log.js';
import type { Units } from './units.js';

export const GUI_UNIT = 'ota-gui.service';
export const GUI_BINARY = '/opt/tope/ota-gui';

/**
 * Starts ota-gui at install start when it exists: the unit if there is one, else the binary.
 * Never waited for, and its absence or failure never touches the install.
 */
export function startGui(units: Units, hostPath: (p: string) => string, log: Logger): void {
  void (async () => {
    if (await units.exists(GUI_UNIT)) {
      await units.startNoBlock(GUI_UNIT);
      log.info({ unit: GUI_UNIT }, 'ota-gui started');
      return;
    }
    const bin = hostPath(GUI_BINARY);
    if (
      !(await fsp.access(bin, constants.X_OK).then(
        () => true,
        () => false,
      ))
    )
      return;
    const child = spawn(bin, [], { detached: true, stdio: 'ignore' });
    child.on('error', (e) => log.warn({ err: e.message }, 'ota-gui failed to start'));
    child.unref();
    log.info({ bin }, 'ota-gui started');
  })().catch((e) => log.warn({ err: (e as Error).message }, 'ota-gui failed to start'));
}
