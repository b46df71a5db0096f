import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fsp, constants } from 'node:fs';
import type { Logger } from '../../shared/log.js';
import type { Units } from './units.js';

export const GUI_UNIT = 'ota-gui.service';
export const GUI_BINARY = '/opt/tope/ota-gui';

/** An ota-gui start under way: what the installer waits for before it may end. */
export interface GuiLaunch {
  /** Resolves once the start was asked for (or found nothing to start); never rejects. */
  asked: Promise<void>;
  /**
   * Whether the start is still being asked for, or the binary started here, or anything it
   * started in its process group (a launcher that backgrounds the GUI), still runs: they are in
   * the installer's unit, whose end kills them. A GUI that leaves the group (setsid, a daemon) is
   * not seen: a printer ships ota-gui.service.
   */
  running: () => boolean;
}

/**
 * Starts ota-gui at install start when it exists: the unit if there is one, else the binary.
 * The install never waits for it, and its absence or failure never touches the install; the
 * installer's process waits for the start to be asked for before it ends (an install refused at
 * its first check ends within ~50 ms, before `systemctl start` would have run).
 */
export function startGui(units: Units, hostPath: (p: string) => string, log: Logger): GuiLaunch {
  let child: ChildProcess | null = null;
  const asked = (async () => {
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
    child = spawn(bin, [], { detached: true, stdio: 'ignore' });
    child.on('error', (e) => log.warn({ err: e.message }, 'ota-gui failed to start'));
    child.unref();
    log.info({ bin }, 'ota-gui started');
  })().catch((e) => log.warn({ err: (e as Error).message }, 'ota-gui failed to start'));
  let askedYet = false;
  void asked.then(() => (askedYet = true));
  // a start still being asked for counts as running: what it starts is not known yet
  return { asked, running: () => !askedYet || (child?.pid !== undefined && groupAlive(child.pid)) };
}

/** Whether any process is left in the group `leader` started (detached, it leads its own). */
function groupAlive(leader: number): boolean {
  try {
    process.kill(-leader, 0);
    return true;
  } catch (e) {
    // EPERM: there is one, of another user
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The ota-gui starts of one installer process: what it waits for before it may end (every start
 * asked for) and what would keep it up (a binary it started, still running in its unit).
 */
export class OtaGui {
  private launches: GuiLaunch[] = [];

  constructor(private readonly launch: () => GuiLaunch) {}

  /** At install start. */
  start(): void {
    this.launches.push(this.launch());
  }

  /** Resolves once every start so far was asked for (bounded by the systemctl calls' timeouts). */
  async asked(): Promise<void> {
    await Promise.all(this.launches.map((l) => l.asked));
  }

  /** Whether a binary one of these starts ran (or its process group) still runs. */
  holdsBinary(): boolean {
    this.launches = this.launches.filter((l) => l.running());
    return this.launches.length > 0;
  }
}
