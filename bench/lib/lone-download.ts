import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { BUNDLE_OPTIONS } from '../../scripts/bundle-plugins.js';
import { unitEnvironment, unitNice } from '../../test/helpers/services.js';

// The fetcher's download path alone (bench/reference/lone-download.ts), bundled as the services
// are and run as the fetcher's unit runs it: its Environment= (the semi-space, malloc's settings)
// and Nice=, with `extraFlags` on node's command line where a row asks for them.

export type LoneMode = 'undici' | 'tcp' | 'node-http';

export interface LoneDownload {
  peakRss: number;
  cpuMs: number;
  bytes: number;
  md5: string;
}

/** A download that takes longer has hung (a server that kept the connection open, say): killed. */
const DEADLINE_MS = 10 * 60_000;

const entry = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../reference/lone-download.js');

/** Bundles the lone downloader into `dir` once; returns the bundle's path. */
export async function bundleLoneDownload(dir: string): Promise<string> {
  const outfile = path.join(dir, 'lone-download.js');
  await build({ ...BUNDLE_OPTIONS, entryPoints: [entry], outfile, logLevel: 'warning' });
  return outfile;
}

/** One download of `url` (`size` bytes) into `partFile` by the bundle at `bundle`. */
export async function loneDownload(
  bundle: string,
  mode: LoneMode,
  url: string,
  size: number,
  partFile: string,
  extraFlags: string[] = [],
): Promise<LoneDownload> {
  const args = [...extraFlags, bundle, mode, url, partFile, String(size)];
  // the unit's environment and nothing of the bench's own (as Service starts the services)
  const child = spawn('nice', ['-n', String(unitNice('fetcher')), process.execPath, ...args], {
    env: { PATH: process.env.PATH!, ...unitEnvironment('fetcher') },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const deadline = setTimeout(() => child.kill('SIGKILL'), DEADLINE_MS);
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  const code = await new Promise<number | null>((ok) => child.once('close', ok)).finally(() => clearTimeout(deadline));
  await fsp.rm(partFile, { force: true });
  if (code !== 0) throw new Error(`lone download (${mode}) exited ${code}`);
  const result = JSON.parse(out) as LoneDownload;
  if (result.bytes !== size) throw new Error(`lone download (${mode}) got ${result.bytes} of ${size} bytes`);
  return result;
}
