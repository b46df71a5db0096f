import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { promises as fsp } from 'node:fs';
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

/**
 * The keys of the trust directory: every `*.pub` that is an Ed25519 public key. A file that is
 * not one is skipped (and named in `skipped`), so one bad file cannot lock the device out.
 */
export async function loadTrustedKeys(dir: string): Promise<{ keys: TrustedKey[]; skipped: string[] }> {
  let names: string[];
  try {
    names = (await fsp.readdir(dir)).filter((n) => n.endsWith('.pub')).sort();
  } catch (e) {
    if (isErrnoException(e, 'ENOENT')) return { keys: [], skipped: [] };
    throw e;
  }
  const keys: TrustedKey[] = [];
  const skipped: string[] = [];
  for (const name of names) {
    try {
      keys.push({ name, key: parsePublicKey(await fsp.readFile(path.join(dir, name))) });
    } catch (e) {
      skipped.push(`${name} (${(e as Error).message})`);
    }
  }
  return { keys, skipped };
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

/** The name of the trusted key that verifies `signature` over `manifest`, or SIGNATURE_INVALID. */
export function verifyManifest(manifest: Buffer, signature: Buffer, keys: TrustedKey[], keysDir: string): string {
  if (keys.length === 0) throw new UpdaterError('SIGNATURE_INVALID', `no trusted Ed25519 key in ${keysDir}`);
  const by = keys.find((k) => verify(null, manifest, k.key, signature));
  if (!by) {
    throw new UpdaterError(
      'SIGNATURE_INVALID',
      `the signature of manifest.json verifies under none of the ${keys.length} trusted keys in ${keysDir} (${keys.map((k) => k.name).join(', ')})`,
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
