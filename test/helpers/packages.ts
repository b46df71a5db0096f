import { promises as fsp } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { signManifest } from '../../shared/trust/signature.js';
import yazl from 'yazl';
import zlib from 'node:zlib';
import {
  manifestBytesOf,
  newKeyPair,
  packPackage,
  writeSignedZip,
  type PayloadFile,
} from '../../scripts/tope-pack/pack.js';

// Package zips built by the tests, through the packaging tool's own code (scripts/tope-pack),
// signed with a key every test device trusts; and the byte-level damage the hostile ones need
// (yazl itself refuses to write a bad name, so those are patched in after the fact).

/** The vendor key of the tests: each test device (makeDevice) trusts its public half. */
export const testKey = newKeyPair();
export const TEST_KEY_FILE = 'tope-test.pub';
/** The product id of every test device; packages name it in `compatible` unless told otherwise. */
export const TEST_PRODUCT_ID = 'tope-test';

export interface FileSpec {
  name: string;
  data?: Buffer | string;
  mode?: number;
  dir?: boolean;
  compress?: boolean;
}

export async function buildZip(files: FileSpec[]): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  for (const f of files) {
    if (f.dir) zip.addEmptyDirectory(f.name, { mode: f.mode ?? 0o40755 });
    else zip.addBuffer(Buffer.from(f.data ?? ''), f.name, { mode: f.mode ?? 0o100644, compress: f.compress ?? true });
  }
  zip.end();
  const chunks: Buffer[] = [];
  for await (const c of zip.outputStream as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

export interface ModuleSpec {
  name: string;
  dst: string;
  data?: string | Buffer;
  mode?: number;
  compress?: boolean;
  process_name?: string;
  restart_order?: number;
  post_cmds?: string[];
  /** A src of the author's choosing, with no payload file behind it (hostile cases). */
  src?: string;
}

export interface PackageOptions {
  security_version?: number;
  compatible?: string[];
  /** The signing key (PKCS#8 PEM); the trusted test key by default. */
  privateKeyPem?: string;
  remove_keys?: string[];
}

const EMPTY_SHA256 = createHash('sha256').digest('hex');

/**
 * A valid signed package: one file per module under modules/<name>/, the manifest with sizes and
 * hashes, signed. `extra` entries go into the zip too, named by no module.
 */
export async function buildPackage(
  version: string,
  modules: ModuleSpec[],
  extra: FileSpec[] = [],
  options: PackageOptions = {},
): Promise<Buffer> {
  const payload = new Map<string, PayloadFile>();
  for (const m of modules) {
    if (!m.src)
      payload.set(`modules/${m.name}/file`, {
        data: Buffer.from(m.data ?? `${m.name} ${version}\n`),
        mode: m.mode ?? 0o100755,
        compress: m.compress,
      });
  }
  const description = {
    version,
    compatible: options.compatible ?? [TEST_PRODUCT_ID],
    security_version: options.security_version ?? 0,
    ...(options.remove_keys ? { remove_keys: options.remove_keys } : {}),
    modules: modules.map((m) => ({
      name: m.name,
      src: m.src ?? `modules/${m.name}/file`,
      dst: m.dst,
      // a src with no file behind it: the device must say so, not miss a hash
      ...(m.src ? { size: 0, sha256: EMPTY_SHA256 } : {}),
      ...(m.process_name ? { process_name: m.process_name } : {}),
      ...(m.restart_order !== undefined ? { restart_order: m.restart_order } : {}),
      ...(m.post_cmds ? { post_cmds: m.post_cmds } : {}),
    })),
  };
  const key = options.privateKeyPem ?? testKey.privateKeyPem;
  if (!extra.length) return (await packPackage(description, payload, key)).zip!;
  const { manifest } = await packPackage(description, payload, key);
  const entries = [...[...payload].map(([name, f]) => ({ ...f, name })), ...extra.map(entryOf)];
  return (await writeSignedZip(manifestBytesOf(manifest), { privateKeyPem: key }, entries))!;
}

const entryOf = (f: FileSpec) => ({
  name: f.name,
  data: Buffer.from(f.data ?? ''),
  mode: f.mode,
  dir: f.dir,
  compress: f.compress,
});

/** A package of these exact manifest bytes (or this object as the tool writes it), signed with the test key unless told otherwise. */
export async function signedZip(
  manifest: string | Buffer | object,
  files: FileSpec[],
  privateKeyPem = testKey.privateKeyPem,
): Promise<Buffer> {
  const bytes = Buffer.isBuffer(manifest)
    ? manifest
    : typeof manifest === 'string'
      ? Buffer.from(manifest)
      : manifestBytesOf(manifest);
  return (await writeSignedZip(bytes, { privateKeyPem }, files.map(entryOf)))!;
}

/**
 * A signed package of exactly `size` bytes (a stored random payload, the zip's comment making up
 * the last bytes), for the download tests that name their package's size up front.
 */
export async function packageOfSize(size: number, version = '1.0.0'): Promise<Buffer> {
  const random = randomBytes(size);
  let payloadBytes = Math.max(1, size - 2048);
  for (;;) {
    const data = random.subarray(0, payloadBytes);
    const description = {
      version,
      compatible: [TEST_PRODUCT_ID],
      security_version: 0,
      modules: [{ name: 'blob', src: 'blob', dst: '/opt/tope/share/blob' }],
    };
    const { manifest } = await packPackage(
      description,
      new Map([['blob', { data, compress: false }]]),
      testKey.privateKeyPem,
    );
    const bytes = manifestBytesOf(manifest);
    const signature = { text: signManifest(bytes, testKey.privateKeyPem) };
    const entries = [{ name: 'blob', data, compress: false }];
    const short = size - (await writeSignedZip(bytes, signature, entries))!.length;
    if (short >= 0 && short <= 60_000)
      return (await writeSignedZip(bytes, signature, entries, undefined, ' '.repeat(short)))!;
    if (payloadBytes === 1) throw new Error(`no signed package is as small as ${size} bytes`);
    payloadBytes = Math.max(1, payloadBytes + Math.min(short, 0) - 16);
  }
}

/** A module's size and sha256 as the manifest carries them. */
export const hashesOf = (data: string | Buffer) => ({
  size: Buffer.byteLength(data),
  sha256: createHash('sha256').update(data).digest('hex'),
});

/** Replaces a name in both the local header and the central directory (same length). */
export function patchName(zip: Buffer, from: string, to: string): Buffer {
  if (from.length !== to.length) throw new Error('names must have the same length');
  const out = Buffer.from(zip);
  const a = Buffer.from(from);
  let at = 0;
  let n = 0;
  while ((at = out.indexOf(a, at)) >= 0) {
    out.write(to, at, 'latin1');
    at += a.length;
    n++;
  }
  if (n < 2) throw new Error(`${from} found ${n} times`);
  return out;
}

/** Overwrites a 32-bit field of every header of the named entry (offsets: local, central). */
export function patchField(zip: Buffer, name: string, field: 'crc' | 'uncompressed', value: number): Buffer {
  const out = Buffer.from(zip);
  const offsets = { crc: [14, 16], uncompressed: [22, 24] }[field];
  for (const [sig, nameAt, off] of [
    [0x04034b50, 30, offsets[0]],
    [0x02014b50, 46, offsets[1]],
  ] as const) {
    for (let i = 0; i + nameAt < out.length; i++) {
      if (out.readUInt32LE(i) !== sig) continue;
      const nameLen = out.readUInt16LE(sig === 0x04034b50 ? i + 26 : i + 28);
      if (out.toString('latin1', i + nameAt, i + nameAt + nameLen) === name) out.writeUInt32LE(value >>> 0, i + off);
    }
  }
  return out;
}

export const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');

/**
 * Other bytes of the same length and the same CRC-32 (the first bit flipped, the last four bytes
 * adjusted): what only the signed manifest's SHA-256 tells from the original, since the zip's
 * CRC-32 is no defence against someone who may write the file. CRC-32 is affine over GF(2) for a
 * fixed length, so the correction is a linear solve over the 32 bits of the last four bytes.
 */
export function sameCrcOtherBytes(data: Buffer): Buffer {
  const n = data.length;
  if (n < 5) throw new Error('at least 5 bytes');
  const zero = zlib.crc32(Buffer.alloc(n));
  const linear = (delta: Buffer) => (zlib.crc32(delta) ^ zero) >>> 0;
  const unit = (byte: number, bit: number) => {
    const delta = Buffer.alloc(n);
    delta[byte] = 1 << bit;
    return delta;
  };
  // an XOR basis of the last four bytes' bits, each vector with the set of bits that makes it
  const basis = new Map<number, { value: number; bits: number }>();
  for (let k = 0; k < 32; k++) {
    let value = linear(unit(n - 4 + (k >> 3), k & 7));
    let bits = (1 << k) >>> 0;
    for (let top = 31; top >= 0 && value; top--) {
      if (!((value >>> top) & 1)) continue;
      const b = basis.get(top);
      if (!b) {
        basis.set(top, { value, bits });
        break;
      }
      value = (value ^ b.value) >>> 0;
      bits = (bits ^ b.bits) >>> 0;
    }
  }
  let rest = linear(unit(0, 0));
  let correction = 0;
  for (let top = 31; top >= 0; top--) {
    if (!((rest >>> top) & 1)) continue;
    const b = basis.get(top);
    if (!b) throw new Error('no correction found');
    rest = (rest ^ b.value) >>> 0;
    correction = (correction ^ b.bits) >>> 0;
  }
  const out = Buffer.from(data);
  out[0] ^= 1;
  for (let k = 0; k < 32; k++) if ((correction >>> k) & 1) out[n - 4 + (k >> 3)] ^= 1 << (k & 7);
  if (zlib.crc32(out) !== zlib.crc32(data) || out.equals(data)) throw new Error('the CRC-32 correction failed');
  return out;
}

/** Where a stored (uncompressed) entry's bytes are in the zip (`header`: its local header), found through its central directory record. */
export function storedDataOffset(zip: Buffer, name: string): { offset: number; length: number; header: number } {
  const central = Buffer.from('PK\x01\x02', 'latin1');
  for (let c = zip.indexOf(central); c >= 0; c = zip.indexOf(central, c + 4)) {
    if (zip.toString('latin1', c + 46, c + 46 + zip.readUInt16LE(c + 28)) !== name) continue;
    if (zip.readUInt16LE(c + 10) !== 0) throw new Error(`${name} is compressed`);
    const local = zip.readUInt32LE(c + 42);
    return {
      offset: local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28),
      length: zip.readUInt32LE(c + 20),
      header: local,
    };
  }
  throw new Error(`no entry ${name}`);
}

