// `make run`'s simulated device trusts a development key, so that the README walk-through and
// anything scripted against `make run` go through the real signature checks (TOPE_ALLOW_UNSIGNED
// stays off). On the first start: a key pair, the private half at var/dev-signing-key.pem
// (PKCS#8 PEM, what `make sample` signs with), the public half in the device's trusted keys
// directory, and the product id `tope-dev`. Later starts keep what is there.
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../shared/config.js';
import { newKeyPair } from './tope-pack/pack.js';

export const DEV_SIGNING_KEY = 'var/dev-signing-key.pem';
export const DEV_PRODUCT_ID = 'tope-dev';
const DEV_KEY_FILE = 'tope-dev.pub';

/** Creates what is missing; returns the private key's path. */
export function ensureDevTrust(env: NodeJS.ProcessEnv = process.env): string {
  const config = loadConfig({ TOPE_ROOT_PREFIX: path.resolve('var/root'), ...env });
  const host = (devicePath: string) => path.join(config.TOPE_ROOT_PREFIX, devicePath);
  const privateFile = path.resolve(DEV_SIGNING_KEY);
  mkdirSync(path.dirname(privateFile), { recursive: true });
  if (!existsSync(privateFile)) writeFileSync(privateFile, newKeyPair().privateKeyPem, { mode: 0o600 });
  const publicPem = createPublicKey(createPrivateKey(readFileSync(privateFile))).export({ type: 'spki', format: 'pem' }).toString();
  const keysDir = host(config.TOPE_TRUSTED_KEYS_DIR);
  mkdirSync(keysDir, { recursive: true });
  writeFileSync(path.join(keysDir, DEV_KEY_FILE), publicPem);
  const productIdFile = host(config.TOPE_PRODUCT_ID_FILE);
  mkdirSync(path.dirname(productIdFile), { recursive: true });
  if (!existsSync(productIdFile)) writeFileSync(productIdFile, `${DEV_PRODUCT_ID}\n`);
  return privateFile;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) ensureDevTrust();
