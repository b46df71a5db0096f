import { z } from 'zod';
import { errorCodes } from '../../shared/errors.js';
import { packageJobSchema, updateRequestSchema } from '../../shared/package-job.js';
import { statusSchema } from '../../shared/status.js';

// The OpenAPI document, made from the same zod schemas that validate the requests.

const envelope = (data: z.ZodType) =>
  z.object({
    code: z.union([z.literal(200), z.literal(400), z.literal(404), z.literal(409), z.literal(410), z.literal(500)]),
    msg: z
      .string()
      .describe(`"success", or an error code followed by ": " and the reason; codes: ${errorCodes.join(', ')}`),
    data: data.optional(),
    stage: z.string().nullable().optional(),
    progress: z.number().nullable().optional(),
  });

const json = (schema: z.ZodType) => ({
  content: { 'application/json': { schema: z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) } },
});
const answer = (description: string, data: z.ZodType) => ({ 200: { description, ...json(envelope(data)) } });

export function openApiDocument(version: string, allowHttp: boolean): object {
  return {
    openapi: '3.1.0',
    info: {
      title: 'tope-updater',
      version,
      description: 'Every handled request answers HTTP 200 with the envelope {code, msg, data?}.',
    },
    paths: {
      '/api/v1.0/download': {
        post: {
          summary: 'Download and verify a package',
          requestBody: { required: true, ...json(packageJobSchema(allowHttp)) },
          responses: answer('accepted or refused', z.null()),
        },
      },
      '/api/v1.0/update': {
        post: {
          summary: 'Install the verified package',
          requestBody: { required: true, ...json(updateRequestSchema) },
          responses: answer('accepted or refused', z.null()),
        },
      },
      '/api/v1.0/progress': {
        get: {
          summary: 'What the updater is doing (code 500 while failed)',
          responses: answer('the status', statusSchema),
        },
      },
      '/': { get: { summary: 'Health', responses: { 200: { description: 'service and version' } } } },
    },
  };
}
