import { promises as fsp } from 'node:fs';
import { UpdaterError } from '../errors.js';
import { productIdSchema, type Manifest } from '../package-manifest.js';

// What this device accepts of a correctly signed package: made for it, and not below its
// security floor. Rollbacks by the installer are not installs and never come here.

/** The device's product id: the first line of its file. Unreadable or malformed, nothing is compatible. */
export async function readProductId(file: string): Promise<string> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    throw new UpdaterError(
      'INCOMPATIBLE_PACKAGE',
      `the device's product id cannot be read from ${file}: ${(e as Error).message}`,
    );
  }
  const id = text.split('\n')[0].trim();
  if (!productIdSchema.safeParse(id).success) {
    throw new UpdaterError(
      'INCOMPATIBLE_PACKAGE',
      `the device's product id in ${file} is not one: ${JSON.stringify(id.slice(0, 80))}`,
    );
  }
  return id;
}

export function checkCompatible(manifest: Manifest, productId: string): void {
  if (!manifest.compatible.includes(productId)) {
    throw new UpdaterError(
      'INCOMPATIBLE_PACKAGE',
      `the package is for ${manifest.compatible.join(', ')}; this device is ${productId}`,
    );
  }
}

export function checkFloor(manifest: Manifest, floor: number): void {
  if (manifest.security_version < floor) {
    throw new UpdaterError(
      'DOWNGRADE_REFUSED',
      `version ${manifest.version} has security_version ${manifest.security_version}, below this device's security floor ${floor}`,
    );
  }
}
