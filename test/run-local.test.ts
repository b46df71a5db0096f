import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { writeSignedZip } from '../scripts/tope-pack/pack.js';
import { loadConfig } from '../shared/config.js';
import { PackageArchive } from '../shared/package-archive.js';
import { call } from './helpers/api.js';
import { Origin } from './helpers/origin.js';
import { distDir, freePort, makeDevice } from './helpers/services.js';
import { waitFor } from './helpers/wait.js';
import { tempDir } from './helpers/temp-dir.js';

// `make run`'s script itself (scripts/run-local.sh), on a free port and temp directories: it
// starts the workers before the gateway, and supervises the three as Restart=on-failure would.

const script = path.join(distDir, '..', 'scripts', 'run-local.sh');
const origin = new Origin(64 * 1024);
before(() => origin.start());
after(() => origin.stop());

class MakeRun {
  readonly child: ChildProcess;
  stderr = '';
  readonly exited: Promise<number | null>;
  readonly base: string;

  /** `unset`: settings of the test device left out, so that the script's own defaults apply. */
  constructor(port: number, extra: Record<string, string> = {}, unset: string[] = []) {
    const { env } = makeDevice({
      TOPE_LISTEN_PORT: String(port),
      TOPE_RUN_VAR: tempDir('make-run-'),
      ...extra,
    });
    for (const key of unset) delete env[key];
    this.base = `http://127.0.0.1:${port}`;
    this.child = spawn('bash', [script], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    this.child.stderr!.setEncoding('utf8').on('data', (c: string) => {
      this.stderr += c;
    });
    this.exited = new Promise((ok) => this.child.on('exit', (code) => ok(code)));
  }

  /** The pids the script said it started `service` with, in order. */
  pids(service: string): number[] {
    return [...this.stderr.matchAll(new RegExp(`make run: ${service} started \\(pid (\\d+)\\)`, 'g'))].map((m) =>
      Number(m[1]),
    );
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null) this.child.kill('SIGTERM');
    await this.exited;
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

const job = (version: string) => ({
  version,
  package_url: origin.url(),
  package_name: `p-${version}.zip`,
  package_size: origin.body.length,
  package_md5: origin.md5,
});

async function downloaded(run: MakeRun, version: string): Promise<void> {
  const answer = await call(run.base, 'POST', '/api/v1.0/download', job(version));
  assert.equal(answer.body.code, 200, JSON.stringify(answer.body));
  await waitFor(
    `${version} downloaded`,
    async () => {
      const { data } = (await call(run.base, 'GET', '/api/v1.0/progress')).body;
      return data.stage === 'toInstall' && data.message.includes(version);
    },
    30_000,
  );
}

test('a download sent the moment /progress first answers is taken: the gateway starts after the workers can take commands (10 starts)', async () => {
  for (let n = 0; n < 10; n++) {
    const run = new MakeRun(await freePort());
    try {
      await waitFor(
        'the gateway answering',
        async () => (await call(run.base, 'GET', '/api/v1.0/progress')).http === 200,
        60_000,
        5,
      );
      const answer = await call(run.base, 'POST', '/api/v1.0/download', job('1.0.0'));
      assert.equal(answer.body.code, 200, `start ${n + 1}: ${JSON.stringify(answer.body)}`);
    } finally {
      await run.stop();
    }
  }
});

test('a crashed service is logged and started again, and serves; a second crash within the window ends everything with the reason', async () => {
  const run = new MakeRun(await freePort(), {
    TOPE_RUN_RESTART_WINDOW_S: '600',
    TOPE_WORKER_CONNECT_GRACE_MS: '30000',
  });
  try {
    await waitFor('the gateway answering', async () => (await call(run.base, 'GET', '/')).http === 200, 60_000);
    await downloaded(run, '1.0.0');
    const [first] = run.pids('fetcher');
    process.kill(first, 'SIGKILL');
    await waitFor('the crash seen', () => run.stderr.includes(`fetcher (pid ${first}) killed by signal 9`), 30_000, 5);
    // sent before the new fetcher's socket exists: the gateway waits for it as a socket unit would hold it
    await downloaded(run, '1.0.1');
    const second = await waitFor('the fetcher started again', () => run.pids('fetcher')[1], 30_000);
    await waitFor(
      'the new fetcher taking commands',
      () => run.stderr.split('make run: fetcher takes commands').length === 3,
      30_000,
    );
    assert.match(
      run.stderr,
      new RegExp(`make run: fetcher \\(pid ${first}\\) killed by signal 9 \\(KILL\\); starting it again`),
    );
    assert.equal(run.child.exitCode, null, 'make run goes on');
    await downloaded(run, '1.0.2'); // the new fetcher takes commands

    const others = [...run.pids('installer'), ...run.pids('api-gateway')];
    process.kill(second, 'SIGKILL');
    assert.equal(await run.exited, 1);
    assert.match(
      run.stderr,
      new RegExp(
        `make run: fetcher \\(pid ${second}\\) killed by signal 9 \\(KILL\\), its second crash within 600 s; stopping everything`,
      ),
    );
    for (const pid of others) assert.ok(!alive(pid), `pid ${pid} was stopped`);
  } finally {
    await run.stop();
  }
});

test("make run's development trust: a dev key pair (var/dev-signing-key.pem, PKCS#8, 0600) trusted by a `tope-dev` device; make sample's package installs through the real checks, an unsigned one is refused; a restart keeps the key", async () => {
  const work = tempDir('make-run-dev-');
  const varDir = path.join(work, 'var');
  const root = path.join(varDir, 'root'); // the script's own sysroot: no test key in it
  const defaults = loadConfig({});
  const sample = new Origin(0);
  await sample.start();
  let run = new MakeRun(await freePort(), { TOPE_RUN_VAR: varDir }, ['TOPE_ROOT_PREFIX']);
  try {
    await waitFor('the gateway answering', async () => (await call(run.base, 'GET', '/')).http === 200, 60_000);
    const keyFile = path.join(varDir, 'dev-signing-key.pem');
    const privatePem = await fsp.readFile(keyFile, 'utf8');
    assert.match(privatePem, /^-----BEGIN PRIVATE KEY-----\n/, 'PKCS#8 PEM');
    assert.equal((await fsp.stat(keyFile)).mode & 0o777, 0o600);
    const keysDir = path.join(root, defaults.TOPE_TRUSTED_KEYS_DIR);
    assert.deepEqual(await fsp.readdir(keysDir), ['tope-dev.pub']);
    assert.equal(
      await fsp.readFile(path.join(keysDir, 'tope-dev.pub'), 'utf8'),
      createPublicKey(privatePem).export({ type: 'spki', format: 'pem' }).toString(),
    );
    assert.equal(await fsp.readFile(path.join(root, defaults.TOPE_PRODUCT_ID_FILE), 'utf8'), 'tope-dev\n');

    // `make sample` as the README runs it, from the checkout's directory (here `work`)
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TOPE_')));
    const printed = execFileSync(process.execPath, [path.join(distDir, 'scripts/sample-package.js'), '1.0.0'], {
      cwd: work,
      env,
      encoding: 'utf8',
    });
    assert.match(printed, /signed with var\/dev-signing-key\.pem/);
    sample.body = await fsp.readFile(path.join(varDir, 'sample/tope-1.0.0.zip'));
    const job = (version: string) => ({
      version,
      package_url: sample.url(`/tope-${version}.zip`),
      package_name: `tope-${version}.zip`,
      package_size: sample.body.length,
      package_md5: sample.md5,
    });
    const ended = () =>
      waitFor(
        'the download to end',
        async () => {
          const { data } = (await call(run.base, 'GET', '/api/v1.0/progress')).body;
          return ['toInstall', 'failed'].includes(data.stage) ? data : null;
        },
        30_000,
      );
    assert.equal((await call(run.base, 'POST', '/api/v1.0/download', job('1.0.0'))).body.code, 200);
    assert.equal((await ended()).stage, 'toInstall');
    assert.equal((await call(run.base, 'POST', '/api/v1.0/update', { version: '1.0.0' })).body.code, 200);
    await waitFor(
      'the install to succeed',
      async () => (await call(run.base, 'GET', '/api/v1.0/progress')).body.data.stage === 'success',
      30_000,
    );
    assert.equal(
      await fsp.readFile(path.join(root, 'opt/tope/versions/current/hello.out'), 'utf8'),
      'hello from tope 1.0.0\n',
    );

    // TOPE_ALLOW_UNSIGNED is not on: the same package without its manifest.sig is refused
    const unsigned = await PackageArchive.open(path.join(varDir, 'sample/tope-1.0.0.zip'), {
      maxBytes: 1e6,
      maxEntries: 10,
    });
    try {
      const entries = await Promise.all(
        [...unsigned.files.keys()]
          .filter((name) => !['manifest.json', 'manifest.sig'].includes(name))
          .map(async (name) => ({ name, data: await unsigned.readSmall(unsigned.files.get(name)!) })),
      );
      sample.body = (await writeSignedZip(await unsigned.readManifestBytes(), null, entries))!;
    } finally {
      unsigned.close();
    }
    assert.equal((await call(run.base, 'POST', '/api/v1.0/download', job('1.0.1'))).body.code, 200);
    assert.match((await ended()).error, /^SIGNATURE_MISSING: manifest\.sig not found in package/);

    // a second start keeps the key it made
    await run.stop();
    run = new MakeRun(await freePort(), { TOPE_RUN_VAR: varDir }, ['TOPE_ROOT_PREFIX']);
    await waitFor('the gateway answering', async () => (await call(run.base, 'GET', '/')).http === 200, 60_000);
    assert.equal(await fsp.readFile(keyFile, 'utf8'), privatePem);
  } finally {
    await run.stop();
    await sample.stop();
  }
});
