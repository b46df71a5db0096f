import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { SECURITY_FLOOR_RECORD, SecurityFloor } from '../../shared/trust/security-floor.js';
import { FETCHER_RECORD, INSTALLER_RECORD, PACKAGES_DIR } from '../../shared/worker-records.js';
import { call } from './api.js';
import { DeviceApi } from './device-api.js';
import { InstallDevice } from './install-device.js';
import { Origin } from './origin.js';
import { buildPackage, md5, type ModuleSpec } from './packages.js';
import { portOutsideEphemeralRange, SupervisedService, type ServiceExit } from './services.js';
import { leftovers, snapshotFiles, statusInvariants, updateModules, versionInvariants } from './update-invariants.js';
import { waitFor } from './wait.js';

// One download and install on a device of real processes, with one of them killed by SIGKILL
// (at a named failpoint, or at an instant), restarted as systemd would, and then checked
// against the invariants the product promises. The crash campaigns are loops over this.
// Service control goes through the recording systemctl stand-in.

export type ScenarioName = 'update' | 'undo' | 'rollback';
export type ServiceName = 'fetcher' | 'installer' | 'api-gateway';
export const scenarios: ScenarioName[] = ['update', 'undo', 'rollback'];

export interface Kill {
  service: ServiceName;
  /** Armed in that service's environment: SIGKILL at its `hit`-th pass. */
  failpoint?: string;
  hit?: number;
  /** Or: SIGKILL the service this many ms after the scenario begins. */
  atMs?: number;
}

export interface RunResult {
  scenario: ScenarioName;
  kill: Kill | null;
  /** How many SIGKILLs hit a live process (by failpoint or by the clock). */
  kills: number;
  /** False when an armed failpoint's pass never came (a later pass of a timing-dependent one). */
  reached: boolean;
  /** The first pass's end, before any follow-up. */
  firstEnd: string;
  violations: string[];
  ms: number;
  /** From the services' start to the end of the first pass: the span a random kill falls in. */
  activeMs: number;
}

/** The snapshot `previous` names before the update: a device that has been updated before. */
const BEFORE = '0.9.0';
const OLD = '1.0.0';
const NEW = '2.0.0';
/** The new package's security_version: the floor (0 on the fresh device) rises to it only with a probation that succeeded. */
const NEW_SECURITY_VERSION = 1;
const services: ServiceName[] = ['fetcher', 'installer', 'api-gateway'];
function modulesFor(scenario: ScenarioName): ModuleSpec[] {
  return updateModules(NEW, scenario === 'undo' ? { postCmd: 'exit 3' } : {});
}

/** What each scenario ends with when nothing is killed. */
const cleanEnd: Record<ScenarioName, { stage: string; error: RegExp | null; current: string }> = {
  update: { stage: 'success', error: null, current: `v${NEW}` },
  undo: { stage: 'failed', error: /^POST_CMD_FAILED/, current: `v${OLD}` },
  rollback: { stage: 'failed', error: /^SERVICE_START_FAILED.*ROLLBACK_LEVEL_1_SUCCESS: 1\.0\.0/, current: `v${OLD}` },
};

/** Our SIGKILLs are the crashes; a service that exits any other way does so by itself, a violation. */
const killed = (e: ServiceExit) => e.signal === 'SIGKILL';

export class CrashScenario {
  readonly device: InstallDevice;
  private readonly deviceApi = new DeviceApi();
  private readonly origin: Origin;
  private sup: Record<ServiceName, SupervisedService> = {} as Record<ServiceName, SupervisedService>;
  private zip!: Buffer;

  constructor(
    readonly scenario: ScenarioName,
    extraEnv: Record<string, string> = {},
  ) {
    this.device = new InstallDevice({
      TOPE_ALLOWED_ROOTS: '/opt/tope:/etc/tope',
      TOPE_PROBATION_MS: '100',
      TOPE_LOG_LEVEL: 'info',
      // no scenario hangs a unit: a deadline here only has to outlast a slow stand-in call on a busy machine
      TOPE_UNIT_STOP_TIMEOUT_MS: '5000',
      TOPE_UNIT_START_TIMEOUT_MS: '5000',
      ...extraEnv,
    });
    this.origin = new Origin(1);
  }

  /** The old version running, the new one on the origin (throttled, so a download takes a while). */
  async setUp(): Promise<void> {
    await this.deviceApi.start();
    this.device.env.TOPE_DEVICE_API_URL = this.deviceApi.url;
    await this.device.seedVersion(`v${BEFORE}`, { 'bin/a': `a ${BEFORE}\n` }, ['previous']);
    await this.device.seedVersion(`v${OLD}`, { 'bin/a': `a ${OLD}\n` }, ['current']);
    await fsp.mkdir(path.join(this.device.sysroot, 'etc/tope'), { recursive: true });
    await fsp.writeFile(path.join(this.device.sysroot, 'etc/tope/c.conf'), `c ${OLD}\n`);
    await this.device.setUnits({ 'a.service': { active: true }, 'b.service': { active: true } });
    if (this.scenario === 'rollback') await this.device.behave({ 'a.service': { failStart: [NEW] } });
    // the blob makes the throttled download last; a module like the others, since every entry must be one
    this.zip = await buildPackage(
      NEW,
      [
        ...modulesFor(this.scenario),
        { name: 'blob', dst: '/opt/tope/share/blob', data: randomBytes(96 * 1024), compress: false },
      ],
      [],
      { security_version: NEW_SECURITY_VERSION },
    );
    this.origin.body = this.zip;
    this.origin.script(() => ({ kind: 'serve', throttle: { bytes: 8 * 1024, everyMs: 5 } }));
    await this.origin.start();
    const port = await portOutsideEphemeralRange(); // the gateway restarts on it many times
    this.device.env.TOPE_LISTEN_PORT = String(port);
    this.device.base = `http://127.0.0.1:${port}`;
  }

