import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { freePort } from '../../test/helpers/services.js';
import { sleep } from '../lib/clock.js';

/**
 * Debian's nginx on loopback, serving one directory: the one origin of the side-by-side rows.
 * Its own config, pid file, logs and temp paths live under `dir`; in the foreground (daemon off),
 * so that the process the bench spawned is the master and stopping it stops the workers.
 */
export class Nginx {
  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
    private stderr: () => string,
  ) {}

  static async start(root: string, dir: string): Promise<Nginx> {
    mkdirSync(dir, { recursive: true });
    const port = await freePort();
    const conf = path.join(dir, 'nginx.conf');
    writeFileSync(
      conf,
      [
        'daemon off;',
        'master_process on;',
        'worker_processes 1;',
        // the served files sit in the bench's 0700 temp dir
        'user root;',
        `pid ${path.join(dir, 'nginx.pid')};`,
        `error_log ${path.join(dir, 'error.log')} warn;`,
        'events { worker_connections 64; }',
        'http {',
        '  access_log off;',
        '  sendfile on;',
        '  default_type application/octet-stream;',
        ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${path.join(dir, t)};`),
        `  server { listen 127.0.0.1:${port}; root ${root}; }`,
        '}',
        '',
      ].join('\n'),
    );
    // -e: the error log before the config is read (Debian's default is under /var/log)
    const child = spawn('nginx', ['-c', conf, '-p', `${dir}/`, '-e', path.join(dir, 'error.log')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const nginx = new Nginx(child, port, () => stderr);
    const deadline = Date.now() + 10_000;
    while (!(await connects(port))) {
      if (child.exitCode !== null || Date.now() > deadline) {
        await nginx.stop();
        throw new Error(`nginx did not start on 127.0.0.1:${port}: ${stderr.trim()}`);
      }
      await sleep(20);
    }
    return nginx;
  }

  url(name: string): string {
    return `http://127.0.0.1:${this.port}/${name}`;
  }

  /** SIGQUIT: graceful stop of master and workers; the master exits once they have. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((ok) => this.child.once('exit', ok));
    this.child.kill('SIGQUIT');
    const killed = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(killed);
    if (this.stderr().trim()) process.stderr.write(`nginx: ${this.stderr().trim()}\n`);
  }
}

function connects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
