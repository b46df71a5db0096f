import { createHash } from 'node:crypto';
import { createReadStream, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { BenchContext } from '../context.js';
import { nowMs } from '../lib/clock.js';
import { buildTreePackage } from '../lib/packages.js';
import { fmt, type Row } from '../lib/report.js';
import { median } from '../lib/stats.js';
import { PackageArchive } from '../../shared/package-archive.js';
import { checkPackageTrust } from '../../shared/trust/package-trust.js';
import { TEST_KEY_FILE, TEST_PRODUCT_ID, testKey } from '../../test/helpers/packages.js';

// The trust check's own cost (what the fetcher adds after a download and the installer before
// an install): open the zip's central directory, verify the Ed25519 signature over manifest.json
// with the trusted keys read from disk, parse the manifest, check compatibility, the floor and
// every entry. The per-file SHA-256 runs inside extraction and shows in the install rows. The
// reference is the MD5 pass over the same file that the transfer check already makes.

async function md5Ms(file: string): Promise<number> {
  const t0 = nowMs();
  const hash = createHash('md5');
  for await (const c of createReadStream(file, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) hash.update(c);
  hash.digest();
  return nowMs() - t0;
}

export async function benchTrust(ctx: BenchContext): Promise<Row[]> {
  const keysDir = path.join(ctx.scratch, 'trust-keys.d');
  mkdirSync(keysDir, { recursive: true });
  writeFileSync(path.join(keysDir, TEST_KEY_FILE), testKey.publicKeyPem);
  const settings = { keysDir, productId: async () => TEST_PRODUCT_ID, allowUnsigned: false, floor: async () => 0 };
  const tree = path.join(ctx.scratch, 'trust-tree.zip');
  writeFileSync(tree, await buildTreePackage('2.0.0', 1000, ctx.plan.installFileBytes, ctx.plan.unitsPerPackage));
  const runs = ctx.plan.quick ? 5 : 30;
  const rows: Row[] = [];
  for (const [label, file] of [
    [`${fmt.size(ctx.plan.smallPackage)} package (1 module)`, ctx.packages.small.file],
    ['1000-module package', tree],
  ] as const) {
    const check: number[] = [];
    const md5: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = nowMs();
      const archive = await PackageArchive.open(file, { maxBytes: Number.MAX_SAFE_INTEGER, maxEntries: 100_000 });
      try {
        await checkPackageTrust(archive, settings);
      } finally {
        archive.close();
      }
      check.push(nowMs() - t0);
      md5.push(await md5Ms(file));
    }
    ctx.say(`trust: ${label} ${fmt.ms(median(check))}`);
    rows.push({
      measure: `Trust check (signature, manifest, entries) of the ${label}`,
      value: fmt.ms(median(check)),
      reference: `MD5 of the file ${fmt.ms(median(md5))}`,
      ratio: fmt.ratio(median(check) / median(md5)),
      runs: String(runs),
    });
  }
  return rows;
}