/**
 * A one-entry zip whose local header carries `bytes` more of extra field (one field of an unused
 * ID, as a tool may add: the central directory's copy is what yauzl reads), the end record's
 * offset of the central directory moved to match.
 */
export function withLocalExtra(zip: Buffer, bytes: number): Buffer {
  if (zip.readUInt32LE(0) !== 0x04034b50) throw new Error('no local header at 0');
  const end = zip.lastIndexOf(Buffer.from('PK\x05\x06', 'latin1'));
  if (zip.readUInt16LE(end + 10) !== 1) throw new Error('one entry only');
  const nameLength = zip.readUInt16LE(26);
  const extraLength = zip.readUInt16LE(28);
  if (extraLength + bytes > 0xffff || bytes < 4) throw new Error(`no room for ${bytes} bytes of extra field`);
  const field = Buffer.alloc(bytes, 0x5a);
  field.writeUInt16LE(0xcafe, 0);
  field.writeUInt16LE(bytes - 4, 2);
  const at = 30 + nameLength + extraLength;
  const out = Buffer.concat([zip.subarray(0, at), field, zip.subarray(at)]);
  out.writeUInt16LE(extraLength + bytes, 28);
  out.writeUInt32LE(out.readUInt32LE(end + bytes + 16) + bytes, end + bytes + 16);
  return out;
}

/**
 * A stored entry's bytes in the package file `file` (built as `zip`) replaced, in place, by
 * others of the same CRC-32: what only the signed manifest's SHA-256 tells from the original.
 */
export async function changeStoredEntry(file: string, zip: Buffer, name: string): Promise<void> {
  const { offset, length } = storedDataOffset(zip, name);
  const handle = await fsp.open(file, 'r+'); // the same file, written in place as its owner may
  try {
    await handle.write(sameCrcOtherBytes(zip.subarray(offset, offset + length)), 0, length, offset);
  } finally {
    await handle.close();
  }
}
