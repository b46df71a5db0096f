import { existsSync } from 'node:fs';
import { output } from '../lib/commands.js';

// The peers come from Debian 12 as a printer's image builder would take them: SWUpdate 2022.12,
// the Mender client 3.4 (its single-file update module included) and mender-artifact, nginx as
// the one origin, cpio and openssl to build and sign the .swu. Installed by the bench when
// missing; none of them may leave a daemon behind.

export const PEER_PACKAGES = ['swupdate', 'mender-client', 'mender-artifact', 'nginx', 'cpio', 'openssl', 'python3'];

/** The units these packages ship that their maintainer scripts enable (and start, on a systemd host). */
const UNITS_OF: Record<string, string[]> = {
  swupdate: ['swupdate.socket', 'swupdate.service', 'swupdate-progress.service'],
  'mender-client': ['mender-client.service'],
  nginx: ['nginx.service'],
};

async function installed(pkg: string): Promise<boolean> {
  const status = await output('dpkg-query', ['-W', '-f=${Status}', pkg]).catch(() => '');
  return status.trim() === 'install ok installed';
}

/**
 * Installs whichever of PEER_PACKAGES is missing (apt-get, as root); then stops and disables the
 * daemons the packages just installed enabled, so that the bench measures only what it starts.
 * Returns what it installed.
 */
export async function ensurePeerPackages(say: (m: string) => void): Promise<string[]> {
  const missing: string[] = [];
  for (const p of PEER_PACKAGES) if (!(await installed(p))) missing.push(p);
  if (missing.length === 0) return [];
  if (process.getuid?.() !== 0)
    throw new Error(`the peers' rows need ${missing.join(', ')} from Debian: run as root, or apt-get install them`);
  say(`peers: apt-get install ${missing.join(' ')}`);
  await output('env', [
    'DEBIAN_FRONTEND=noninteractive',
    'apt-get',
    'install',
    '-y',
    '--no-install-recommends',
    '-o',
    'Dpkg::Options::=--force-confold',
    ...missing,
  ]).catch(async (e: Error) => {
    // a machine whose package lists were never fetched: once, then again
    say(`peers: apt-get install failed (${e.message.split('\n')[0]}); apt-get update, then again`);
    await output('apt-get', ['update']);
    await output('env', [
      'DEBIAN_FRONTEND=noninteractive',
      'apt-get',
      'install',
      '-y',
      '--no-install-recommends',
      ...missing,
    ]);
  });
  const units = missing.flatMap((p) => UNITS_OF[p] ?? []);
  if (units.length && existsSync('/run/systemd/system')) {
    say(`peers: systemctl disable --now ${units.join(' ')}`);
    await output('systemctl', ['disable', '--now', ...units]).catch((e: Error) => say(`peers: ${e.message}`));
  }
  return missing;
}

/** `Package version` of each peer, for the table's notes. */
export async function peerVersions(): Promise<string> {
  const out = await output('dpkg-query', ['-W', '-f=${Package} ${Version}\\n', ...PEER_PACKAGES.slice(0, 4)]);
  return out.trim().split('\n').join(', ');
}
