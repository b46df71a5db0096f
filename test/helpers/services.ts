import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../shared/config.js';
import { TEST_KEY_FILE, TEST_PRODUCT_ID, testKey } from './packages.js';
import { tempDir } from './temp-dir.js';
import { waitFor } from './wait.js';

/** The product's own defaults: where a device keeps its trusted keys and product id (under the sysroot). */
const productDefaults = loadConfig({});

export const distDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** The file a service runs from: its bundle (scripts/bundle.ts), as the units start it. */
export const mainOf = (service: string) => path.join(distDir, 'bundle', `${service}.js`);

/** The source tree's units (dist/../units): what a device's systemd starts each service with. */
export const unitsDir = path.resolve(distDir, '../units');

/** A service's unit file, or '' for a name that is not one of the product's services. */
function unitText(service: string): string {
  try {
    return readFileSync(path.join(unitsDir, `tope-${service}.service`), 'utf8');
  } catch {
    return '';
  }
}

/**
 * The environment its unit sets for a service (Environment= lines: V8's heap flags in
 * NODE_OPTIONS, malloc's settings), empty for a name that is not one of the product's services:
 * the tests and the benchmarks run each service with what it ships with.
 */
export function unitEnvironment(service: string): Record<string, string> {
  const unit = unitText(service);
  const env: Record<string, string> = {};
  for (const [, line] of unit.matchAll(/^Environment=(.*)$/gm)) {
    // systemd's form: assignments separated by spaces, each one whole in double quotes or bare
    for (const [, quoted, bare] of line.matchAll(/"([^"]*)"|(\S+)/g)) {
      const assignment = quoted ?? bare;
      const eq = assignment.indexOf('=');
      env[assignment.slice(0, eq)] = assignment.slice(eq + 1);
    }
  }
  return env;
}

/** The NODE_OPTIONS its unit sets for a service (V8's heap flags), or null. */
export const unitNodeOptions = (service: string): string | null => unitEnvironment(service).NODE_OPTIONS ?? null;

/**
 * The Nice= its unit sets for a service (the fetcher yields the CPU to a print), 0 without one.
 * The benchmarks run each service at it, as systemd does; the tests do not (a niced service on a
 * machine busy with other tests would only make them slower).
 */
export function unitNice(service: string): number {
  const value = /^Nice=(-?\d+)$/m.exec(unitText(service))?.[1];
  return value === undefined ? 0 : Number(value);
}

/**
 * The command that runs `argv` as a .socket unit would: systemd-socket-activate listens on
 * `address` (a port as host:port, or a Unix socket path), and at the first connection execs
 * `argv` with the listening socket as fd 3 and `env` as its whole environment.
 */
export function socketActivation(address: string, env: Record<string, string>, argv: string[]) {
  const setenv = Object.entries(env).flatMap(([k, v]) => ['-E', `${k}=${v}`]);
  return { file: 'systemd-socket-activate', args: ['-l', address, ...setenv, ...argv] };
}

/** A device's worth of directories in a fresh temp dir, and the environment that points there. */
export function makeDevice(extra: Record<string, string> = {}): { root: string; env: Record<string, string> } {
  // removed when this process exits, not when the device stops: a test may look at a device's
  // files after stopping it (up to 51 MiB each)
  const root = tempDir('tope-');
  // 0755 whatever the umask: the device's own tree (sysroot) is held as a printer's is, and the
  // trusted keys' checks read every directory of it above the keys (shared/trust/signature.ts)
  for (const d of ['run', 'fetcher', 'installer', 'sysroot/opt/tope/versions'])
    mkdirSync(path.join(root, d), { recursive: true, mode: 0o755 });
  const env: Record<string, string> = {
    TOPE_FETCHER_STATE_DIR: path.join(root, 'fetcher'),
    TOPE_INSTALLER_STATE_DIR: path.join(root, 'installer'),
    TOPE_FETCHER_SOCKET: path.join(root, 'run/fetcher.sock'),
    TOPE_INSTALLER_SOCKET: path.join(root, 'run/installer.sock'),
    TOPE_ROOT_PREFIX: path.join(root, 'sysroot'),
    TOPE_ALLOW_HTTP: '1',
    TOPE_ALLOWED_URL_NETS: '127.0.0.0/8,::1/128', // the test origins listen on loopback
    TOPE_RETRY_BASE_MS: '20',
    TOPE_HTTP_TIMEOUT_MS: '1000',
    TOPE_DEVICE_API_URL: 'http://127.0.0.1:9', // discard port: nobody listens
    TOPE_LOG_LEVEL: 'debug',
    // no systemd here: post_cmds run as the installer's children (test/system-post-cmds.test.ts: in their units)
    TOPE_POST_CMD_SANDBOX: 'none',
    // the tests' packages name many stand-in units (a.service, printer@…); the policy itself is
    // tested with narrower values (installer-confinement.test.ts), the updater's own always refused
    TOPE_MANAGED_UNITS: '*',
    ...extra,
  };
  // a device that trusts the tests' vendor key and is a `tope-test`, as a printer trusts its vendor's
  const sysroot = env.TOPE_ROOT_PREFIX;
  const keysDir = path.join(sysroot, env.TOPE_TRUSTED_KEYS_DIR ?? productDefaults.TOPE_TRUSTED_KEYS_DIR);
  mkdirSync(keysDir, { recursive: true, mode: 0o755 });
  writeFileSync(path.join(keysDir, TEST_KEY_FILE), testKey.publicKeyPem, { mode: 0o644 });
  const productIdFile = path.join(sysroot, env.TOPE_PRODUCT_ID_FILE ?? productDefaults.TOPE_PRODUCT_ID_FILE);
  mkdirSync(path.dirname(productIdFile), { recursive: true });
  writeFileSync(
    productIdFile,
    `${TEST_PRODUCT_ID}
`,
  );
  return { root, env };
}

