import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { constants as fsConstants, promises as fsp, type Stats } from 'node:fs';
import path from 'node:path';
import { isErrnoException, UpdaterError } from '../errors.js';

// The package signature: manifest.sig holds the standard base64 (with its padding, and an
// optional trailing newline) of the 64-byte Ed25519 signature over the exact bytes of
// manifest.json. The manifest names every payload file's size and SHA-256, so the signature
// covers every byte that gets installed. This module is the one place that signs and verifies.

export const SIGNATURE_ENTRY = 'manifest.sig';
/** Far more than 88 characters and a newline: a bigger entry is refused before it is read. */
export const SIGNATURE_MAX_BYTES = 1024;
const ED25519_SIGNATURE_BYTES = 64;
const BASE64_SIGNATURE = /^[A-Za-z0-9+/]{86}==\n?$/;
/** A trusted key file's mode as the installer writes it (a rotation): public, written by its owner only. */
export const TRUSTED_KEY_MODE = 0o644;

/** A trusted vendor key and the file it came from (its name says which key verified a package). */
export interface TrustedKey {
  name: string;
  key: KeyObject;
}

/** An Ed25519 public key from PEM (SPKI), or an explanation of why the text is not one. */
export function parsePublicKey(pem: string | Buffer): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch (e) {
    throw new Error(`not a PEM public key: ${(e as Error).message}`);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`a ${key.asymmetricKeyType} key, not Ed25519`);
  return key;
}

/** The trusted keys as loadTrustedKeys found them. */
export interface KeySet {
  keys: TrustedKey[];
  /** "<file>: why", for each *.pub not used. */
  skipped: string[];
  /** Why the directory itself is not trusted (then `keys` is empty). */
  refused: string | null;
}

/** Who may own the trusted keys and their directory: root, or the process reading them (make run, the tests). */
const trustedOwner = (uid: number): boolean => uid === 0 || uid === process.geteuid?.();

/** Why a key file or the keys directory cannot be trusted (anyone but root or the reader could have written it), or null. */
function unsafeOwnership(st: Stats, what: string): string | null {
  if (!trustedOwner(st.uid)) return `${what} is owned by uid ${st.uid}, not root`;
  if (st.mode & 0o022) return `${what} is writable by group or others (mode ${(st.mode & 0o7777).toString(8)})`;
  return null;
}

/** `p`'s directories from its parent up to `top` (or `/`, for a `p` not under `top`), `top` included. */
function directoriesAbove(p: string, top: string): string[] {
  const out: string[] = [];
  for (let at = path.dirname(p); ; at = path.dirname(at)) {
    out.push(at);
    if (at === top || path.dirname(at) === at) return out;
  }
}

/**
 * Why a directory above the keys directory cannot be trusted, or null: each, up to the device's
 * root (`/`, or TOPE_ROOT_PREFIX under `make run` and the tests), must be held as the keys
 * directory is, since whoever could write to one could put another keys directory in its place. A
 * sticky directory (/tmp) may be writable by all: only an entry's owner can rename it. Both the
 * directories of the path as configured (a symbolic link on it is replaced by writing the
 * directory that holds it) and those of the directory it resolves to are checked.
 */
async function unsafeAncestor(dir: string, deviceRoot: string): Promise<string | null> {
  const top = path.resolve(deviceRoot);
  const realTop = await fsp.realpath(top).catch(() => top);
  const above = [...directoriesAbove(path.resolve(dir), top), ...directoriesAbove(await fsp.realpath(dir), realTop)];
  for (const at of new Set(above)) {
    const why = await unsafeHolder(at);
    if (why) return why;
  }
  return null;
}

/** Why a directory on the way to a key cannot be trusted, or null: held as the keys directory, or sticky and root's. */
async function unsafeHolder(dir: string): Promise<string | null> {
  const st = await fsp.stat(dir);
  const sticky = (st.mode & 0o1000) !== 0;
  return sticky && trustedOwner(st.uid) ? null : unsafeOwnership(st, dir);
}

/** At most this many links from a key's name to its file (the kernel's own limit is 40). */
const KEY_LINK_HOPS = 8;

/**
 * For a `*.pub` that is a symbolic link: why a directory holding a link on the way or the file
 * it ends at cannot be trusted, or null. Whoever could write there could point the link, or put
 * a file, elsewhere; the keys directory's own checks do not reach them.
 */
async function unsafeLinkTarget(file: string, deviceRoot: string): Promise<string | null> {
  let at = file;
  for (let hop = 0; (await fsp.lstat(at)).isSymbolicLink(); hop++) {
    if (hop === KEY_LINK_HOPS) return `more than ${KEY_LINK_HOPS} links lead to the file`;
    at = path.resolve(path.dirname(at), await fsp.readlink(at));
    const holder = path.dirname(at);
    const why = (await unsafeHolder(holder)) ?? (await unsafeAncestor(holder, deviceRoot));
    if (why) return `it links to ${at}: ${why}`;
  }
  return null;
}

