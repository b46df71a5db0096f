import { mkdirSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { toInstall } from '../../shared/status.js';
import { call } from './api.js';
import { TestDevice } from './device.js';
import { md5 } from './packages.js';
import { waitFor } from './wait.js';

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
}
