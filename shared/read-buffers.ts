// The pairs of buffers the package archive reads a stored entry into (package-archive.ts,
// readStored: one written while the next is read and checked), kept from one entry to the next:
// under the units' malloc settings a new pair of 128 KiB or more was two mmaps, munmaps and their
// page faults per entry, and the installer extracts several small files at once.

/**
 * Bytes per positioned read of a stored entry (two such buffers per extraction: one is written
 * while the next is read and checked). yauzl's stream reads 64 KiB into a new Buffer each time.
 * 256 KiB, not 512: the two buffers are most of what an extraction adds to the installer's RSS,
 * and a 1 GiB install took no longer with the smaller reads (BENCHMARKS.md, the budget section).
 */
export const STORED_READ_BYTES = 256 * 1024;

/** What a read buffer holds beyond its data: the local header with a name of up to ~700 bytes, read with the first chunk. */
export const FIRST_READ_HEADER_ROOM = 1024;

/**
 * The pairs kept: one per extraction the installer runs at once (bounded-work.ts), of which at
 * most one larger than 64 KiB (the installer stages such a file alone): at most 8 x 2 x 65 KiB
 * and 2 x 257 KiB.
 */
const KEPT_PAIRS = 8;
const KEPT_LARGE_PAIR_BYTES = 64 * 1024;

/**
 * The size of each buffer of a pair for reads of `dataBytes` (at most STORED_READ_BYTES): a power
 * of two from 16 KiB, and the header's room. A few sizes, so a pair kept fits every later read of
 * its size whatever the entry's name (a pair per name length piled up megabytes).
 */
function bufferBytes(dataBytes: number): number {
  let size = 16 * 1024;
  while (size < dataBytes) size *= 2;
  return Math.min(size, STORED_READ_BYTES) + FIRST_READ_HEADER_ROOM;
}

/** The archive's kept pairs: taken by an extraction, given back when it ends. */
export class ReadBufferPool {
  private kept: Buffer[][] = [];

  /** A kept pair for reads of up to `dataBytes` (and a local header in front of the first), or a new one. */
  take(dataBytes: number): Buffer[] {
    const length = bufferBytes(dataBytes);
    const found = this.kept.findIndex((pair) => pair[0]!.length === length);
    if (found >= 0) return this.kept.splice(found, 1)[0]!;
    return [Buffer.allocUnsafeSlow(length), Buffer.allocUnsafeSlow(length)];
  }

  /** Kept for the next extractions: up to KEPT_PAIRS pairs, of which one large, the smaller ones first. */
  giveBack(pair: Buffer[]): void {
    const large = (p: Buffer[]) => p[0]!.length > KEPT_LARGE_PAIR_BYTES + FIRST_READ_HEADER_ROOM;
    const kept = large(pair) ? this.kept.filter((p) => !large(p)) : this.kept;
    kept.push(pair);
    kept.sort((a, b) => a[0]!.length - b[0]!.length);
    this.kept = kept.slice(0, KEPT_PAIRS);
  }
}
