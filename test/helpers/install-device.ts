import assert from 'node:assert/strict';
import { mkdirSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { toInstall } from '../../shared/status.js';
import { call } from './api.js';
import { TestDevice } from './device.js';
import { DeviceApi } from './device-api.js';
import { md5 } from './packages.js';
import { deviceListing } from './tree-state.js';
import { waitFor } from './wait.js';

/** A systemctl call on the tests' a.service other than a query (is-active, show, cat). */
export const CHANGES_A_SERVICE = /^(?!(is-active|show|cat) ).* a\.service/;

const fakeSystemctl = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../../test/helpers/fake-systemctl.mjs',
);

/** A device with a versions tree under its sysroot and the recording systemctl stand-in. */
export class InstallDevice extends TestDevice {
  readonly fakeDir: string;
  readonly versionsDir: string;
  readonly sysroot: string;

  constructor(extra: Record<string, string> = {}) {
    super({
      TOPE_PROBATION_MS: '300',
      TOPE_UNIT_START_TIMEOUT_MS: '4000',
      TOPE_UNIT_STOP_TIMEOUT_MS: '3000',
      ...extra,
    });
    this.sysroot = this.env.TOPE_ROOT_PREFIX;
    this.versionsDir = path.join(this.sysroot, 'opt/tope/versions');
    this.fakeDir = path.join(this.root, 'systemd');
    mkdirSync(this.fakeDir);
    Object.assign(this.env, {
      TOPE_SYSTEMCTL: fakeSystemctl,
      FAKE_SYSTEMCTL_DIR: this.fakeDir,
      FAKE_VERSIONS_DIR: this.versionsDir,
    });
  }

  async behave(b: Record<string, object>): Promise<void> {
    await fsp.writeFile(path.join(this.fakeDir, 'behaviour.json'), JSON.stringify(b));
  }

  async setUnits(u: Record<string, { active: boolean; restarts?: number }>): Promise<void> {
    await fsp.writeFile(
      path.join(this.fakeDir, 'units.json'),
      JSON.stringify(Object.fromEntries(Object.entries(u).map(([k, v]) => [k, { restarts: 0, ...v }]))),
    );
  }

  async units(): Promise<Record<string, { active: boolean; restarts: number }>> {
    return JSON.parse(await fsp.readFile(path.join(this.fakeDir, 'units.json'), 'utf8').catch(() => '{}'));
  }

  async calls(): Promise<string[]> {
    return (await fsp.readFile(path.join(this.fakeDir, 'calls.log'), 'utf8').catch(() => ''))
      .split('\n')
      .filter(Boolean);
  }

  /** What a link names ("v1.0.0"), or null. */
  async link(name: string): Promise<string | null> {
    return fsp.readlink(path.join(this.versionsDir, name)).catch(() => null);
  }

  async file(devicePath: string): Promise<string | null> {
    return fsp.readFile(path.join(this.sysroot, devicePath), 'utf8').catch(() => null);
  }

  /** A snapshot made by hand, as the factory image or an earlier install would have left it. */
  async seedVersion(dir: string, files: Record<string, string>, links: string[] = []): Promise<void> {
    for (const [rel, content] of Object.entries(files)) {
      const p = path.join(this.versionsDir, dir, rel);
      await fsp.mkdir(path.dirname(p), { recursive: true });
      await fsp.writeFile(p, content, { mode: 0o755 });
    }
    for (const l of links) {
      await fsp.rm(path.join(this.versionsDir, l), { force: true });
      await fsp.symlink(dir, path.join(this.versionsDir, l));
    }
  }

  /** As if the fetcher had verified `zip` for `version`: the package and a toInstall record. */
  async verified(zip: Buffer, version: string, verifiedAt = new Date()): Promise<void> {
    await fsp.mkdir(this.packagesDir, { recursive: true });
    const file = path.join(this.packagesDir, `tope-${version}.zip`);
    await fsp.writeFile(file, zip);
    const seq = Math.max((await this.fetcherStore.read())?.seq ?? 0, (await this.installerStore.read())?.seq ?? 0) + 1;
    await this.seedFetcher({
      seq,
      checkpoint: null,
      verifiedAt: verifiedAt.toISOString(),
      packageFile: file,
      job: {
        version,
        package_url: `https://h/tope-${version}.zip`,
        package_name: `tope-${version}.zip`,
        package_size: zip.length,
        package_md5: md5(zip),
      },
      status: toInstall(version),
    });
  }

  update(version: string) {
    return call(this.base, 'POST', '/api/v1.0/update', { version });
  }

  async finished(timeoutMs = 20_000) {
    return waitFor(
      'the install to end',
      async () => {
        const p = await this.progress();
        return ['success', 'failed'].includes(p.body.data.stage) ? p.body.data : null;
      },
      timeoutMs,
    );
  }

  /**
   * An install of `version` that is taken, then refused with `error`: the device byte-identical to
   * `listing` (deviceListing taken before), and no systemctl call matching `unitCalls`.
   */
  async assertInstallRefused(version: string, error: RegExp, listing: string, unitCalls: RegExp): Promise<void> {
    assert.equal((await this.update(version)).body.code, 200);
    const end = await this.finished();
    assert.equal(end.stage, 'failed');
    assert.match(end.error!, error);
    assert.equal(await deviceListing(this.sysroot), listing, 'the device is exactly as it was');
    assert.deepEqual(
      (await this.calls()).filter((c) => unitCalls.test(c)),
      [],
      'no unit started or stopped',
    );
  }
}

/**
 * An InstallDevice reporting to a DeviceApi of its own; `cleanups` (run after each test, last in
 * first out) stops both and removes the device's files.
 */
export async function reportingDevice(
  cleanups: Array<() => Promise<void>>,
  extra: Record<string, string> = {},
): Promise<{ device: InstallDevice; deviceApi: DeviceApi }> {
  const deviceApi = await new DeviceApi().start();
  const device = new InstallDevice({ TOPE_DEVICE_API_URL: deviceApi.url, ...extra });
  cleanups.push(
    () => fsp.rm(device.root, { recursive: true, force: true }),
    () => deviceApi.stop(),
    () => device.stop(),
  );
  return { device, deviceApi };
}
