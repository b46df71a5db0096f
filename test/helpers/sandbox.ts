import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { TEST_KEY_FILE, TEST_PRODUCT_ID, testKey } from './packages.js';
import { DEFAULT_DEVICE_API_URL } from '../../shared/device-api.js';
import type { Stage } from '../../shared/status.js';
import { recordedReports } from '../system/recorded-reports.js';
import { distDir } from './services.js';
import { tempDir } from './temp-dir.js';
import { waitFor } from './wait.js';

const repo = path.resolve(distDir, '..');
const script = path.join(repo, 'test/system/sandbox.sh');

// One sandbox at a time on a machine: every sandbox shares the host's network (the gateway's port
// 12315) and the test files run two at a time. A directory is the lock (mkdir is atomic); the pid
// inside tells a holder that died from one still at work. In /tmp itself, not os.tmpdir(): make
// test gives each run a TMPDIR of its own, and two runs (two checkouts) must still take turns.
const LOCK_DIR = '/tmp/tope-sandbox.lock';
const LOCK_WAIT_MS = 40 * 60_000;

function lockHolderGone(): boolean {
  let holder: number;
  try {
    holder = Number(readFileSync(path.join(LOCK_DIR, 'pid'), 'utf8'));
  } catch {
    // no pid yet: being taken right now, unless it has been so for a while
    return Date.now() - statSync(LOCK_DIR, { throwIfNoEntry: false })!.mtimeMs > 30_000;
  }
  try {
    process.kill(holder, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** Waits (within a deadline) until this process alone may run a sandbox; returns the release. */
export async function holdSandboxLock(): Promise<() => void> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      mkdirSync(LOCK_DIR);
      writeFileSync(path.join(LOCK_DIR, 'pid'), String(process.pid));
      return () => rmSync(LOCK_DIR, { recursive: true, force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    if (lockHolderGone()) {
      rmSync(LOCK_DIR, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > deadline) throw new Error(`another sandbox held ${LOCK_DIR} for ${LOCK_WAIT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Real-systemd tests run wherever we are root; there, a sandbox that cannot be prepared is an error. */
export function sandboxAvailable(): true | string {
  if (process.getuid?.() !== 0) return 'needs root for systemd-nspawn';
  const r = spawnSync('bash', [script, 'prepare'], { encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) throw new Error(`the systemd sandbox cannot be prepared: ${r.stderr}`);
  return true;
}

/**
 * A booted systemd (PID 1) with tope-updater installed as `make install` lays it out. Its root is
 * volatile; /var/lib/tope-updater, /opt/tope and the test's own state survive `reboot()`.
 */
export class Sandbox {
  readonly host: string;
  private readonly dest: string;
  private readonly persist: string;
  env: Record<string, string> = {};

  /**
   * `via: 'deb'`: nothing of tope-updater is installed; `make deb-package` writes the package to
   * `debDir` (/mnt/deb inside) for the test to install, and /var/lib/tope-updater is the
   * container's own (a purge removes it), so such a sandbox does not survive `reboot()`.
   */
  constructor(
    readonly name: string,
    readonly opts: { via: 'make install' | 'deb' } = { via: 'make install' },
  ) {
    this.host = tempDir(`sbx-${name}-`);
    this.dest = path.join(this.host, 'dest');
    this.persist = path.join(this.host, 'persist');
    for (const d of ['var-lib', 'opt-tope/versions', 'test/packages'])
      mkdirSync(path.join(this.persist, d), { recursive: true });
    const make = (...args: string[]) =>
      execFileSync('make', ['-s', '-C', repo, ...args], {
        stdio: 'pipe',
        env: { ...process.env, MAKEFLAGS: '' },
        encoding: 'utf8',
      }).trim();
    if (opts.via === 'deb') this.deb = make('deb-package', `DEB_DIR=${this.debDir}`);
    else make('install-files', `DESTDIR=${this.dest}`);
    // the device trusts the tests' signing key and is a tope-test (provision.sh installs them)
    this.testFile(`trust/keys.d/${TEST_KEY_FILE}`, testKey.publicKeyPem);
    this.testFile('trust/product-id', `${TEST_PRODUCT_ID}\n`);
  }

  /** The package `make deb-package` built (via 'deb'), as a host path. */
  deb = '';

  get debDir(): string {
    return path.join(this.host, 'deb');
  }

  /** A file in the persisted test directory (/var/lib/tope-test inside). */
  testFile(rel: string, data: string | Buffer): void {
    const p = path.join(this.persist, 'test', rel);
    mkdirSync(path.dirname(p), { recursive: true });
    writeFileSync(p, data);
  }

  /** A file under /opt/tope inside. */
  optFile(rel: string, data: string): void {
    const p = path.join(this.persist, 'opt-tope', rel);
    mkdirSync(path.dirname(p), { recursive: true });
    writeFileSync(p, data);
  }

  up(): void {
    const installed =
      this.opts.via === 'deb'
        ? [`ro:${this.debDir}:/mnt/deb`]
        : [
            `${path.join(this.persist, 'var-lib')}:/var/lib/tope-updater`,
            `ro:${this.dest}:/mnt/dest`,
            `ro:${path.join(this.dest, 'usr/lib/tope-updater')}:/usr/lib/tope-updater`,
          ];
    execFileSync(
      'bash',
      [
        script,
        'up',
        this.name,
        ...installed,
        `${path.join(this.persist, 'opt-tope')}:/opt/tope`,
        `${path.join(this.persist, 'test')}:/var/lib/tope-test`,
        `ro:${path.join(distDir, 'test/system')}:/mnt/test`,
        `ro:${path.join(repo, 'test/system/provision.sh')}:/usr/local/sbin/provision`,
      ],
      { stdio: 'pipe', timeout: 120_000 },
    );
    const env = {
      ...this.env,
      // device-api's stand-in listens where the updater reports by default
      RECORD_PORT: new URL(DEFAULT_DEVICE_API_URL).port,
      ...(this.opts.via === 'deb' ? { HELPERS_ONLY: '1' } : {}),
    };
    this.sh(
      `${Object.entries(env)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ')} sh /usr/local/sbin/provision`,
    );
  }

  down(powerCut = false): void {
    execFileSync('bash', [script, 'down', this.name, ...(powerCut ? ['--power-cut'] : [])], {
      stdio: 'pipe',
      timeout: 60_000,
    });
  }

  reboot(powerCut: boolean): void {
    this.down(powerCut);
    this.up();
  }

  /** Runs a shell command inside; returns stdout, throws with stderr on a non-zero status. */
  sh(command: string): string {
    const r = spawnSync('bash', [script, 'exec', this.name, 'sh', '-c', command], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    if (r.status !== 0)
      throw new Error(`inside the sandbox, \`${command}\` exited ${r.status}: ${r.stderr}${r.stdout}`);
    return r.stdout.trim();
  }

  /** The exit status of a shell command inside. */
  status(command: string): number | null {
    return spawnSync('bash', [script, 'exec', this.name, 'sh', '-c', command], { encoding: 'utf8', timeout: 60_000 })
      .status;
  }

  api(method: 'GET' | 'POST', route: string, body?: unknown): any {
    const data = body === undefined ? '' : ` -H 'content-type: application/json' -d '${JSON.stringify(body)}'`;
    return JSON.parse(this.sh(`curl -sS --max-time 10 -X ${method} http://127.0.0.1:12315${route}${data}`));
  }

  active(unit: string): string {
    return spawnSync('bash', [script, 'exec', this.name, 'systemctl', 'is-active', unit], {
      encoding: 'utf8',
    }).stdout.trim();
  }

  prop(unit: string, name: string): string {
    return this.sh(`systemctl show -p ${name} --value ${unit}`);
  }

  async stage(want: Stage, timeoutMs = 60_000): Promise<any> {
    return waitFor(
      `stage ${want} inside the sandbox`,
      () => {
        const p = this.api('GET', '/api/v1.0/progress');
        if (p.data.stage === 'failed' && want !== 'failed') throw new Error(`failed: ${p.data.error}`);
        return p.data.stage === want ? p.data : null;
      },
      timeoutMs,
      200,
    );
  }

  reports(): Array<{ stage: string; progress: number; message: string; error: string | null }> {
    return recordedReports(this.sh('cat /var/lib/tope-test/reports.jsonl 2>/dev/null || true'));
  }

  journal(unit: string): string {
    return this.sh(`journalctl --no-pager -o cat -u ${unit} | tail -n 40`);
  }
}
