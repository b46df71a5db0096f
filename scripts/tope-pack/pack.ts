import { createHash, generateKeyPairSync } from 'node:crypto';
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import yazl from 'yazl';
import { MANIFEST } from '../../shared/package-archive.js';
import type { Manifest, Module } from '../../shared/package-manifest.js';
import { SIGNATURE_ENTRY, signManifest } from '../../shared/trust/signature.js';

// The one way packages are made: `tope-pack build` (vendors, `make sample`) and the tests'
// package builder both come here. manifest.json is written with every module's size and
// SHA-256, signed over its exact bytes, and zipped with manifest.sig and the payload files.

/** A module as a package author describes it: the tool fills in `size` and `sha256`. */
export type ModuleDescription = Omit<Module, 'size' | 'sha256'> & Partial<Pick<Module, 'size' | 'sha256'>>;
export type PackageDescription = Omit<Manifest, 'modules'> & { modules: ModuleDescription[] };

/** A file to put in the zip: bytes in memory, a file on disk, or a stream opened anew for each pass (big payloads). */
export interface PayloadFile {
  data?: Buffer;
  file?: string;
  open?: () => Readable;
  /** st_mode with its type bits (0o100755); default 0o100644. */
  mode?: number;
  compress?: boolean;
}

export interface ZipEntry extends PayloadFile {
  name: string;
  dir?: boolean;
}

const source = (f: PayloadFile): Readable | Buffer =>
  f.open ? f.open() : f.file ? createReadStream(f.file, { highWaterMark: 1024 * 1024 }) : (f.data ?? Buffer.alloc(0));

/** A payload file's size and SHA-256, as the manifest gives them. */
export async function payloadDigest(payloadFile: PayloadFile): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  let size = 0;
  const src = source(payloadFile);
  for await (const chunk of (Buffer.isBuffer(src) ? [src] : src) as AsyncIterable<Buffer>) {
    size += chunk.length;
    hash.update(chunk);
  }
  return { size, sha256: hash.digest('hex') };
}

/** The manifest's bytes as the tool writes them (what the signature covers). */
export const manifestBytesOf = (manifest: unknown): Buffer => Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`);

/**
 * A zip of manifest.json (these exact bytes), manifest.sig (signed with `privateKeyPem`, or
 * the given text, or none when null) and `entries`, written to `out` or returned. `comment` is
 * the zip's comment (not an entry; the device ignores it).
 */
export async function writeSignedZip(
  manifest: Buffer,
  signature: { privateKeyPem: string | Buffer } | { text: string | Buffer } | null,
  entries: ZipEntry[],
  out?: string,
  comment?: string,
): Promise<Buffer | null> {
  const zip = new yazl.ZipFile();
  zip.addBuffer(manifest, MANIFEST, { mode: 0o100644 });
  if (signature) {
    const text = 'text' in signature ? signature.text : signManifest(manifest, signature.privateKeyPem);
    zip.addBuffer(Buffer.from(text), SIGNATURE_ENTRY, { mode: 0o100644 });
  }
  for (const e of entries) {
    if (e.dir) zip.addEmptyDirectory(e.name, { mode: e.mode ?? 0o40755 });
    else {
      const bytes = source(e);
      const options = { mode: e.mode ?? 0o100644, compress: e.compress ?? true };
      if (Buffer.isBuffer(bytes)) zip.addBuffer(bytes, e.name, options);
      else zip.addReadStream(bytes, e.name, options);
    }
  }
  zip.end({ forceZip64Format: false, comment: comment ?? '' });
  if (out) {
    await pipeline(zip.outputStream as Readable, createWriteStream(out));
    return null;
  }
  const chunks: Buffer[] = [];
  for await (const c of zip.outputStream as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

/**
 * A signed package: every module's `size` and `sha256` computed from its payload (`payload` maps
 * each `src` to its file), the manifest written and signed, the zip built. Nothing here judges
 * the description (the device does); the CLI checks a vendor's description before it comes here.
 */
export async function packPackage(
  description: PackageDescription,
  payload: ReadonlyMap<string, PayloadFile>,
  privateKeyPem: string | Buffer,
  out?: string,
): Promise<{ zip: Buffer | null; manifest: Manifest }> {
  const digests = new Map<string, { size: number; sha256: string }>();
  for (const [src, file] of payload) digests.set(src, await payloadDigest(file));
  const manifest = {
    ...description,
    modules: description.modules.map((m) => ({
      ...m,
      ...digests.get(m.src),
      ...(m.size !== undefined ? { size: m.size } : {}),
      ...(m.sha256 ? { sha256: m.sha256 } : {}),
    })),
  } as Manifest;
  const entries = [...payload].map(([name, f]) => ({ ...f, name }));
  return { zip: await writeSignedZip(manifestBytesOf(manifest), { privateKeyPem }, entries, out), manifest };
}

/** The payload of a description from a directory: each module's `src` is a path under `dir`. */
export async function payloadFromDirectory(
  description: PackageDescription,
  dir: string,
): Promise<Map<string, PayloadFile>> {
  const payload = new Map<string, PayloadFile>();
  for (const m of description.modules) {
    const file = path.join(dir, m.src);
    const st = await fsp.stat(file).catch(() => null);
    if (!st?.isFile()) throw new Error(`module ${m.name}: ${file} is not a regular file`);
    payload.set(m.src, { file, mode: 0o100000 | (st.mode & 0o777) });
  }
  return payload;
}

/** A new Ed25519 key pair: the private half as PKCS#8 PEM, the public as SPKI PEM (a keys.d/*.pub file). */
export function newKeyPair(): { privateKeyPem: string; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

/** Writes a new key pair (the private key 0600, refusing to overwrite one). */
export async function keygen(privateFile: string, publicFile: string): Promise<void> {
  const pair = newKeyPair();
  await fsp.mkdir(path.dirname(path.resolve(privateFile)), { recursive: true });
  // a keys directory a device (or `tope-pack verify`) trusts is writable by its owner only
  await fsp.mkdir(path.dirname(path.resolve(publicFile)), { recursive: true, mode: 0o755 });
  await fsp.writeFile(privateFile, pair.privateKeyPem, { mode: 0o600, flag: 'wx' });
  await fsp.writeFile(publicFile, pair.publicKeyPem, { mode: 0o644 });
}