  async run(kill: Kill | null): Promise<RunResult> {
    const t0 = Date.now();
    const violations: string[] = [];
    for (const name of services) this.sup[name] = new SupervisedService(name, this.device.env);
    await Promise.all(
      services.map((name) =>
        this.sup[name].start(
          kill?.failpoint && kill.service === name ? { TOPE_FAILPOINT: `${kill.failpoint}#${kill.hit ?? 1}` } : {},
        ),
      ),
    );
    let timer: NodeJS.Timeout | undefined;
    if (kill?.atMs !== undefined) {
      timer = setTimeout(() => {
        const s = this.sup[kill.service];
        if (s.alive()) s.current!.child.kill('SIGKILL');
      }, kill.atMs);
    }
    let firstEnd = 'none';
    const started = Date.now();
    let activeMs = 0;
    const lap = (m: string) => process.env.CRASH_DEBUG && console.log(m, Date.now() - t0);
    lap('started');
    try {
      firstEnd = await this.pass();
      activeMs = Date.now() - started;
      lap('passed');
      clearTimeout(timer);
      const want = cleanEnd[this.scenario];
      const end = await this.progress();
      if (end.stage !== want.stage || (want.error && !want.error.test(end.error ?? ''))) {
        // the crash changed the outcome: the device must still be able to do the job
        firstEnd = `${end.stage}: ${end.error ?? end.message}`;
        await this.settle();
        // before the clean attempt, whose success would link previous again
        violations.push(...(await this.previousInvariant()));
        const again = await this.pass();
        if (again !== want.stage)
          violations.push(`a clean attempt after the crash ended ${again}: ${JSON.stringify(await this.progress())}`);
      } else {
        firstEnd = end.stage;
      }
      await this.settle();
      violations.push(...(await this.invariants()));
      lap('checked');
    } catch (e) {
      violations.push(
        `the scenario did not end: ${(e as Error).message}; progress ${JSON.stringify(await this.progress().catch(() => null))}`,
      );
    } finally {
      clearTimeout(timer);
      for (const name of services) {
        violations.push(
          ...this.sup[name].exits
            .filter((e) => !killed(e))
            .map((e) => `${name} exited by itself (code ${e.code}, signal ${e.signal}): ${e.stderrTail}`),
        );
      }
      await Promise.all(services.map((name) => this.sup[name].stop()));
    }
    lap('stopped');
    const kills = services.reduce((n, name) => n + this.sup[name].exits.filter(killed).length, 0);
    // a download's number of checkpoints depends on timing: a later pass may not come this time
    const reached = !kill?.failpoint || kills > 0;
    if (!reached && (kill?.hit ?? 1) === 1)
      violations.push(`failpoint ${kill!.failpoint} was never reached in ${kill!.service}`);
    return { scenario: this.scenario, kill, kills, reached, firstEnd, violations, ms: Date.now() - t0, activeMs };
  }

  async tearDown(): Promise<void> {
    await this.origin.stop();
    await this.deviceApi.stop();
    await fsp.rm(this.device.root, { recursive: true, force: true });
  }

  private get job() {
    return {
      version: NEW,
      package_url: this.origin.url(),
      package_name: `tope-${NEW}.zip`,
      package_size: this.zip.length,
      package_md5: md5(this.zip),
    };
  }

  private async progress(): Promise<{ stage: string; progress: number; message: string; error: string | null }> {
    return waitFor(
      'the gateway to answer',
      async () => (await call(this.device.base, 'GET', '/api/v1.0/progress')).body.data,
      15_000,
      20,
    );
  }

  /** As device-api does: ask, and ask again when the answer was lost with a restarting process. */
  private async command(route: string, body: unknown, accepted: (stage: string) => boolean): Promise<void> {
    await waitFor(
      `${route} accepted`,
      async () => {
        const r = await call(this.device.base, 'POST', route, body).catch(() => null);
        if (r?.body.code === 200) return true;
        return accepted((await this.progress()).stage);
      },
      15_000,
      100,
    );
  }

  private async until(stages: string[]): Promise<string> {
    const p = await waitFor(
      `one of ${stages.join(', ')}`,
      async () => {
        const s = await this.progress();
        return stages.includes(s.stage) ? s : null;
      },
      30_000,
      20,
    );
    return p.stage;
  }

