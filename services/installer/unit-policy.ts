import { UpdaterError } from '../../shared/errors.js';
import type { Manifest } from '../../shared/package-manifest.js';

// Which units a package may stop and start is the device's decision (TOPE_MANAGED_UNITS), not the
// package's: a signed package names units, but a careless or hostile one must not stop sshd, the
// journal or the updater itself. Checked before anything changes, with the manifest.

/** The updater's own units (units/): an install that stopped one of them would cut itself off. */
export const updaterUnits = [
  'tope-api-gateway.service',
  'tope-api-gateway.socket',
  'tope-fetcher.service',
  'tope-fetcher.socket',
  'tope-fetcher-resume.path',
  'tope-installer.service',
  'tope-installer.socket',
  'tope-installer-resume.path',
  'tope-updater.target',
] as const;

/** A glob of `*` (any run of characters) and `?` (one character) over a whole unit name. */
function globToRegExp(pattern: string): RegExp {
  const body = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

/** Whether the device lets a package stop and start `unit`: it matches a managed pattern and is not the updater's own. */
export function isManagedUnit(unit: string, managed: readonly string[]): boolean {
  if ((updaterUnits as readonly string[]).includes(unit)) return false;
  return managed.some((pattern) => globToRegExp(pattern).test(unit));
}

/** Every process_name of the manifest must be a unit the device manages; INVALID_MANIFEST names the first that is not. */
export function checkManagedUnits(manifest: Manifest, managed: readonly string[]): void {
  for (const m of manifest.modules) {
    if (!m.process_name || isManagedUnit(m.process_name, managed)) continue;
    const why = (updaterUnits as readonly string[]).includes(m.process_name)
      ? "is one of the updater's own units"
      : `is not among the units this device lets a package control (TOPE_MANAGED_UNITS: ${managed.join(',')})`;
    throw new UpdaterError('INVALID_MANIFEST', `module ${m.name}: unit ${m.process_name} ${why}`);
  }
}