/**
 * The keys of the trust directory: every `*.pub` that is an Ed25519 public key in a regular file
 * owned by root (or the reading process) and writable by no one else, in a directory held the
 * same way, as is every directory above it (what sshd's StrictModes asks of authorized_keys). A file that is not one is skipped
 * (and named in `skipped`), so one bad file cannot lock the device out; a directory that is not
 * held so trusts no key (`refused` says why): whoever could write to it could add their own.
 * A `*.pub` may be a symbolic link (an image that links its keys from /usr/share): what counts is
 * the file opened, whose owner and mode are read from the open descriptor, so the bytes read are
 * those of the file checked, and every directory holding a link on the way or the file, and those
 * above them, must be held as the keys directory is.
 */
export async function loadTrustedKeys(dir: string, deviceRoot = '/'): Promise<KeySet> {
  let dirStat: Stats;
  try {
    dirStat = await fsp.stat(dir);
  } catch (e) {
    if (isErrnoException(e, 'ENOENT')) return { keys: [], skipped: [], refused: null };
    throw e;
  }
  if (!dirStat.isDirectory()) return { keys: [], skipped: [], refused: `${dir} is not a directory` };
  const refused = unsafeOwnership(dirStat, dir) ?? (await unsafeAncestor(dir, deviceRoot));
  if (refused) return { keys: [], skipped: [], refused };
  const names = (await fsp.readdir(dir)).filter((n) => n.endsWith('.pub')).sort();
  const keys: TrustedKey[] = [];
  const skipped: string[] = [];
  for (const name of names) {
    try {
      // O_NONBLOCK: a FIFO named *.pub must not hang the check
      const handle = await fsp.open(path.join(dir, name), fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
      try {
        const st = await handle.stat();
        if (!st.isFile()) throw new Error('not a regular file');
        const unsafe = unsafeOwnership(st, 'the file') ?? (await unsafeLinkTarget(path.join(dir, name), deviceRoot));
        if (unsafe) throw new Error(unsafe);
        keys.push({ name, key: parsePublicKey(await handle.readFile()) });
      } finally {
        await handle.close();
      }
    } catch (e) {
      skipped.push(`${name}: ${(e as Error).message}`);
    }
  }
  return { keys, skipped, refused };
}

/** What an operator should hear at a service's start about the trusted keys, or null when all is well. */
export function describeKeySet(found: KeySet, dir: string): string | null {
  if (found.refused) return `no key in ${dir} is trusted: ${found.refused}; every signed package will be refused`;
  const skipped = found.skipped.length ? `; not trusted: ${found.skipped.join('; ')}` : '';
  if (!found.keys.length) return `no trusted Ed25519 key in ${dir}${skipped}; every signed package will be refused`;
  return skipped ? `trusted keys in ${dir}: ${found.keys.map((k) => k.name).join(', ')}${skipped}` : null;
}

/** The 64 signature bytes from manifest.sig's text, or SIGNATURE_MISSING / SIGNATURE_MALFORMED. */
export function decodeSignature(text: Buffer): Buffer {
  if (text.length === 0) throw new UpdaterError('SIGNATURE_MISSING', `${SIGNATURE_ENTRY} is empty`);
  if (text.length > SIGNATURE_MAX_BYTES) {
    throw new UpdaterError(
      'SIGNATURE_MALFORMED',
      `${SIGNATURE_ENTRY} is ${text.length} bytes; a signature is 88 characters of base64`,
    );
  }
  const ascii = text.toString('latin1');
  if (!BASE64_SIGNATURE.test(ascii)) {
    throw new UpdaterError(
      'SIGNATURE_MALFORMED',
      `${SIGNATURE_ENTRY} is not the base64 of a ${ED25519_SIGNATURE_BYTES}-byte Ed25519 signature`,
    );
  }
  return Buffer.from(ascii.trimEnd(), 'base64');
}

/** The name of the trusted key that verifies `signature` over `manifest`, or SIGNATURE_INVALID saying why none did. */
export function verifyManifest(manifest: Buffer, signature: Buffer, found: KeySet, keysDir: string): string {
  const { keys, skipped, refused } = found;
  const notUsed = skipped.length ? `; not trusted: ${skipped.join('; ')}` : '';
  if (refused) throw new UpdaterError('SIGNATURE_INVALID', `no key in ${keysDir} is trusted: ${refused}`);
  if (keys.length === 0) throw new UpdaterError('SIGNATURE_INVALID', `no trusted Ed25519 key in ${keysDir}${notUsed}`);
  const by = keys.find((k) => verify(null, manifest, k.key, signature));
  if (!by) {
    throw new UpdaterError(
      'SIGNATURE_INVALID',
      `the signature of manifest.json verifies under none of the ${keys.length} trusted keys in ${keysDir} (${keys.map((k) => k.name).join(', ')})${notUsed}`,
    );
  }
  return by.name;
}

/** manifest.sig's text for `manifest`, signed with an Ed25519 private key (PEM, PKCS#8). */
export function signManifest(manifest: Buffer, privateKeyPem: string | Buffer): string {
  const key = createPrivateKey({ key: privateKeyPem, format: 'pem' });
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`the signing key is ${key.asymmetricKeyType}, not Ed25519`);
  return `${sign(null, manifest, key).toString('base64')}\n`;
}
