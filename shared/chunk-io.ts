import { read } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { Transform, Writable } from 'node:stream';

// Whole reads and writes of chunks, and checks fed chunk by chunk, for the package archive's
// extraction (shared/package-archive.ts) and the checks it runs on what it extracts.

/** `buffer` filled from `fd` at `position`; `endedEarly()` is the error when the file ends first. */
export function readFully(fd: number, buffer: Buffer, position: number, endedEarly: () => Error): Promise<void> {
  return new Promise((resolve, reject) => {
    const next = (offset: number): void =>
      read(fd, buffer, offset, buffer.length - offset, position + offset, (err, bytes) => {
        if (err) reject(err);
        else if (bytes === 0) reject(endedEarly());
        else if (offset + bytes < buffer.length) next(offset + bytes);
        else resolve();
      });
    next(0);
  });
}

/** All of `chunk` written at `file`'s position, a short write continued. */
export async function writeFully(file: FileHandle, chunk: Buffer): Promise<void> {
  for (let offset = 0; offset < chunk.length;) offset += (await file.write(chunk, offset)).bytesWritten;
}

/**
 * A stream's chunks appended to `file`, those queued meanwhile in one writev. Not the handle's own
 * createWriteStream: with autoClose off it keeps a reference that makes the handle's close() wait forever.
 */
export const appendingTo = (file: FileHandle): Writable =>
  new Writable({
    write(chunk: Buffer, _encoding, done) {
      writeFully(file, chunk).then(() => done(), done);
    },
    writev(queued, done) {
      const chunks = queued.map((q) => q.chunk as Buffer);
      file
        .writev(chunks)
        .then(async ({ bytesWritten }) => {
          // a short writev: the rest of each chunk, in order
          for (const chunk of chunks) {
            if (bytesWritten < chunk.length) await writeFully(file, chunk.subarray(bytesWritten));
            bytesWritten = Math.max(0, bytesWritten - chunk.length);
          }
        })
        .then(() => done(), done);
    },
  });

/** A check fed the bytes of a file in order: `update` may refuse at once, `end` refuses at the end. */
export interface ChunkCheck {
  update(chunk: Buffer): void;
  end(): void;
}

/**
 * `check` as a pass-through stream, failing with the check's own error (for entries read through
 * a stream: the file's temp name is removed on the failure, so nothing is renamed into place).
 */
export function checkingStream(check: ChunkCheck): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      try {
        check.update(chunk);
      } catch (e) {
        return done(e as Error);
      }
      done(null, chunk);
    },
    flush(done) {
      try {
        check.end();
      } catch (e) {
        return done(e as Error);
      }
      done();
    },
  });
}
