import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';

/**
 * Where a post_cmd runs. `systemd`: a transient unit of its own, sandboxed by the properties
 * below; `none`: a child of the installer with a cleaned environment (make run, the tests, any
 * machine without systemd). `auto` is `systemd` under a systemd as root, and refuses otherwise:
 * running unsandboxed is only ever what the setting says.
 */
export type PostCmdSandboxSetting = 'auto' | 'systemd' | 'none';
export type PostCmdSandbox = 'systemd' | 'none';

/** What `auto` found: the sandbox to use, or why there is none. */
export type SandboxChoice = { sandbox: PostCmdSandbox } | { refused: string };

/** sd_booted(): systemd is PID 1 when this directory exists. */
const SYSTEMD_BOOTED = '/run/systemd/system';

export function chooseSandbox(
  setting: PostCmdSandboxSetting,
  host = { booted: existsSync(SYSTEMD_BOOTED), root: process.getuid?.() === 0 },
): SandboxChoice {
  switch (setting) {
    case 'systemd':
    case 'none':
      return { sandbox: setting };
    case 'auto':
      if (host.booted && host.root) return { sandbox: 'systemd' };
      return {
        refused:
          `no sandbox for post_cmds: TOPE_POST_CMD_SANDBOX=auto needs systemd as PID 1 and the installer as root` +
          ` (found ${host.booted ? 'systemd' : 'no systemd'}, ${host.root ? 'root' : 'not root'});` +
          ` TOPE_POST_CMD_SANDBOX=none runs them unsandboxed`,
      };
    default: {
      const undecided: never = setting;
      throw new Error(`no sandbox for ${String(undecided)}`);
    }
  }
}

/** The PATH a post_cmd gets: the installer's own, or systemd's default. */
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * A post_cmd's whole environment: PATH and what the package is told, nothing of the installer's
 * (NOTIFY_SOCKET, WATCHDOG_*, LISTEN_*, INVOCATION_ID, its TOPE_* settings).
 */
export function postCmdEnvironment(vars: Record<string, string>, inherited = process.env): Record<string, string> {
  return { PATH: inherited.PATH || DEFAULT_PATH, ...vars };
}

/** Every post_cmd unit's name starts so; a restarted installer stops any left running by the last one. */
export const POST_CMD_UNIT_PREFIX = 'tope-post-cmd-';
export const POST_CMD_UNIT_PATTERN = `${POST_CMD_UNIT_PREFIX}*.service`;

export const newPostCmdUnit = (): string => `${POST_CMD_UNIT_PREFIX}${randomBytes(6).toString('hex')}.service`;

/** The system calls that send a signal: a post_cmd sends none, to anyone (see `sandboxProperties`). */
const SIGNAL_CALLS = 'kill tkill tgkill rt_sigqueueinfo rt_tgsigqueueinfo pidfd_send_signal';

/**
 * The sandbox of a post_cmd unit (each property is in systemd 252, Debian 12's). A post_cmd is
 * root, so every way a root process without capabilities still has is closed by name:
 * - it writes only `writable` (the new snapshot): ProtectSystem=strict makes everything else
 *   read-only, the kept snapshots and the in-place files the installer placed included;
 * - it cannot reach systemd or any daemon: /run is an empty tmpfs (systemd's private socket,
 *   its notify socket, D-Bus, the installer's and the printer's sockets are all under it),
 *   PrivateNetwork= cuts loopback and the abstract sockets, and only AF_UNIX sockets exist;
 * - it cannot go through another root process: PrivateUsers= puts it in a user namespace of its
 *   own, so /proc/<pid>/root, /cwd, /fd and /mem of the host's processes (the installer's, whose
 *   mount namespace has /run/systemd) and ptrace are refused, and ProtectProc= hides them; and
 *   it sends no signal (a root process may signal every root process: SIGRTMIN+5 to PID 1
 *   reboots), not even to its own children;
 * - no capability, no new privileges, no devices, no kernel or clock settings.
 */
export function sandboxProperties(writable: string, runtimeMaxMs: number): string[] {
  return [
    'Type=exec',
    `WorkingDirectory=${writable}`,
    'ProtectSystem=strict',
    `ReadWritePaths=${writable}`,
    'ProtectHome=yes',
    'PrivateTmp=yes',
    'PrivateDevices=yes',
    'PrivateNetwork=yes',
    'PrivateIPC=yes',
    'PrivateUsers=yes',
    'TemporaryFileSystem=/run:ro',
    'RestrictAddressFamilies=AF_UNIX',
    'NoNewPrivileges=yes',
    'CapabilityBoundingSet=',
    'AmbientCapabilities=',
    'ProtectProc=invisible',
    'ProtectKernelTunables=yes',
    'ProtectKernelModules=yes',
    'ProtectKernelLogs=yes',
    'ProtectControlGroups=yes',
    'ProtectClock=yes',
    'ProtectHostname=yes',
    'RestrictNamespaces=yes',
    'RestrictRealtime=yes',
    'RestrictSUIDSGID=yes',
    'LockPersonality=yes',
    'SystemCallArchitectures=native',
    `SystemCallFilter=~@debug @mount @reboot @swap @module @raw-io @clock @cpu-emulation @obsolete ${SIGNAL_CALLS} process_vm_readv process_vm_writev`,
    'SystemCallErrorNumber=EPERM',
    'UMask=0022',
    // at the installer's deadline the whole cgroup dies at once, as its process group did
    'KillMode=control-group',
    'KillSignal=SIGKILL',
    // the installer stops it at its deadline; this bounds one whose installer died meanwhile
    `RuntimeMaxSec=${runtimeMaxMs}ms`,
  ];
}

/** Only plain absolute paths reach a unit property: nothing systemd would read as a prefix, quote or list. */
const PLAIN_PATH = /^\/[A-Za-z0-9._~+/-]*$/;

export const plainPath = (dir: string): boolean => PLAIN_PATH.test(dir) && !dir.includes('/../');

/**
 * systemd expands `${NAME}` (and `$NAME` as a whole word) in ExecStart= itself, before the shell
 * sees the command: `$$` is its literal dollar.
 */
export const escapeForExecStart = (cmd: string): string => cmd.replaceAll('$', () => '$$');

/** systemd-run's arguments for one post_cmd: run in `dir`, wait for its end, output on our pipes. */
export function systemdRunArgs(
  unit: string,
  cmd: string,
  dir: string,
  env: Record<string, string>,
  runtimeMaxMs: number,
  description: string,
): string[] {
  return [
    `--unit=${unit}`,
    `--description=${description}`,
    '--wait',
    '--pipe',
    '--quiet',
    '--collect',
    ...sandboxProperties(dir, runtimeMaxMs).map((p) => `--property=${p}`),
    ...Object.entries(env).map(([name, value]) => `--setenv=${name}=${value}`),
    '--',
    '/bin/sh',
    '-c',
    escapeForExecStart(cmd),
  ];
}
