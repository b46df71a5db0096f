import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import yazl from 'yazl';

// Real packages for the benchmarks, written to disk: a zip with manifest.json and one big
// payload module (the download benches), and zips of many small modules (the install bench).

export interface PackageFile {
  file: string;
  size: number;
  /** The payload's size, which names the package in the table ("100 MiB"). */
  payloadBytes: number;
  md5: string;
  sha256: string;
}

export const UNIT_PREFIX = 'bench-unit-';

/** `bytes` of incompressible data, fast: AES-CTR over zeros runs at GB/s with AES-NI. */
export function randomStream(bytes: number): Readable {
  const cipher = createCipheriv('aes-128-ctr', randomBytes(16), randomBytes(16));
  const zeros = Buffer.alloc(1024 * 1024);
  return Readable.from((function* () {
    for (let left = bytes; left > 0; left -= zeros.length) yield cipher.update(zeros.subarray(0, Math.min(left, zeros.length)));
  })());
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

async function writeZip(zip: yazl.ZipFile, file: string, payloadBytes: number): Promise<PackageFile> {
  zip.end();
  await pipeline(zip.outputStream as Readable, createWriteStream(file));
  const { size } = await fsp.stat(file);
  return { file, size, payloadBytes, ...(await digestFile(file)) };
}

/** A package whose one module is `payloadBytes` of random data, stored (as a firmware image would compress). */
export function writeBigPackage(file: string, version: string, payloadBytes: number): Promise<PackageFile> {
  const zip = new yazl.ZipFile();
  const manifest = { version, modules: [{ name: 'payload', src: 'modules/payload', dst: '/opt/tope/bin/payload', process_name: `${UNIT_PREFIX}0.service`, restart_order: 1 }] };
  zip.addBuffer(Buffer.from(JSON.stringify(manifest)), 'manifest.json');
  zip.addReadStream(randomStream(payloadBytes), 'modules/payload', { size: payloadBytes, compress: false, mode: 0o100755 });
  return writeZip(zip, file, payloadBytes);
}

/** Where the i-th file of a many-file package lives under /opt/tope: 100 files a directory. */
export const treePath = (i: number) => `app/d${String(Math.floor(i / 100)).padStart(2, '0')}/f${String(i).padStart(4, '0')}`;

/**
 * A package of `count` modules of `fileBytes` random bytes each, the first `units` of them with
 * a systemd unit to stop and start. Returns it in memory (a few MiB at most).
 */
export async function buildTreePackage(version: string, count: number, fileBytes: number, units: number): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  const modules = Array.from({ length: count }, (_, i) => ({
    name: `m${i}`, src: `files/${treePath(i)}`, dst: `/opt/tope/${treePath(i)}`,
    ...(i < units ? { process_name: `${UNIT_PREFIX}${i}.service`, restart_order: i + 1 } : {}),
  }));
  zip.addBuffer(Buffer.from(JSON.stringify({ version, modules })), 'manifest.json');
  for (const m of modules) zip.addBuffer(randomBytes(fileBytes), m.src, { compress: false, mode: 0o100755 });
  zip.end();
  const chunks: Buffer[] = [];
  for await (const c of zip.outputStream as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}
