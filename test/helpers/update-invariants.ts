import { FETCHER_RECORD, INSTALLER_RECORD, PACKAGES_DIR, previousGeneration } from '../../shared/state-names.js';
import { versionOfDir } from '../../shared/version-dirs.js';
import type { ModuleSpec } from './packages.js';

// What the product promises after any crash or power cut, as pure checks over what a test
// observed on a device: the SIGKILL campaigns (crash-scenario.ts, host processes) and the power-
// cut campaign (system/powercut-vm.ts, inside a QEMU VM) both read their device and call these.
// It imports only types and shared/'s modules that import nothing: the VM runs this file with
// nothing but node, those modules shipped beside it (test/helpers/powercut.ts).

/** Every error code a failed update may end with after a crash (the README's list). */
export const failCodes =
  /^(INSTALL_INTERRUPTED|POST_CMD_FAILED|SERVICE_START_FAILED|SERVICE_UNHEALTHY|ROLLBACK_LEVEL_\d_\w+|DOWNLOAD_FAILED|DEPLOYMENT_FAILED)\b/;

/** The test packages' shape: one snapshot file with a post_cmd, in-place files, two units. */
export function updateModules(version: string, opts: { postCmd?: string; inPlace?: string[] } = {}): ModuleSpec[] {
  return [
    {
      name: 'a',
      dst: '/opt/tope/bin/a',
      process_name: 'a.service',
      restart_order: 1,
      data: `a ${version}\n`,
      post_cmds: [opts.postCmd ?? 'echo ran > post.txt'],
    },
    ...(opts.inPlace ?? ['c']).map((name) => ({
      name,
      dst: `/etc/tope/${name}.conf`,
      process_name: 'b.service',
      restart_order: 2,
      data: `${name} ${version}\n`,
    })),
  ];
}

/** Each file of a version's snapshot (relative to it), as installing that package leaves it. */
export function snapshotFiles(version: string, seeded: boolean): Record<string, string> {
  return seeded ? { 'bin/a': `a ${version}\n` } : { 'bin/a': `a ${version}\n`, 'post.txt': 'ran\n' };
}

/** The power-cut VM's packages: two in-place files, so that "all old or all new" means something. */
export const VM_IN_PLACE = ['c', 'd'];

/**
 * The power-cut VM's packages also carry a blob that makes the throttled download last (a module
 * like the others: every entry of a signed package must be one). Its bytes follow from the version,
 * so the guest can check the snapshot byte for byte without the package.
 */
export const VM_BLOB_REL = 'share/blob';
export const VM_BLOB_BYTES = 768 * 1024;
export const vmBlob = (version: string): string => `blob ${version}\n`.repeat(VM_BLOB_BYTES).slice(0, VM_BLOB_BYTES);
export interface CatalogEntry {
  version: string;
  package_name: string;
  package_size: number;
  package_md5: string;
}

export interface Status {
  stage: string;
  progress?: number;
  message: string;
  error: string | null;
}

export interface DeviceView {
  /** `current`'s target (`v1.0.0`), or null. */
  current: string | null;
  /** Every file under `current`, relative to it, with its content; or only the ones a test knows. */
  snapshot: Record<string, string | null>;
  /** Each in-place file's path and content (null: missing). */
  inPlace: Record<string, string | null>;
  /** Units the package restarts: whether each is running. */
  unitsActive: Record<string, boolean>;
}

/**
 * `current` names one of `allowed` and is that version complete, byte-exact; the in-place files
 * are all that version's. `exact`: the snapshot holds nothing else either.
 */
export function versionInvariants(
  view: DeviceView,
  allowed: string[],
  expected: (version: string) => Record<string, string>,
  exact = false,
): string[] {
  const v: string[] = [];
  const current = view.current;
  if (!current || !allowed.includes(current)) v.push(`current names ${current} (allowed: ${allowed.join(', ')})`);
  const version = current ? versionOfDir(current) : '?';
  const want = expected(version);
  for (const [rel, data] of Object.entries(want)) {
    if (view.snapshot[rel] !== data)
      v.push(`${rel} of ${current} is ${JSON.stringify(view.snapshot[rel] ?? null)}, not ${JSON.stringify(data)}`);
  }
  if (exact) {
    const extra = Object.keys(view.snapshot).filter((rel) => !(rel in want));
    if (extra.length) v.push(`${current} holds files its package has not: ${extra.join(', ')}`);
  }
  for (const [file, data] of Object.entries(view.inPlace)) {
    const name = file
      .split('/')
      .pop()!
      .replace(/\.conf$/, '');
    if (data !== `${name} ${version}\n`) v.push(`the in-place file ${file} is ${JSON.stringify(data)} with ${current}`);
  }
  for (const [unit, active] of Object.entries(view.unitsActive)) if (!active) v.push(`${unit} is not running`);
  return v;
}

/**
 * `/progress` agrees with `current`: success only with the new version (naming it), failed only
 * with the old one and a listed code. `settled`: the stages a device may rest in after a cut
 * besides those two (a download the cut interrupted ends in toInstall; one never begun, idle).
 */
export function statusInvariants(
  end: Status,
  current: string | null,
  oldVersion: string,
  newVersion: string,
  settled: string[] = [],
): string[] {
  const v: string[] = [];
  if (
    end.stage === 'success' &&
    (current !== `v${newVersion}` || end.message !== `Successfully installed version ${newVersion}`)
  )
    v.push(`success reported with ${current}: ${end.message}`);
  if (end.stage === 'failed' && (current !== `v${oldVersion}` || !failCodes.test(end.error ?? '')))
    v.push(`failed reported with ${current}: ${end.error}`);
  if (!['success', 'failed'].includes(end.stage)) {
    if (!settled.includes(end.stage)) v.push(`the update ended in stage ${end.stage}`);
    else if (current !== `v${oldVersion}`) v.push(`${end.stage} shown with ${current} current`);
  }
  return v;
}

/** Names a finished update leaves nowhere: staging trees, temporary links, partial and temp files. */
export function leftovers(
  dirs: { versions: string[]; inPlaceDir: string[]; installerState: string[]; fetcherState: string[] },
  versions: string[],
  inPlaceNames: string[],
): string[] {
  return [
    ...dirs.versions.filter((n) => n.startsWith('.') || !['current', 'previous', 'factory', ...versions].includes(n)),
    ...dirs.inPlaceDir.filter((n) => !inPlaceNames.includes(n)),
    ...dirs.installerState.filter((n) => ![INSTALLER_RECORD, previousGeneration(INSTALLER_RECORD)].includes(n)),
    ...dirs.fetcherState.filter((n) => ![FETCHER_RECORD, previousGeneration(FETCHER_RECORD), PACKAGES_DIR].includes(n)),
  ];
}
