import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { tempDir } from './temp-dir.js';

// Debian's Chromium, headless, for tests that need a real browser's rules (CORS, preflights,
// forms, beacons). scripts/ensure-tools.sh installs it as root; otherwise the tests skip.

const candidates = ['chromium', 'chromium-browser', 'google-chrome'];

/** The browser's path, or null when none is installed. */
export function findChromium(): string | null {
  for (const name of candidates) {
    const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
    if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  }
  return null;
}

/** As root in a container: no sandbox, no GPU, nothing reaching out to Google on its own. */
const flags = (profile: string) => [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-default-apps',
  '--disable-extensions',
  '--mute-audio',
  `--user-data-dir=${profile}`,
];

/** A headless browser showing `url` until stopped. */
export class Chromium {
  private readonly dir = tempDir('tope-chromium-');
  private readonly profile = path.join(this.dir, 'profile');
  /**
   * Its TMPDIR, inside the test's directory: the browser keeps its SingletonSocket in a directory
   * of its own there (org.chromium.Chromium.*), which it removes at a clean exit only, and close()
   * kills it.
   */
  private readonly env = { ...process.env, TMPDIR: path.join(this.dir, 'tmp') };
  private child: ChildProcess | null = null;
  stderr = '';

  constructor(
    private readonly binary: string,
    private readonly extra: string[] = [],
  ) {
    mkdirSync(this.env.TMPDIR);
  }

  open(url: string): void {
    // its own process group: the browser and its helpers end together
    this.child = spawn(this.binary, [...flags(this.profile), ...this.extra, url], {
      stdio: ['ignore', 'ignore', 'pipe'],
      detached: true,
      env: this.env,
    });
    this.child.stderr!.setEncoding('utf8').on('data', (c: string) => {
      this.stderr = (this.stderr + c).slice(-4000);
    });
  }

  /** The page's DOM once loaded (--dump-dom), for a page that needs no script time. */
  dumpDom(url: string, timeoutMs = 60_000): string {
    const r = spawnSync(this.binary, [...flags(this.profile), ...this.extra, '--dump-dom', url], {
      encoding: 'utf8',
      timeout: timeoutMs,
      env: this.env,
    });
    return r.stdout;
  }

  async close(): Promise<void> {
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((ok) => child.once('exit', ok));
      process.kill(-child.pid!, 'SIGKILL'); // the group this test started, and nothing else
      await exited;
    }
  }
}
