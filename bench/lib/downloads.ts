import path from 'node:path';
import { call } from '../../test/helpers/api.js';
import type { Service } from '../../test/helpers/services.js';
import { sleep } from './clock.js';
import type { PackageFile } from './packages.js';

/** Asks the gateway to download `pkg` from `url` as `version`; the name follows the version. */
export async function requestDownload(base: string, url: string, pkg: PackageFile, version: string): Promise<void> {
  const job = {
    version,
    package_url: url,
    package_name: `tope-${version}.zip`,
    package_size: pkg.size,
    package_md5: pkg.md5,
    package_sha256: pkg.sha256,
  };
  const r = await call(base, 'POST', '/api/v1.0/download', job);
  if (r.body.code !== 200) throw new Error(`/download refused: ${JSON.stringify(r.body)}`);
}

export async function requestUpdate(base: string, version: string): Promise<void> {
  const r = await call(base, 'POST', '/api/v1.0/update', { version });
  if (r.body.code !== 200) throw new Error(`/update refused: ${JSON.stringify(r.body)}`);
}

/** Waits for the `ok` log line after line `from`; the `bad` one fails the benchmark at once, with its content. */
export async function outcome(
  service: Service,
  from: number,
  ok: string,
  bad: string,
  timeoutMs: number,
): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const lines = service.lines.slice(from);
    const failed = lines.find((l) => l.msg === bad);
    if (failed) throw new Error(`${bad}: ${JSON.stringify(failed)}`);
    const done = lines.find((l) => l.msg === ok);
    if (done) return done;
    if (service.child.exitCode !== null || service.child.signalCode !== null)
      throw new Error(`the service exited waiting for "${ok}": ${service.stderr}`);
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for "${ok}"`);
    await sleep(5);
  }
}

export const partFileOf = (packagesDir: string, version: string) => path.join(packagesDir, `tope-${version}.zip.part`);
