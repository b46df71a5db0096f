import net from 'node:net';

/** One request written byte for byte on a fresh connection (any Host, any header, any garbage), and the whole answer. */
export async function rawRequest(
  port: number,
  text: string,
  timeoutMs = 10_000,
  address = '127.0.0.1',
): Promise<{ status: number; headers: string; body: any; raw: string }> {
  const socket = net.connect(port, address);
  socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no answer within ${timeoutMs} ms`)));
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => {
    chunks.push(c);
    // a kept-alive answer is complete once its content-length of body is in
    const raw = Buffer.concat(chunks).toString('utf8');
    const head = raw.indexOf('\r\n\r\n');
    const length = /content-length: *(\d+)/i.exec(raw.slice(0, head));
    if (head >= 0 && length && Buffer.byteLength(raw.slice(head + 4)) >= Number(length[1])) socket.end();
  });
  socket.write(text);
  await new Promise<void>((ok, fail) => socket.on('close', () => ok()).on('error', fail));
  const raw = Buffer.concat(chunks).toString('utf8');
  const head = raw.indexOf('\r\n\r\n');
  const bodyText = raw.slice(head + 4);
  return {
    status: Number(raw.slice(9, 12)),
    headers: raw.slice(0, head),
    body: bodyText ? JSON.parse(bodyText) : null,
    raw,
  };
}

/** A request's text: the request line, the headers given (Host included only if given), and a body with its length. */
export function requestText(method: string, path: string, headers: Record<string, string>, body?: string): string {
  const lines = [`${method} ${path} HTTP/1.1`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
  if (body !== undefined) lines.push(`content-length: ${Buffer.byteLength(body)}`);
  return `${lines.join('\r\n')}\r\n\r\n${body ?? ''}`;
}
