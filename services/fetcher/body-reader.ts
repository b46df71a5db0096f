import { finished, type Readable } from 'node:stream';
import type { UpdaterError } from '../../shared/errors.js';
import type { PartFile } from './part-file.js';

// How an answer's body gets into the part file at loopback speed without costing more CPU than
// the hashing it needs. The body is read in flowing mode ('data' events), not through an async
// iterator (a promise and a stream read per ~64 KiB chunk: ~0.5 s of CPU per GiB here), and its
// chunks are written in batches: whatever arrived while the last write was under way goes out in
// one writev. On a slow link every chunk is written as it comes (nothing waits for a batch to
// fill); at loopback speed the batches reach BATCH_BYTES and the writes, their thread pool
// hand-offs and the hash calls drop from one per chunk to one per few. 256 KiB, not more: 1 MiB
// batches saved no measurable CPU and raised the fetcher's peak RSS by ~8 MiB (chunks held
// across a scavenge are promoted, and their memory waits for a full collection).
// Each chunk undici hands over is one socket read, an ArrayBuffer of its own (64 KiB over TCP,
// 16 KiB over TLS) whose memory lies outside V8's heap: it would be freed only when a collection
// finds the chunk dead, and the few hundred bytes of heap each chunk costs fill the young
// generation so slowly that at loopback speed 20-30 MiB of them waited at once. Once written and
// hashed, a chunk that is its ArrayBuffer's only view is freed there and then (detached: the
// ArrayBuffer transferred to nothing), and the download holds at most a batch of them. A view into
// a larger buffer (the first read, which began with the headers) is left to the collector.

/** The most bytes held in memory before the body is paused until the write under way ends. */
export const BATCH_BYTES = 256 * 1024;
/** The most chunks in one writev (IOV_MAX is 1024 on Linux). */
const BATCH_CHUNKS = 512;

export interface BodyReading {
  /** The package's size: a byte past it is `tooLong`'s error, and nothing past it is written. */
  size: number;
  /** Sees every chunk as it arrives (the rate floor); a throw ends the reading. */
  observe?: (bytes: number) => void;
  tooLong: () => UpdaterError;
  /** After every batch written (the fetcher's progress and checkpoints). */
  afterWrite: () => void | Promise<void>;
}

/** Frees a chunk's memory now, when it is the only view of its ArrayBuffer (see above). */
function release(chunk: Buffer): void {
  // ES2024's ArrayBuffer.prototype.transfer (Node 20+); the project's TypeScript lib is ES2022
  const { buffer } = chunk;
  if (buffer instanceof ArrayBuffer && chunk.byteOffset === 0 && chunk.byteLength === buffer.byteLength) {
    (buffer as ArrayBuffer & { transfer(length: number): ArrayBuffer }).transfer(0);
  }
}

/**
 * Reads `body` to its end into `part`. Resolves when the body has ended and every byte of it is
 * in the file. On a network error, an abort or the rate floor's, the bytes received before it
 * are written first (a resume goes on from them), then it rejects with that error; a write
 * that fails rejects with the write's error (DISK_FULL, DOWNLOAD_FAILED). A body longer than
 * `size` rejects with `tooLong()` without writing past `size`. The body's chunks become the
 * reader's: one that is its ArrayBuffer's only view is emptied (detached) once written.
 */
export function readBody(body: Readable, part: PartFile, reading: BodyReading): Promise<void> {
  return new Promise((resolve, reject) => {
    let queue: Buffer[] = [];
    let queued = 0;
    let received = part.position.offset;
    let writing = false;
    let ended = false;
    /** The error that ends the reading once the queue is written (null: the body's end). */
    let failure: unknown = null;
    let settled = false;

    const settle = (error: unknown) => {
      if (settled) return;
      settled = true;
      if (error === null) resolve();
      else reject(error);
    };
    /** Stops taking bytes; what is queued is still written unless `drop`. */
    const stop = (error: unknown, drop = false) => {
      if (ended) return;
      ended = true;
      failure = error;
      if (drop) {
        queue = [];
        queued = 0;
      }
      body.off('data', onData);
      if (error !== null) body.destroy();
      if (!writing) void writeQueued();
    };

    async function writeQueued(): Promise<void> {
      writing = true;
      try {
        while (queued > 0) {
          const batch = queue.length > BATCH_CHUNKS ? queue.splice(0, BATCH_CHUNKS) : queue;
          if (batch === queue) queue = [];
          let length = 0;
          for (const c of batch) length += c.length;
          queued -= length;
          if (!ended && body.isPaused()) body.resume();
          await part.append(batch);
          for (const chunk of batch) release(chunk);
          await reading.afterWrite();
        }
      } catch (e) {
        // the write's own failure (or the progress callback's) ends the reading with it
        writing = false;
        stop(e, true);
        settle(e);
        return;
      }
      writing = false;
      if (ended) settle(failure);
    }

    function onData(chunk: Buffer): void {
      try {
        reading.observe?.(chunk.length);
        if (received + chunk.length > reading.size) return stop(reading.tooLong(), true);
      } catch (e) {
        return stop(e);
      }
      received += chunk.length;
      queue.push(chunk);
      queued += chunk.length;
      if (queued >= BATCH_BYTES) body.pause();
      if (!writing) void writeQueued();
    }

    body.on('data', onData);
    // finished(), not 'end'/'error' listeners: the body may have failed (a reset right after the
    // headers) before this was called, and then those events are already gone
    finished(body, { writable: false }, (e) => stop(e ?? null));
  });
}
