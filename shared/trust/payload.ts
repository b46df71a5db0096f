import { createHash } from 'node:crypto';
import { Transform } from 'node:stream';
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
 * A pass-through that hashes the bytes as they are extracted and fails the stream at its end
 * when their size or SHA-256 is not the signed manifest's: the one payload check, run while the
 * file is written (its temp name is removed on the failure, so nothing is renamed into place).
 */
export function payloadCheck(expected: PayloadExpectation): Transform {
  const hash = createHash('sha256');
  let size = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      size += chunk.length;
      if (size > expected.size)
        return done(mismatch(expected, `is larger than the ${expected.size} bytes the signed manifest says`));
      hash.update(chunk);
      done(null, chunk);
    },
    flush(done) {
      if (size !== expected.size)
        return done(mismatch(expected, `is ${size} bytes, the signed manifest says ${expected.size}`));
      const got = hash.digest('hex');
      done(
        got === expected.sha256
          ? null
          : mismatch(expected, `has SHA-256 ${got}, the signed manifest says ${expected.sha256}`),
      );
    },
  });
}
