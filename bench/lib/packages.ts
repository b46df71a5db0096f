import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import { Readable } from 'node:stream';
import { packPackage } from '../../scripts/tope-pack/pack.js';
import { TEST_PRODUCT_ID, testKey } from '../../test/helpers/packages.js';

// Real packages for the benchmarks, signed and written by tope-pack's code with the key the
// tests' devices trust: one big payload module (the download benches), and packages of many
// small modules (the install bench).

export interface PackageFile {
  file: string;
  size: number;
  /** The payload's size, which names the package in the table ("100 MiB"). */
  payloadBytes: number;
  md5: string;
  sha256: string;
}

export const UNIT_PREFIX = 'bench-unit-';

/** `bytes` of incompressible data, fast: AES-CTR over zeros runs at GB/s with AES-NI. The same `seed`, the same bytes. */
export function randomStream(bytes: number, seed = randomBytes(32)): Readable {
  const cipher = createCipheriv('aes-128-ctr', seed.subarray(0, 16), seed.subarray(16, 32));
  const zeros = Buffer.alloc(1024 * 1024);
  return Readable.from(
    (function* () {
      for (let left = bytes; left > 0; left -= zeros.length)
        yield cipher.update(zeros.subarray(0, Math.min(left, zeros.length)));
    })(),
  );
}

export async function digestFile(file: string): Promise<{ md5: string; sha256: string }> {
  const md5 = createHash('md5');
  const sha = createHash('sha256');
  for await (const c of createReadStream(file, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) {
    md5.update(c);
    sha.update(c);
  }
  return { md5: md5.digest('hex'), sha256: sha.digest('hex') };
}

/**
 * A package whose one module is `payloadBytes` of random data, stored (as a firmware image would
 * compress), signed by the tests' key through tope-pack's code: the stream is generated twice
 * from one seed, once for the manifest's hash and once into the zip.
 */
export async function writeBigPackage(file: string, version: string, payloadBytes: number): Promise<PackageFile> {
  const seed = randomBytes(32);
  const description = {
    version,
    compatible: [TEST_PRODUCT_ID],
    security_version: 0,
    modules: [
      {
        name: 'payload',
        src: 'modules/payload',
        dst: '/opt/tope/bin/payload',
        process_name: `${UNIT_PREFIX}0.service`,
        restart_order: 1,
      },
    ],
  };
  const payload = new Map([
    ['modules/payload', { open: () => randomStream(payloadBytes, seed), compress: false, mode: 0o100755 }],
  ]);
  await packPackage(description, payload, testKey.privateKeyPem, file);
  const { size } = await fsp.stat(file);
  return { file, size, payloadBytes, ...(await digestFile(file)) };
}

/** Where the i-th file of a many-file package lives under /opt/tope: 100 files a directory. */
export const treePath = (i: number) =>
  `app/d${String(Math.floor(i / 100)).padStart(2, '0')}/f${String(i).padStart(4, '0')}`;

/**
 * A package of `count` modules of `fileBytes` random bytes each, the first `units` of them with
 * a systemd unit to stop and start. Returns it in memory (a few MiB at most).
 */
export async function buildTreePackage(
  version: string,
  count: number,
  fileBytes: number,
  units: number,
): Promise<Buffer> {
  const modules = Array.from({ length: count }, (_, i) => ({
    name: `m${i}`,
    src: `files/${treePath(i)}`,
    dst: `/opt/tope/${treePath(i)}`,
    ...(i < units ? { process_name: `${UNIT_PREFIX}${i}.service`, restart_order: i + 1 } : {}),
  }));
  const payload = new Map(
    modules.map((m) => [m.src, { data: randomBytes(fileBytes), compress: false, mode: 0o100755 }]),
  );
  const description = { version, compatible: [TEST_PRODUCT_ID], security_version: 0, modules };
  return (await packPackage(description, payload, testKey.privateKeyPem)).zip!;
}
