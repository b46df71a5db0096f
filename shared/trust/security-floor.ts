import path from 'node:path';
import * as z from '../schema.js';
import { DurableJson } from '../durable-store.js';
import { UpdaterError } from '../errors.js';

/** In the installer's state directory; the fetcher reads it too (through the tope-installer group). */
export const SECURITY_FLOOR_RECORD = 'security-floor.json';

const floorSchema = z.object({
  security_version: z.number().check(z.int(), z.minimum(0)),
  /** The version whose probation raised it, for the operator reading the file. */
  version: z.string(),
  raisedAt: z.iso.datetime(),
});

/**
 * The security floor: the highest `security_version` of a package that completed its probation.
 * A package below it is refused. Written durably (two generations) and only ever raised; with no
 * file yet (a new device) the floor is 0. Rollbacks by the installer never lower it.
 */
export class SecurityFloor {
  private readonly store: DurableJson<typeof floorSchema>;

  constructor(installerStateDir: string) {
    this.store = new DurableJson(path.join(installerStateDir, SECURITY_FLOOR_RECORD), floorSchema);
  }

  /**
   * The floor now; unreadable (not missing: a permission, an I/O error, or both generations there
   * and neither valid), nothing passes it. A power cut tears at most the newest generation, so two
   * bad ones are a damaged disk or a hand: read as 0, they would let any old signed package in.
   */
  async current(): Promise<number> {
    try {
      const floor = await this.store.read();
      if (floor) return floor.security_version;
      if (await this.store.present())
        throw new Error(`neither it nor ${path.basename(this.store.prevPath)} holds a valid floor`);
      return 0;
    } catch (e) {
      throw new UpdaterError(
        'DOWNGRADE_REFUSED',
        `the security floor in ${this.store.file} cannot be read, so no package can be shown to be at or above it: ${(e as Error).message}`,
      );
    }
  }

  /** After a probation that succeeded: the floor becomes `securityVersion` if that is higher. */
  async raise(securityVersion: number, version: string, now = new Date()): Promise<boolean> {
    // an unreadable floor is rewritten rather than failing an install that passed its probation
    const floor = await this.current().catch(() => -1);
    if (securityVersion <= floor) return false;
    await this.store.write({ security_version: securityVersion, version, raisedAt: now.toISOString() });
    return true;
  }
}
