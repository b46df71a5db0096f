import type { IncomingMessage } from 'node:http';
import { App } from '@tinyhttp/app';
import type * as z from '../../shared/schema.js';
import { envelopeCodeOf, UpdaterError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { describeIssues, packageJobSchema, updateRequestSchema } from '../../shared/package-job.js';
import type { Command, Reply } from '../../shared/protocol.js';
import type { WorkerName } from '../../shared/workers.js';
import { BodyError, readJson } from './body.js';
import { CommandPath } from './commands.js';
import { errorEnvelope, send } from './envelope.js';
import type { ProgressAnswer } from './progress-answer.js';
import type { View } from './status-view.js';

export interface GatewayDeps {
  log: Logger;
  version: string;
  allowHttp: boolean;
  trustWindowMs: number;
  readView: () => Promise<View>;
  /** The /progress body, kept between polls (main.ts answers the plain poll with it before the router). */
  progress: ProgressAnswer;
  /** Sends one command to a worker's socket. */
  sendTo: (worker: WorkerName, command: Command) => Promise<Reply>;
  now?: () => number;
}

class Invalid extends Error {}

async function parseBody<S extends z.ZodMiniType>(req: IncomingMessage, schema: S): Promise<z.infer<S>> {
  let raw: unknown;
  try {
    raw = await readJson(req);
  } catch (e) {
    if (e instanceof BodyError) throw new Invalid(`body: ${e.message}`);
    throw e;
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new Invalid(describeIssues(parsed.error));
  return parsed.data;
}

/** The HTTP API: routes, body validation, and the envelope of every answer. */
export function createApp(deps: GatewayDeps) {
  const commands = new CommandPath({ ...deps, now: deps.now ?? Date.now });
  const downloadSchema = packageJobSchema(deps.allowHttp);

  const app = new App({
    settings: { xPoweredBy: false },
    noMatchHandler: (req, res) => send(res, errorEnvelope(404, 'NOT_FOUND', `no route ${req.method} ${req.url}`), 404),
    onError: (err: unknown, req, res) => {
      if (res.headersSent) return void res.destroy();
      if (err instanceof Invalid) return send(res, errorEnvelope(400, 'VALIDATION_ERROR', err.message));
      if (err instanceof UpdaterError) {
        deps.log.warn({ code: err.code, err: err.message, url: req.url }, 'command refused');
        return send(res, errorEnvelope(envelopeCodeOf[err.code], err.code, err.message));
      }
      deps.log.error({ err, url: req.url }, 'request failed');
      send(res, errorEnvelope(500, 'INTERNAL_ERROR', 'internal error'), 500);
    },
  });

  app.get('/', async (_req, res) => {
    send(res, {
      status: 'ok',
      service: 'tope-updater',
      version: deps.version,
      features: ['Version Snapshot Architecture', 'Two-Level Rollback', 'Progress Reporting', 'systemd Integration'],
    });
  });

  // built on its first request, not at start: a cold start answers /progress, rarely this
  let openApi: Promise<object> | null = null;
  app.get('/api/v1.0/openapi.json', async (_req, res) => {
    openApi ??= import('./openapi.js').then((m) => m.openApiDocument(deps.version, deps.allowHttp));
    send(res, (await openApi) as Record<string, unknown>);
  });

  app.get('/api/v1.0/progress', async (_req, res) => {
    await deps.progress.send(res);
  });

  app.post('/api/v1.0/download', async (req, res) => {
    send(res, await commands.download(await parseBody(req, downloadSchema)));
  });

  app.post('/api/v1.0/update', async (req, res) => {
    const { version } = await parseBody(req, updateRequestSchema);
    send(res, await commands.update(version));
  });

  return app;
}
