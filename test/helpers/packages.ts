import { createHash } from 'node:crypto';
import yazl from 'yazl';

// Package zips built by the tests, and the byte-level damage the hostile ones need (yazl
// itself refuses to write a bad name, so those are patched in after the fact).

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
  data?: string;
  mode?: number;
  process_name?: string;
  restart_order?: number;
  post_cmds?: string[];
  src?: string;
}

/** A valid package: manifest.json plus one file per module under modules/<name>/. */
export function buildPackage(version: string, modules: ModuleSpec[], extra: FileSpec[] = [], manifestOverride?: unknown): Promise<Buffer> {
  const manifest = manifestOverride ?? {
    version,
    modules: modules.map((m) => ({
      name: m.name, src: m.src ?? `modules/${m.name}/file`, dst: m.dst,
      ...(m.process_name ? { process_name: m.process_name } : {}),
      ...(m.restart_order !== undefined ? { restart_order: m.restart_order } : {}),
      ...(m.post_cmds ? { post_cmds: m.post_cmds } : {}),
    })),
  };
  return buildZip([
    { name: 'manifest.json', data: JSON.stringify(manifest) },
    ...modules.filter((m) => !m.src).map((m) => ({ name: `modules/${m.name}/file`, data: m.data ?? `${m.name} ${version}\n`, mode: m.mode ?? 0o100755 })),
    ...extra,
  ]);
}

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
  for (const [sig, nameAt, off] of [[0x04034b50, 30, offsets[0]], [0x02014b50, 46, offsets[1]]] as const) {
    for (let i = 0; i + nameAt < out.length; i++) {
      if (out.readUInt32LE(i) !== sig) continue;
      const nameLen = out.readUInt16LE(sig === 0x04034b50 ? i + 26 : i + 28);
      if (out.toString('latin1', i + nameAt, i + nameAt + nameLen) === name) out.writeUInt32LE(value >>> 0, i + off);
    }
  }
  return out;
}

export const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');
