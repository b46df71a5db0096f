import path from 'node:path';
import type { Config } from '../config.js';
import { UpdaterError } from '../errors.js';
import type { Logger } from '../log.js';
import { MANIFEST, PackageArchive, type ArchiveLimits } from '../package-archive.js';
import { describeIssues } from '../package-job.js';
import { manifestSchema, type Manifest, type Module } from '../package-manifest.js';
import { checkDeclaredSize, type PayloadExpectation } from './payload.js';
import { checkCompatible, checkFloor, readProductId } from './policy.js';
import {
  decodeSignature,
  describeKeySet,
  loadTrustedKeys,
  SIGNATURE_ENTRY,
  SIGNATURE_MAX_BYTES,
  verifyManifest,
} from './signature.js';

/** What a device trusts (the fetcher and the installer build it from the same config). */
export interface TrustSettings {
  keysDir: string;
  /** Where the device's file system begins (TOPE_ROOT_PREFIX): the keys directory's checks stop there. */
  deviceRoot?: string;
  /** The device's product id (read at each check); null only for the packaging tool's verify without --product. */
  productId: () => Promise<string | null>;
  /** Development only (TOPE_ALLOW_UNSIGNED): a package without manifest.sig passes the signature step. */
  allowUnsigned: boolean;
  /** The security floor now (read at each check: the installer raises it). */
  floor: () => Promise<number>;
}

export const archiveLimits = (config: Config): ArchiveLimits => ({
  maxBytes: config.TOPE_ZIP_MAX_BYTES,
  maxEntries: config.TOPE_ZIP_MAX_ENTRIES,
});

/** Logged at each start of a service that takes packages while unsigned ones are allowed. */
export const UNSIGNED_ALLOWED_WARNING =
  'TOPE_ALLOW_UNSIGNED is set: packages without manifest.sig are accepted (development only, never on a device in the field)';

export function trustSettings(config: Config, floor: () => Promise<number>, log: Logger): TrustSettings {
  const host = (devicePath: string) => path.join(config.TOPE_ROOT_PREFIX, devicePath);
  // a setting that turns the trust chain's first check off must not go unnoticed in the journal
  if (config.TOPE_ALLOW_UNSIGNED) log.warn({ setting: 'TOPE_ALLOW_UNSIGNED' }, UNSIGNED_ALLOWED_WARNING);
  const keysDir = host(config.TOPE_TRUSTED_KEYS_DIR);
  // nor a key the checks skip: said at the start, not only once a package comes and is refused
  loadTrustedKeys(keysDir, config.TOPE_ROOT_PREFIX).then(
    (found) => {
      const problem = describeKeySet(found, keysDir);
      if (problem) log.warn({ keysDir, trusted: found.keys.map((k) => k.name) }, problem);
    },
    (e: Error) => log.warn({ keysDir, err: e.message }, `the trusted keys in ${keysDir} could not be read`),
  );
  return {
    keysDir,
    deviceRoot: config.TOPE_ROOT_PREFIX,
    productId: () => readProductId(host(config.TOPE_PRODUCT_ID_FILE)),
    allowUnsigned: config.TOPE_ALLOW_UNSIGNED,
    floor,
  };
}

export interface TrustedPackage {
  manifest: Manifest;
  /** The trusted key file that verified it; null for an unsigned package under TOPE_ALLOW_UNSIGNED. */
  signedBy: string | null;
  /** The usable key files of the trusted keys directory now (what a key rotation starts from). */
  trustedKeys: string[];
}

/** What extraction checks a module's bytes against. */
export const expectationOf = (m: Module): PayloadExpectation => ({
  module: m.name,
  src: m.src,
  size: m.size,
  sha256: m.sha256,
});

/** The directories above a path in the zip ("a/b/c" -> "a", "a/b"). */
const parentsOf = (name: string): string[] => {
  const parts = name.split('/');
  return parts.slice(1).map((_, i) => parts.slice(0, i + 1).join('/'));
};

/**
 * The one trust check, run by the fetcher right after the download and by the installer on the
 * file it reads, before any change: signature by a trusted key over manifest.json's exact bytes, the
 * manifest's shape, compatibility, security floor, and a zip whose every entry the manifest names
 * with its size. The payload's SHA-256 is checked while it is extracted (payload.ts).
 */
export async function checkPackageTrust(archive: PackageArchive, settings: TrustSettings): Promise<TrustedPackage> {
  const bytes = await archive.readManifestBytes();
  const sigEntry = archive.files.get(SIGNATURE_ENTRY);
  const found = await loadTrustedKeys(settings.keysDir, settings.deviceRoot);
  let signedBy: string | null = null;
  if (sigEntry) {
    if (sigEntry.uncompressedSize > SIGNATURE_MAX_BYTES) {
      throw new UpdaterError(
        'SIGNATURE_MALFORMED',
        `${SIGNATURE_ENTRY} is ${sigEntry.uncompressedSize} bytes; a signature is 88 characters of base64`,
      );
    }
    const signature = decodeSignature(await archive.readSmall(sigEntry));
    signedBy = verifyManifest(bytes, signature, found, settings.keysDir);
  } else if (!settings.allowUnsigned) {
    throw new UpdaterError(
      'SIGNATURE_MISSING',
      `${SIGNATURE_ENTRY} not found in package: unsigned packages are refused`,
    );
  }

  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new UpdaterError('INVALID_MANIFEST', `manifest.json is not valid JSON: ${(e as Error).message}`);
  }
  const parsed = manifestSchema.safeParse(raw);
  if (!parsed.success) throw new UpdaterError('INVALID_MANIFEST', describeIssues(parsed.error));
  const manifest = parsed.data;

  const productId = await settings.productId();
  if (productId !== null) checkCompatible(manifest, productId);
  checkFloor(manifest, await settings.floor());

  const named = new Set<string>();
  for (const m of manifest.modules) {
    const entry = archive.files.get(m.src);
    if (!entry)
      throw new UpdaterError('INVALID_MANIFEST', `module ${m.name}: src ${m.src} is not a regular file in the package`);
    checkDeclaredSize(expectationOf(m), entry.uncompressedSize);
    named.add(m.src);
  }
  const parents = new Set([...named].flatMap(parentsOf));
  for (const name of archive.files.keys()) {
    if (name !== MANIFEST && name !== SIGNATURE_ENTRY && !named.has(name)) {
      throw new UpdaterError('INVALID_PACKAGE', `entry ${name} is named by no module of the signed manifest`);
    }
  }
  for (const dir of archive.dirs) {
    if (!parents.has(dir))
      throw new UpdaterError('INVALID_PACKAGE', `directory entry ${dir}/ holds no module of the signed manifest`);
  }
  return { manifest, signedBy, trustedKeys: found.keys.map((k) => k.name) };
}

/** The trust check of a package file on its own (the fetcher's, right after the download). */
export async function checkPackageFile(
  file: string,
  limits: ArchiveLimits,
  settings: TrustSettings,
): Promise<TrustedPackage> {
  const archive = await PackageArchive.open(file, limits);
  try {
    return await checkPackageTrust(archive, settings);
  } finally {
    archive.close();
  }
}
