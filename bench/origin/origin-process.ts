import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { OriginRequest, OriginStats } from './main.js';

const originMain = path.join(path.dirname(fileURLToPath(import.meta.url)), 'main.js');

/** The bench's handle on a package server process serving the files of `root`. */
export class OriginProcess {
  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
  ) {}

  static async start(root: string, capBytesPerSecond: number | null): Promise<OriginProcess> {
    const child = fork(originMain, [root, capBytesPerSecond ? String(capBytesPerSecond) : 'none'], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const port = await new Promise<number>((ok, fail) => {
      child.once('message', (m: { port: number }) => ok(m.port));
      child.once('exit', (code) => fail(new Error(`origin exited ${code} before listening`)));
    });
    return new OriginProcess(child, port);
  }

  url(name: string): string {
    return `http://127.0.0.1:${this.port}/${encodeURIComponent(name)}`;
  }

  private ask(request: OriginRequest): Promise<OriginStats> {
    return new Promise((ok) => {
      this.child.once('message', (m: OriginStats) => ok(m));
      this.child.send(request);
    });
  }

  stats(): Promise<OriginStats> {
    return this.ask({ type: 'stats' });
  }

  reset(): Promise<OriginStats> {
    return this.ask({ type: 'reset' });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((ok) => this.child.once('exit', ok));
    this.child.kill('SIGTERM');
    await exited;
  }
}
