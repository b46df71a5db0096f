// The stages and which of them are busy, in a module with no imports: the test programs that run
// inside the power-cut VM with nothing but node import them too. shared/status.ts builds the
// schema and the status constructors on them.

export const stages = [
  'idle',
  'downloading',
  'verifying',
  'toInstall',
  'installing',
  'rebooting',
  'success',
  'failed',
] as const;
export type StageName = (typeof stages)[number];

/**
 * Whether a worker is busy in each stage (the gateway stays up and refuses other commands).
 * A Record, so a new stage does not compile until someone decides.
 * `rebooting` is contract-only: the wire contract names it (ota-gui and device-api know it), but
 * no worker enters it today, since an update restarts units and never reboots the board.
 */
const busyByStage: Record<StageName, boolean> = {
  idle: false,
  downloading: true,
  verifying: true,
  toInstall: false,
  installing: true,
  rebooting: true,
  success: false,
  failed: false,
};
export const busyStages: ReadonlySet<StageName> = new Set(stages.filter((stage) => busyByStage[stage]));

/**
 * Whether a socket-activated worker whose work ended in this stage ends its process at once
 * (shared/idle-exit.ts), rather than after TOPE_IDLE_EXIT_MS. Only after a success: the fetcher's
 * next command (a new download) and the installer's (after a new download) are far away, and the
 * fetcher would otherwise hold its memory beside the installer's through the install that
 * follows. After a failure device-api may try again at once, and each attempt would start the
 * service anew: fast failures in a row would reach systemd's start limit (5 starts in 10 s), which
 * closes the worker's socket until someone resets it. A busy stage here means the work ended
 * without its last status written (a failed write): its busy marker is still up, and an exit would
 * have the path unit start it again at once, in a loop.
 */
const exitAtOnceAfter: Record<StageName, boolean> = {
  idle: false,
  downloading: false,
  verifying: false,
  toInstall: true,
  installing: false,
  rebooting: false,
  success: true,
  failed: false,
};
export const exitAtOnceStages: ReadonlySet<StageName> = new Set(stages.filter((stage) => exitAtOnceAfter[stage]));
