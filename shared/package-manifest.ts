import * as z from './schema.js';
import { plainText, unitNameSchema } from './manifest-names.js';
import { versionSchema } from './package-job.js';

// manifest.json, the package format's one schema (README "A package"). Other tools build these
// packages, so a field's meaning never changes; the fetcher reads it to decide trust, the
// installer to decide trust again and to plan the install.

export const productIdSchema = z
  .string()
  .check(z.regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1-64 characters of A-Z a-z 0-9 . _ -'));
/** A key file in the trusted keys directory, as a package names one to remove. */
export const keyFileNameSchema = z
  .string()
  .check(z.regex(/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}\.pub$/, 'must be a file name ending in .pub'));

export const moduleSchema = z.object({
  name: plainText(z.string().check(z.minLength(1), z.maxLength(128))),
  src: plainText(z.string().check(z.minLength(1), z.maxLength(1024))),
  dst: plainText(z.string().check(z.minLength(2), z.maxLength(1024))),
  /** The src file's length and SHA-256, checked while it is extracted. */
  size: z.number().check(z.int(), z.minimum(0), z.maximum(Number.MAX_SAFE_INTEGER)),
  sha256: z.string().check(z.regex(/^[a-f0-9]{64}$/, 'must be 64 lower-case hex characters')),
  process_name: z.nullish(unitNameSchema),
  restart_order: z.nullish(z.number().check(z.int(), z.minimum(-1000), z.maximum(1000))),
  post_cmds: z.nullish(z.array(z.string().check(z.minLength(1), z.maxLength(4096))).check(z.maxLength(32))),
});

export const manifestSchema = z.object({
  version: versionSchema,
  /** The product ids this package is for; the device's must be among them. */
  compatible: z.array(productIdSchema).check(z.minLength(1), z.maxLength(64)),
  /** Raised by the vendor when a package fixes a vulnerability; a device never installs below the highest it ran. */
  security_version: z.number().check(z.int(), z.minimum(0), z.maximum(2 ** 31 - 1)),
  modules: z.array(moduleSchema).check(
    z.minLength(1),
    z.maxLength(1000),
    z.refine((ms) => new Set(ms.map((m) => m.name)).size === ms.length, 'module names must be unique'),
  ),
  /** Key rotation: files of the trusted keys directory this package removes (a new key is a module). */
  remove_keys: z.nullish(z.array(keyFileNameSchema).check(z.maxLength(16))),
});

export type Manifest = z.infer<typeof manifestSchema>;
export type Module = z.infer<typeof moduleSchema>;
