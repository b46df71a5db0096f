import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { UpdaterError, wireOf } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import {
  chooseSandbox,
  newPostCmdUnit,
  plainPath,
  POST_CMD_UNIT_PATTERN,
  POST_CMD_UNIT_PREFIX,
  postCmdEnvironment,
  systemdRunArgs,
  type PostCmdSandboxSetting,
  type SandboxChoice,
} from './post-cmd-sandbox.js';
import { systemdToolEnvironment } from './units.js';

const KEEP = 2000; // bytes of output kept for the error text
/** systemd's own limit on a post_cmd unit, past the installer's deadline: for a unit whose installer died. */
const UNIT_BACKSTOP_MS = 10_000;
/** A `systemctl stop` of a post_cmd unit (KillSignal=SIGKILL: nothing to wait for but the kernel). */
const UNIT_STOP_MS = 10_000;

export interface PostCmdSettings {
  sandbox: PostCmdSandboxSetting;
  systemdRun: string;
  systemctl: string;
}

/** What the package tells its post_cmds. */
export interface PostCmdVars {
  TOPE_VERSION: string;
  TOPE_VERSION_DIR: string;
}

/**
 * Runs post_cmds, each with /bin/sh in the new snapshot under a deadline, in the sandbox the
 * setting chose (see post-cmd-sandbox.ts), decided once for the process.
 */
export class PostCmdRunner {
  readonly choice: SandboxChoice;

  constructor(
    private readonly settings: PostCmdSettings,
    private readonly log: Logger,
    host?: { booted: boolean; root: boolean },
  ) {
    this.choice = chooseSandbox(settings.sandbox, host);
  }

  /** One line for the log at start: where post_cmds will run. */
  logChoice(): void {
    if ('refused' in this.choice) this.log.warn({ setting: this.settings.sandbox }, this.choice.refused);
    else if (this.choice.sandbox === 'none')
      this.log.warn({ sandbox: 'none' }, 'post_cmds run unsandboxed (TOPE_POST_CMD_SANDBOX=none)');
    else this.log.info({ sandbox: 'systemd' }, 'post_cmds run each in a sandboxed transient unit');
  }

  async run(cmd: string, dir: string, timeoutMs: number, vars: PostCmdVars): Promise<void> {
    if ('refused' in this.choice)
      throw new UpdaterError('POST_CMD_FAILED', `'${cmd}' was not run: ${this.choice.refused}`);
    const env = postCmdEnvironment({ ...vars });
    if (this.choice.sandbox === 'none')
      return runChild(cmd, '/bin/sh', ['-c', cmd], { cwd: dir, env }, timeoutMs, async (child) => killGroup(child));
    if (!plainPath(dir))
      throw new UpdaterError('POST_CMD_FAILED', `'${cmd}' was not run: ${dir} is not a plain path for a unit`);
    const unit = newPostCmdUnit();
    const description = `tope-updater post_cmd of ${vars.TOPE_VERSION}`;
    const args = systemdRunArgs(unit, cmd, dir, env, timeoutMs + UNIT_BACKSTOP_MS, description);
    this.log.info({ unit, cmd, dir }, 'post_cmd running in its own unit');
    try {
      // the client's own environment is cleaned too: nothing of ours reaches systemd-run either
      await runChild(cmd, this.settings.systemdRun, args, { cwd: '/', env: postCmdEnvironment({}) }, timeoutMs, (c) =>
        this.stopUnit(unit, c),
      );
    } catch (e) {
      this.log.warn({ unit, cmd, err: wireOf(e, 'POST_CMD_FAILED') }, 'post_cmd failed');
      throw e;
    }
  }

  /** At the deadline: the unit's whole cgroup dies, then the client, which would have ended anyway. */
  private async stopUnit(unit: string, client: ChildProcess): Promise<void> {
    const stopped = await systemctl(this.settings.systemctl, ['stop', '--', unit], UNIT_STOP_MS);
    if (!stopped.ok) this.log.error({ unit, err: stopped.stderr }, 'the timed-out post_cmd unit did not stop');
    killGroup(client);
  }

  /**
   * Before a recovery: a post_cmd unit the last installer process left running (it was killed
   * while waiting for it) would go on writing into a snapshot the recovery removes.
   */
  async stopLeftovers(): Promise<void> {
    if (!('sandbox' in this.choice) || this.choice.sandbox !== 'systemd') return;
    const { systemctl: file } = this.settings;
    const listed = await systemctl(
      file,
      ['list-units', '--all', '--plain', '--no-legend', '--', POST_CMD_UNIT_PATTERN],
      UNIT_STOP_MS,
    );
    const units = listed.stdout
      .split('\n')
      .map((line) => line.trim().split(/\s+/)[0])
      .filter((unit) => unit?.startsWith(POST_CMD_UNIT_PREFIX));
    if (!units.length) return;
    this.log.warn({ units }, 'stopping post_cmd units the last installer left running');
    const stopped = await systemctl(file, ['stop', '--', ...units], UNIT_STOP_MS);
    if (!stopped.ok) this.log.error({ units, err: stopped.stderr }, 'leftover post_cmd units did not stop');
  }
}

function systemctl(
  file: string,
  args: string[],
  timeoutMs: number,
): Promise<{ ok: boolean; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const options = { timeout: timeoutMs, killSignal: 'SIGKILL' as const, env: systemdToolEnvironment() };
    execFile(file, args, options, (err, stdout, stderr) =>
      resolve({ ok: !err, stdout: String(stdout), stderr: String(stderr).trim() || (err ? err.message : '') }),
    );
  });
}

function killGroup(child: ChildProcess): void {
  try {
    process.kill(-child.pid!, 'SIGKILL');
  } catch {
    // already gone
  }
}

/**
 * One child (the shell, or systemd-run waiting for the unit) with its output kept for the error;
 * at the deadline `onTimeout` kills whatever the command started, and the end is awaited.
 */
function runChild(
  cmd: string,
  file: string,
  args: string[],
  options: Pick<SpawnOptions, 'cwd' | 'env'>,
  timeoutMs: number,
  onTimeout: (child: ChildProcess) => Promise<void>,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { ...options, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (c: string) => {
      if (stdout.length < KEEP) stdout += c;
    });
    child.stderr!.setEncoding('utf8').on('data', (c: string) => {
      if (stderr.length < KEEP) stderr += c;
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      void onTimeout(child);
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new UpdaterError('POST_CMD_FAILED', `'${cmd}' could not run: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) return reject(new UpdaterError('POST_CMD_TIMEOUT', `'${cmd}' timed out after ${timeoutMs} ms`));
      if (code === 0) return resolve();
      const tail = [
        stderr.trim() && ` — ${stderr.trim().slice(0, KEEP)}`,
        stdout.trim() && ` | stdout: ${stdout.trim().slice(0, KEEP)}`,
      ].join('');
      reject(new UpdaterError('POST_CMD_FAILED', `'${cmd}' exited ${code ?? signal}${tail}`));
    });
  });
}
