// The names of the workers' files in their state directories and of the snapshot directories,
// in a module with no imports: the test programs that run inside the power-cut VM with nothing
// but node (test/system/powercut-vm.ts, test/helpers/update-invariants.ts) import them too.

/** The fetcher's record, which the gateway reads. */
export const FETCHER_RECORD = 'download.json';
/** The fetcher's packages, in its state directory. */
export const PACKAGES_DIR = 'packages';
/** The installer's record and journal, which the gateway reads. */
export const INSTALLER_RECORD = 'install.json';
/** The file that exists while a worker has work to finish (shared/busy-marker.ts). */
export const BUSY_MARKER = 'busy';
/** The generation a durable record keeps beside itself, which a torn record falls back to. */
export const previousGeneration = (file: string): string => `${file}.prev`;
