/**
 * The install's steps as /progress shows them: each step's percent and message, in one table.
 * Progress never goes back within an install (the installer keeps the highest figure), so a step
 * run again later (the units started during a rollback) shows the higher figure it is given.
 */
export const installSteps = {
  accepted: { percent: 0, message: (version: string) => `Installing version ${version}...` },
  verifying: { percent: 5, message: () => 'Verifying package...' },
  /** From this percent up to the next step's, one figure per module placed in the snapshot. */
  staging: {
    percent: 10,
    message: (module: string, index: number, count: number) => `Installing module ${module} (${index}/${count})`,
  },
  stopping: { percent: 60, message: () => 'Stopping services...' },
  postCmds: { percent: 65, message: (module: string) => `Running post command of ${module}` },
  switching: { percent: 70, message: (version: string) => `Switching to version ${version}...` },
  starting: {
    percent: 75,
    message: (unit: string, index: number, count: number) => `Starting ${unit} (${index}/${count})`,
  },
  probation: { percent: 85, message: () => 'Checking services...' },
  rollingBack: { percent: 90, message: (version: string) => `Rolling back to version ${version}...` },
} as const satisfies Record<string, { percent: number; message: (...args: never[]) => string }>;

export type InstallStep = keyof typeof installSteps;

/** The percent of the staging step after `done` of `count` modules. */
export function stagingPercent(done: number, count: number): number {
  const { staging, stopping } = installSteps;
  return staging.percent + Math.floor(((stopping.percent - staging.percent) * done) / count);
}

/** The recovery's own line: no step of its own, it keeps the figure the install had reached. */
export const recoveringMessage = (version: string): string => `Recovering the interrupted install of ${version}...`;

export interface StepProgress {
  percent: number;
  message: string;
}

/** A step's figure and its message with the step's details. */
type StepArgs<S extends InstallStep> = Parameters<(typeof installSteps)[S]['message']>;

export function step<S extends InstallStep>(name: S, ...args: StepArgs<S>): StepProgress {
  const { percent, message } = installSteps[name];
  return { percent, message: (message as (...a: unknown[]) => string)(...args) };
}
