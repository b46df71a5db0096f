import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { test } from 'node:test';
import { call } from './helpers/api.js';
import { TestDevice } from './helpers/device.js';
import { Origin } from './helpers/origin.js';
import { waitFor } from './helpers/wait.js';

const canMount = process.getuid?.() === 0;

test(
  'the disk filling up mid-download is DISK_FULL and the partial file is removed (a real 2 MiB tmpfs)',
  { skip: !canMount && 'needs root to mount a small file system' },
  async () => {
    const origin = await new Origin(1_500_000).start();
    const device = new TestDevice({ TOPE_DISK_RESERVE_BYTES: '0' });
    await fsp.mkdir(device.packagesDir, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tope-test', device.packagesDir]);
    try {
      await device.start('fetcher', 'api-gateway');
      origin.script(() => ({ kind: 'serve', throttle: { bytes: 50_000, everyMs: 20 } }));
      const job = {
        version: '1.0.0',
        package_url: origin.url(),
        package_name: 'p.zip',
        package_size: 1_500_000,
        package_md5: origin.md5,
      };
      assert.equal((await call(device.base, 'POST', '/api/v1.0/download', job)).body.code, 200);
      await waitFor(
        'the first bytes on disk',
        async () => (await fsp.stat(`${device.packagesDir}/p.zip.part`).catch(() => null))?.size,
      );
      // something else on the printer takes the rest of the space
      await fsp.writeFile(`${device.packagesDir}/filler`, Buffer.alloc(1024 * 1024)).catch(() => undefined);
      const failed = await device.waitStage('failed');
      assert.match(failed.data.error, /^DISK_FULL: no space left while writing the package$/);
      assert.deepEqual(await fsp.readdir(device.packagesDir), ['filler']);
    } finally {
      await device.stop();
      await origin.stop();
      execFileSync('umount', [device.packagesDir]);
    }
  },
);
