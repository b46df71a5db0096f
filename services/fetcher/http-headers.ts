// Parsing of the response headers the resume loop trusts. Anything malformed is null, and
// the caller treats null as "this answer cannot be appended to what we have".

export interface ContentRange {
  start: number;
  end: number;
  total: number | null;
}

const CONTENT_RANGE = /^bytes (\d{1,16})-(\d{1,16})\/(\d{1,16}|\*)$/;

export function parseContentRange(value: string | undefined): ContentRange | null {
  const m = CONTENT_RANGE.exec((value ?? '').trim());
  if (!m) return null;
  const start = Number(m[1]);
  const end = Number(m[2]);
  const total = m[3] === '*' ? null : Number(m[3]);
  if (end < start || (total !== null && end >= total)) return null;
  return { start, end, total };
}

/** Retry-After in milliseconds (delta-seconds or an HTTP date), or null. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | null {
  if (!value) return null;
  const v = value.trim();
  if (/^\d{1,9}$/.test(v)) return Number(v) * 1000;
  const when = Date.parse(v);
  return Number.isNaN(when) ? null : Math.max(0, when - now);
}

/** A single non-negative decimal Content-Length, or null. */
export function parseContentLength(value: string | undefined): number | null {
  return value !== undefined && /^\d{1,16}$/.test(value.trim()) ? Number(value.trim()) : null;
}

/** If-Range needs a strong validator: a strong ETag, else Last-Modified. */
export function ifRangeValue(etag: string | null, lastModified: string | null): string | null {
  if (etag && !etag.startsWith('W/')) return etag;
  return lastModified;
}

export const header = (headers: Record<string, string | string[] | undefined>, name: string): string | undefined => {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
};
