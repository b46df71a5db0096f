import type { OriginProcess } from './origin/origin-process.js';
import type { PackageFile } from './lib/packages.js';
import type { Plan } from './plan.js';

/** What every benchmark gets: the plan, a scratch directory, the package servers and packages. */
export interface BenchContext {
  plan: Plan;
  /** A temp dir outside the repo, deleted at the end. */
  scratch: string;
  origin: OriginProcess;
  /** The same files through a 10 Mbit/s token bucket. */
  cappedOrigin: OriginProcess;
  packages: { small: PackageFile; large: PackageFile; capped: PackageFile };
  say: (message: string) => void;
}
