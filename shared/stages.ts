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
