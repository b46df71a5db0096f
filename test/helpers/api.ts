import { request } from 'undici';

/** Calls the gateway as device-api does and returns the HTTP status and the parsed envelope. */
export async function call(
  base: string,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
  raw?: string,
): Promise<{ http: number; body: any }> {
  const res = await request(`${base}${path}`, {
    method,
    // device-api says application/json on every POST, whatever the body (the gateway refuses one that does not)
    headers: method === 'POST' || body !== undefined || raw !== undefined ? { 'content-type': 'application/json' } : {},
    body: raw ?? (body === undefined ? undefined : JSON.stringify(body)),
  });
  const text = await res.body.text();
  return { http: res.statusCode, body: text ? JSON.parse(text) : null };
}