  /** A download, then an install if the download ended in a package; returns the last stage. */
  private async pass(): Promise<string> {
    await this.command('/api/v1.0/download', this.job, (s) => ['downloading', 'verifying', 'toInstall'].includes(s));
    if ((await this.until(['toInstall', 'failed'])) === 'failed') return 'failed';
    await this.command('/api/v1.0/update', { version: NEW }, (s) => ['installing', 'success', 'failed'].includes(s));
    return this.until(['success', 'failed']);
  }

  /** Until no worker is mid-restart (its recovery done): checks and follow-ups must not race a recovery. */
  private async settle(): Promise<void> {
    await waitFor('the workers to be up', () => services.every((n) => this.sup[n].ready()), 15_000);
  }

  /** The level-1 rollback target: the old version after a success, else what it named before the update. */
  private async previousInvariant(): Promise<string[]> {
    const [current, previous] = [await this.device.link('current'), await this.device.link('previous')];
    const want = current === `v${NEW}` ? `v${OLD}` : `v${BEFORE}`;
    return previous === want ? [] : [`previous names ${previous} with ${current} current, not ${want}`];
  }

  private async invariants(): Promise<string[]> {
    const v: string[] = [];
    const d = this.device;
    const end = await this.progress();
    const current = await d.link('current');
    const allowed = this.scenario === 'update' ? [`v${OLD}`, `v${NEW}`] : [`v${OLD}`];
    const units = await d.units();
    const view = {
      current,
      snapshot: {
        'bin/a': await d.file('/opt/tope/versions/current/bin/a'),
        'post.txt': await d.file('/opt/tope/versions/current/post.txt'),
      },
      inPlace: { '/etc/tope/c.conf': await d.file('/etc/tope/c.conf') },
      unitsActive: { 'a.service': !!units['a.service']?.active, 'b.service': !!units['b.service']?.active },
    };
    v.push(...versionInvariants(view, allowed, (version) => snapshotFiles(version, version === OLD)));
    v.push(...statusInvariants(end, current, OLD, NEW));
    v.push(...(await this.previousInvariant()));
    // the floor: raised with the success (before it is announced, or by the roll-forward after a
    // crash), never by an install whose probation did not succeed (undo, rollback)
    const floor = await new SecurityFloor(d.env.TOPE_INSTALLER_STATE_DIR).current().catch((e: Error) => e.message);
    if (end.stage === 'success' && floor !== NEW_SECURITY_VERSION)
      v.push(`the install succeeded, the security floor is ${floor}, not ${NEW_SECURITY_VERSION}`);
    if (this.scenario !== 'update' && floor !== 0)
      v.push(`the security floor is ${floor} after an install whose probation never succeeded`);
    const last = await waitFor(
      'the last report to match the status',
      () => {
        const r = this.deviceApi.reports.at(-1);
        return r && r.stage === end.stage && r.error === end.error ? r : null;
      },
      5000,
    ).catch(() => null);
    if (!last)
      v.push(
        `device-api's last report ${JSON.stringify(this.deviceApi.reports.at(-1))} differs from the status ${JSON.stringify(end)}`,
      );
    // the status is written before the clean-up it announces (an undo needs the backups until then)
    const leftNames = async () =>
      leftovers(
        {
          versions: await fsp.readdir(d.versionsDir),
          inPlaceDir: await fsp.readdir(path.join(d.sysroot, 'etc/tope')),
          // the security floor is kept, like the installer's record
          installerState: (await fsp.readdir(d.env.TOPE_INSTALLER_STATE_DIR)).filter(
            (n) => n !== SECURITY_FLOOR_RECORD && n !== `${SECURITY_FLOOR_RECORD}.prev`,
          ),
          fetcherState: await fsp.readdir(d.env.TOPE_FETCHER_STATE_DIR),
        },
        // the snapshot before the old one may be pruned by a success, or kept
        [`v${BEFORE}`, `v${OLD}`, `v${NEW}`],
        ['c.conf'],
      );
    const left = await waitFor('the clean-up', async () => (await leftNames()).length === 0, 5000).then(
      () => [],
      () => leftNames(),
    );
    if (left.length) v.push(`leftovers: ${left.join(', ')}`);
    const fetched = await d.fetcherStore.read();
    if (fetched?.status.stage === 'toInstall') {
      const data = await fsp.readFile(fetched.packageFile!).catch(() => null);
      if (!data || createHash('md5').update(data).digest('hex') !== this.job.package_md5)
        v.push('the verified package is damaged');
    }
    return v;
  }
}

/** The names of every failpoint in the code, read from the sources. */
export async function failpointsInCode(repo: string): Promise<string[]> {
  const names = new Set<string>();
  for (const dir of ['services', 'shared']) {
    for (const file of await fsp.readdir(path.join(repo, dir), { recursive: true })) {
      if (!String(file).endsWith('.ts')) continue;
      const text = await fsp.readFile(path.join(repo, dir, String(file)), 'utf8');
      for (const m of text.matchAll(/failpoint\('([\w.-]+)'\)/g)) names.add(m[1]);
    }
  }
  return [...names].sort();
}
