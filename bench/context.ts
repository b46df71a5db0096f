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
  /** small and large: the "100 MB" and "1 GB" of README's bounds; resumeCapped: the smaller file of the SIGKILL-and-resume runs at 10 Mbit/s. */
  packages: { small: PackageFile; large: PackageFile; resumeCapped: PackageFile };
  say: (message: string) => void;
  /** Markdown a benchmark adds below the table (a table of its own, its bounds met or not). */
  sections: string[];
}
