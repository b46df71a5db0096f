import type http from 'node:http';

/**
 * The head of an honest answer to a GET: 206 from the asked offset when there is no If-Range or
 * it names one of `validators`, 416 past the end, 200 otherwise. Returns where the body starts,
 * or null when the answer is already complete (416).
 */
export function writeRangeHead(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  size: number,
  headers: Record<string, string>,
  validators: string[],
): number | null {
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  const ifRange = req.headers['if-range'] as string | undefined;
  if (m && (!ifRange || validators.includes(ifRange))) {
    const start = Number(m[1]);
    if (start >= size) {
      res.writeHead(416, { 'content-range': `bytes */${size}` }).end();
      return null;
    }
    res.writeHead(206, {
      ...headers,
      'content-range': `bytes ${start}-${size - 1}/${size}`,
      'content-length': size - start,
    });
    return start;
  }
  res.writeHead(200, { ...headers, 'content-length': size });
  return 0;
}
