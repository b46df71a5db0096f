import * as z from '../../shared/schema.js';
import { envelopeCodeOf, errorCodes, type ErrorCode } from '../../shared/errors.js';
import { packageJobSchema, updateRequestSchema } from '../../shared/package-job.js';
import { statusSchema } from '../../shared/status.js';
import { MAX_HEADER_BYTES } from './connection-limits.js';

// The OpenAPI document, made from the same zod schemas that validate the requests.

const json = (schema: z.ZodMiniType) => ({
  content: { 'application/json': { schema: z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) } },
});

/** Every `code` an envelope may carry: 200 and each error's (shared/errors.ts decides them). */
const envelopeCodes = [200, ...new Set(Object.values(envelopeCodeOf))].sort((a, b) => a - b);

const envelope = (data: z.ZodMiniType) =>
  z.object({
    code: z.union(
      envelopeCodes.map((code) => z.literal(code)) as [z.ZodMiniLiteral<number>, ...z.ZodMiniLiteral<number>[]],
    ),
    msg: z
      .string()
      .check(
        z.describe(`"success", or an error code followed by ": " and the reason; codes: ${errorCodes.join(', ')}`),
      ),
    data: z.optional(data),
    stage: z.optional(z.nullable(z.string())),
    progress: z.optional(z.nullable(z.number())),
  });

/** A refusal's envelope: its code is the HTTP status, its msg one of `errors` and the reason. */
const refusalEnvelope = (status: number, errors: ErrorCode[]) =>
  z.object({
    code: z.literal(status),
    msg: z.string().check(z.describe(`${errors.join(' or ')}, followed by ": " and the reason`)),
  });

/**
 * The answers given before any route (request-guard.ts, connection-limits.ts): each with the
 * HTTP status of its envelope's code, on every request or on POSTs only.
 */
const refusals: Array<{ error: ErrorCode; on: 'every' | 'post'; why: string }> = [
  { error: 'HOST_NOT_ALLOWED', on: 'every', why: 'the Host header does not name this gateway (DNS rebinding)' },
  {
    error: 'CROSS_ORIGIN_REFUSED',
    on: 'every',
    why: 'an Origin header, a cross-site Sec-Fetch-Site or an OPTIONS preflight: requests from web pages are not served',
  },
  { error: 'UNSUPPORTED_MEDIA_TYPE', on: 'post', why: 'Content-Type is not application/json' },
  { error: 'REQUEST_TIMEOUT', on: 'every', why: 'the headers, then the body, did not arrive within their deadline' },
  { error: 'HEADERS_TOO_LARGE', on: 'every', why: `request headers beyond ${MAX_HEADER_BYTES} bytes` },
  { error: 'VALIDATION_ERROR', on: 'every', why: 'a malformed HTTP request' },
];

/** The refusal answers of one method, one per HTTP status. */
function refusalAnswers(method: 'get' | 'post'): Record<number, object> {
  const byStatus = new Map<number, typeof refusals>();
  for (const refusal of refusals) {
    if (refusal.on === 'post' && method !== 'post') continue;
    const status = envelopeCodeOf[refusal.error];
    byStatus.set(status, [...(byStatus.get(status) ?? []), refusal]);
  }
  return Object.fromEntries(
    [...byStatus].map(([status, list]) => [
      status,
      {
        description: `refused before any route: ${list.map((r) => `${r.error} (${r.why})`).join('; ')}`,
        ...json(
          refusalEnvelope(
            status,
            list.map((r) => r.error),
          ),
        ),
      },
    ]),
  );
}

const answer = (method: 'get' | 'post', description: string, data: z.ZodMiniType) => ({
  200: { description, ...json(envelope(data)) },
  ...refusalAnswers(method),
});

export function openApiDocument(version: string, allowHttp: boolean): object {
  return {
    openapi: '3.1.0',
    info: {
      title: 'tope-updater',
      version,
      description:
        'Every request a route handles answers HTTP 200 with the envelope {code, msg, data?}; ' +
        "one refused before any route answers the HTTP status of its envelope's code.",
    },
    paths: {
      '/api/v1.0/download': {
        post: {
          summary: 'Download and verify a package',
          requestBody: { required: true, ...json(packageJobSchema(allowHttp)) },
          responses: answer('post', 'accepted or refused', z.null()),
        },
      },
      '/api/v1.0/update': {
        post: {
          summary: 'Install the verified package',
          requestBody: { required: true, ...json(updateRequestSchema) },
          responses: answer('post', 'accepted or refused', z.null()),
        },
      },
      '/api/v1.0/progress': {
        get: {
          summary: 'What the updater is doing (code 500 while failed)',
          responses: answer('get', 'the status', statusSchema),
        },
      },
      '/': {
        get: {
          summary: 'Health',
          responses: { 200: { description: 'service and version' }, ...refusalAnswers('get') },
        },
      },
    },
  };
}
