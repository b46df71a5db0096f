import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { call } from './helpers/api.js';
import { Origin } from './helpers/origin.js';
import { distDir, freePort, makeDevice } from './helpers/services.js';
import { waitFor } from './helpers/wait.js';

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

  constructor(port: number, extra: Record<string, string> = {}) {
    const { env } = makeDevice({
      TOPE_LISTEN_PORT: String(port),
      TOPE_RUN_VAR: mkdtempSync(path.join(os.tmpdir(), 'make-run-')),
      ...extra,
    });
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
