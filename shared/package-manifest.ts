import { z } from 'zod';
import { plainText, unitNameSchema } from './manifest-names.js';
import { versionSchema } from './package-job.js';

// manifest.json, the package format's one schema (README "A package"). Other tools build these
// packages, so a field's meaning never changes; the fetcher reads it to decide trust, the
// installer to decide trust again and to plan the install.

export const productIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1-64 characters of A-Z a-z 0-9 . _ -');
/** A key file in the trusted keys directory, as a package names one to remove. */
export const keyFileNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}\.pub$/, 'must be a file name ending in .pub');

export const moduleSchema = z.object({
  name: plainText(z.string().min(1).max(128)),
  src: plainText(z.string().min(1).max(1024)),
  dst: plainText(z.string().min(2).max(1024)),
  /** The src file's length and SHA-256, checked while it is extracted. */
  size: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  sha256: z.string().regex(/^[a-f0-9]{64}$/, 'must be 64 lower-case hex characters'),
  process_name: unitNameSchema.nullish(),
  restart_order: z.number().int().min(-1000).max(1000).nullish(),
  post_cmds: z.array(z.string().min(1).max(4096)).max(32).nullish(),
});

export const manifestSchema = z.object({
  version: versionSchema,
  /** The product ids this package is for; the device's must be among them. */
  compatible: z.array(productIdSchema).min(1).max(64),
  /** Raised by the vendor when a package fixes a vulnerability; a device never installs below the highest it ran. */
  security_version: z
    .number()
    .int()
    .min(0)
    .max(2 ** 31 - 1),
  modules: z
    .array(moduleSchema)
    .min(1)
    .max(1000)
    .refine((ms) => new Set(ms.map((m) => m.name)).size === ms.length, 'module names must be unique'),
  /** Key rotation: files of the trusted keys directory this package removes (a new key is a module). */
  remove_keys: z.array(keyFileNameSchema).max(16).nullish(),
});

export type Manifest = z.infer<typeof manifestSchema>;
export type Module = z.infer<typeof moduleSchema>;
