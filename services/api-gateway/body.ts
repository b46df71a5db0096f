import type { IncomingMessage } from 'node:http';

export const BODY_LIMIT = 64 * 1024;

/** Why a body could not be read: becomes "VALIDATION_ERROR: body: <reason>". */
export class BodyError extends Error {}

/** Reads and parses a JSON body of at most `limit` bytes, whatever its Content-Type says. */
export async function readJson(req: IncomingMessage, limit = BODY_LIMIT): Promise<unknown> {
  if (Number(req.headers['content-length'] ?? 0) > limit) throw new BodyError(`larger than ${limit} bytes`);
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > limit) throw new BodyError(`larger than ${limit} bytes`);
    chunks.push(c);
  }
  if (n === 0) throw new BodyError('empty; a JSON object is required');
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (e) {
    throw new BodyError(`not valid JSON (${(e as Error).message})`);
  }
}
