import { createHash } from 'node:crypto';
import type { ChunkCheck } from '../chunk-io.js';
import { UpdaterError } from '../errors.js';

/** What the signed manifest says one module's file is. */
export interface PayloadExpectation {
  module: string;
  src: string;
  size: number;
  sha256: string;
}

const mismatch = (expected: PayloadExpectation, what: string) =>
  new UpdaterError('PAYLOAD_MISMATCH', `module ${expected.module}: ${expected.src} ${what}`);

/** The declared size against the zip's central directory: refused before a byte is read. */
export function checkDeclaredSize(expected: PayloadExpectation, entrySize: number): void {
  if (entrySize !== expected.size)
    throw mismatch(expected, `is ${entrySize} bytes, the signed manifest says ${expected.size}`);
}

/**
 * The one payload check: the bytes of a file, in order, against the signed manifest's size and
 * SHA-256, fed as they are extracted (no second pass). `update` refuses a byte past the declared
 * size at once; `end` refuses a short file or another hash. Both throw PAYLOAD_MISMATCH.
 */
export class PayloadCheck implements ChunkCheck {
  private readonly hash = createHash('sha256');
  private size = 0;

  constructor(private readonly expected: PayloadExpectation) {}

  update(chunk: Buffer): void {
    this.size += chunk.length;
    if (this.size > this.expected.size)
      throw mismatch(this.expected, `is larger than the ${this.expected.size} bytes the signed manifest says`);
    this.hash.update(chunk);
  }

  end(): void {
    const { expected } = this;
    if (this.size !== expected.size)
      throw mismatch(expected, `is ${this.size} bytes, the signed manifest says ${expected.size}`);
    const got = this.hash.digest('hex');
    if (got !== expected.sha256)
      throw mismatch(expected, `has SHA-256 ${got}, the signed manifest says ${expected.sha256}`);
  }
}
