// `make run`'s simulated device trusts a development key, so that the README walk-through and
// anything scripted against `make run` go through the real signature checks (TOPE_ALLOW_UNSIGNED
// stays off). On the first start: a key pair, the private half at var/dev-signing-key.pem
// (PKCS#8 PEM, what `make sample` signs with), the public half in the device's trusted keys
// directory, and the product id `tope-dev`. Later starts keep what is there.
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { configSchema } from '../shared/config.js';
import { newKeyPair } from './tope-pack/pack.js';

export const DEV_SIGNING_KEY = 'var/dev-signing-key.pem';
export const DEV_PRODUCT_ID = 'tope-dev';
const DEV_KEY_FILE = 'tope-dev.pub';

/** A setting as the services read it; an invalid one is theirs to report (CONFIG_INVALID), not this script's. */
function setting(
  env: NodeJS.ProcessEnv,
  key: 'TOPE_ROOT_PREFIX' | 'TOPE_TRUSTED_KEYS_DIR' | 'TOPE_PRODUCT_ID_FILE',
): string {
  const parsed = configSchema.shape[key].safeParse(env[key] || undefined);
  return parsed.success ? parsed.data : configSchema.shape[key].parse(undefined);
}

/** Creates what is missing; returns the private key's path. */
export function ensureDevTrust(env: NodeJS.ProcessEnv = process.env, keyFile = DEV_SIGNING_KEY): string {
  const root = env.TOPE_ROOT_PREFIX ? setting(env, 'TOPE_ROOT_PREFIX') : path.resolve('var/root');
  const host = (devicePath: string) => path.join(root, devicePath);
  const privateFile = path.resolve(keyFile);
  mkdirSync(path.dirname(privateFile), { recursive: true });
  if (!existsSync(privateFile)) writeFileSync(privateFile, newKeyPair().privateKeyPem, { mode: 0o600 });
  const publicPem = createPublicKey(createPrivateKey(readFileSync(privateFile)))
    .export({ type: 'spki', format: 'pem' })
    .toString();
  const keysDir = host(setting(env, 'TOPE_TRUSTED_KEYS_DIR'));
  // what the device asks of its keys (README, "Keys on the device"), whatever this user's umask
  mkdirSync(keysDir, { recursive: true, mode: 0o755 });
  chmodSync(keysDir, 0o755);
  writeFileSync(path.join(keysDir, DEV_KEY_FILE), publicPem, { mode: 0o644 });
  chmodSync(path.join(keysDir, DEV_KEY_FILE), 0o644);
  const productIdFile = host(setting(env, 'TOPE_PRODUCT_ID_FILE'));
  mkdirSync(path.dirname(productIdFile), { recursive: true });
  if (!existsSync(productIdFile)) writeFileSync(productIdFile, `${DEV_PRODUCT_ID}\n`);
  return privateFile;
}

// run by `make run` with where its var directory keeps the key
if (process.argv[1] === fileURLToPath(import.meta.url)) ensureDevTrust(process.env, process.argv[2]);