export const freePort = async (): Promise<number> => {
  const s = net.createServer();
  await new Promise<void>((ok) => s.listen(0, '127.0.0.1', ok));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((ok) => s.close(ok));
  return port;
};

/**
 * A free port below the kernel's ephemeral range, for a server restarted on the same port many
 * times: a port from freePort() is ephemeral, and an outgoing connection can take it in between.
 */
export async function portOutsideEphemeralRange(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const s = net.createServer();
    const ok = await new Promise<boolean>((done) =>
      s.once('error', () => done(false)).listen(port, '127.0.0.1', () => done(true)),
    );
    if (ok) {
      await new Promise((done) => s.close(done));
      return port;
    }
  }
}

/** A real service process with its JSON log lines collected. */
export class Service {
  readonly lines: Array<Record<string, unknown>> = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly child: ChildProcess;

  /** `nice`: the niceness to run it at (`nice -n`, which every thread of it inherits); 0 by default. */
  constructor(name: string, env: Record<string, string>, command?: { file: string; args: string[] }, nice = 0) {
    const file = nice === 0 ? (command?.file ?? process.execPath) : 'nice';
    const args = [
      ...(nice === 0 ? [] : ['-n', String(nice), command?.file ?? process.execPath]),
      ...(command?.args ?? [mainOf(name)]),
    ];
    // NODE_V8_COVERAGE carries c8's coverage collection into the service processes; TMPDIR, the
    // run's own (scripts/fresh-tmpdir.sh): a service that left a file there would fail the run
    const inherited = Object.fromEntries(
      ['PATH', 'NODE_V8_COVERAGE', 'TMPDIR'].filter((k) => process.env[k]).map((k) => [k, process.env[k]!]),
    );
    const shipped = command ? {} : unitEnvironment(name);
    this.child = spawn(file, args, { env: { ...inherited, ...shipped, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    this.child.stdout!.setEncoding('utf8').on('data', (c: string) => {
      buf += c;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          this.lines.push(JSON.parse(line));
        } catch {
          this.lines.push({ raw: line });
        }
      }
    });
    this.child.stderr!.setEncoding('utf8').on('data', (c: string) => {
      this.stderr += c;
    });
    this.exited = new Promise((ok) => this.child.on('exit', (code, signal) => ok({ code, signal })));
  }

  /** Running: not exited, nor a zombie (dead to the kernel before node hears of it). */
  alive(): boolean {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return false;
    // killed but not yet reaped: node has not seen the exit, the kernel already has
    const stat = readFileSync(`/proc/${this.child.pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  }

  logged(msg: string): Record<string, unknown> | undefined {
    return this.lines.find((l) => l.msg === msg);
  }

  waitLog(msg: string, timeoutMs = 10_000): Promise<Record<string, unknown>> {
    return waitFor(`log line "${msg}"`, () => this.logged(msg), timeoutMs);
  }

  async kill(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    const late = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(late);
  }
}

export interface ServiceExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The end of the exited process's stderr, for the report of an exit nobody caused. */
  stderrTail: string;
}

/**
 * A service as its unit's Restart=on-failure keeps it running, without RestartSec's delay: after
 * any exit but our own stop(), a new process starts at once with the same environment. Every
 * exit restarts it, even a clean one the unit would leave down: each is kept in `exits` for the
 * caller to judge, and the device stays usable for the checks that follow.
 */
export class SupervisedService {
  /** The process running now, or the last one. */
  current: Service | null = null;
  readonly exits: ServiceExit[] = [];
  private stopping = false;
  private starting: Promise<void> = Promise.resolve();

  constructor(
    readonly name: string,
    private readonly env: Record<string, string>,
  ) {}

  /** Resolves once the process says it is ready, or after 15 s without: one killed before never will. */
  start(extra: Record<string, string> = {}): Promise<void> {
    const svc = new Service(this.name, { ...this.env, ...extra });
    this.current = svc;
    void svc.exited.then(({ code, signal }) => {
      if (this.stopping) return;
      this.exits.push({ code, signal, stderrTail: svc.stderr.slice(-300) });
      this.starting = this.start(); // without `extra`: a failpoint armed there is not armed again
    });
    this.starting = svc.waitLog(`${this.name} ready`, 15_000).then(
      () => undefined,
      () => undefined,
    );
    return this.starting;
  }

  /** Running and past its recovery (it logs "ready" after it). */
  ready(): boolean {
    return this.alive() && !!this.current!.logged(`${this.name} ready`);
  }

  alive(): boolean {
    return !!this.current?.alive();
  }

  /** No restart after this; the process gets SIGTERM once its start is over (ready, or given up on). */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.starting;
    await this.current?.kill('SIGTERM');
  }
}

/**
 * How a service's process is started: this Node on its main file by default; another runtime
 * (test/helpers/arm64.ts: the arm64 Node under QEMU) gives its own command for the same file,
 * and the longer start-up it needs before "ready".
 */
export interface Launcher {
  command(main: string): { file: string; args: string[] };
  readyTimeoutMs: number;
}

/** Starts the named services and waits until each says it is ready; `asUnits`: at their units' Nice=. */
export async function startServices(
  env: Record<string, string>,
  names: string[],
  launcher?: Launcher,
  asUnits = { nice: false },
): Promise<Service[]> {
  const started = names.map((n) => new Service(n, env, launcher?.command(mainOf(n)), asUnits.nice ? unitNice(n) : 0));
  await Promise.all(started.map((s, i) => s.waitLog(`${names[i]} ready`, launcher?.readyTimeoutMs)));
  return started;
}

export const readJsonFile = async (file: string): Promise<any> => JSON.parse(await fsp.readFile(file, 'utf8'));
