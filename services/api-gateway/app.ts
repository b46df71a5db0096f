import type { IncomingMessage, ServerResponse } from 'node:http';
import { App } from '@tinyhttp/app';
import type { z } from 'zod';
import { envelopeCodeOf, expiredText, UpdaterError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { describeIssues, packageJobSchema, updateRequestSchema } from '../../shared/package-job.js';
import type { Command, Reply } from '../../shared/protocol.js';
import { BodyError, readJson } from './body.js';
import { errorEnvelope, okEnvelope, progressEnvelope, send, stateErrorEnvelope } from './envelope.js';
import { openApiDocument } from './openapi.js';
import { decideDownload, decideUpdate, type Decision } from './rules.js';
import type { View } from './status-view.js';

export interface GatewayDeps {
  log: Logger;
  version: string;
  allowHttp: boolean;
  trustWindowMs: number;
  readView: () => Promise<View>;
  toFetcher: (command: Command) => Promise<Reply>;
  toInstaller: (command: Command) => Promise<Reply>;
  now?: () => number;
}

class Invalid extends Error {}

async function parseBody<S extends z.ZodType>(req: IncomingMessage, schema: S): Promise<z.infer<S>> {
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

/**
 * The HTTP API. Commands are taken one at a time: each reads the workers' state, decides, and
 * has the worker persist the new stage before the 200 goes out, so a concurrent second command
 * sees that stage and gets its 409.
 */
export function createApp(d: GatewayDeps) {
  const now = d.now ?? Date.now;
  let chain: Promise<unknown> = Promise.resolve();
  const oneAtATime = <T>(job: () => Promise<T>): Promise<T> => {
    const run = chain.then(job, job);
    chain = run.catch(() => undefined);
    return run;
  };
  const downloadSchema = packageJobSchema(d.allowHttp);

  const forward = async (to: (c: Command) => Promise<Reply>, command: Command) => {
    const reply = await to(command);
    if (!reply.ok) throw new UpdaterError(reply.code, reply.message);
  };

  const answer = async (res: ServerResponse, decision: Decision, view: View, act: () => Promise<void>, expire: () => Promise<void>) => {
    if (decision.kind === 'reject') {
      const body = decision.code === 409
        ? stateErrorEnvelope(decision.code, decision.error, decision.text, view.status)
        : errorEnvelope(decision.code, decision.error, decision.text);
      return send(res, body);
    }
    if (decision.kind === 'expire') {
      await expire();
      const after = await d.readView();
      return send(res, stateErrorEnvelope(410, 'PACKAGE_EXPIRED', expiredText(d.trustWindowMs), after.status));
    }
    if (decision.kind === 'start') await act();
    send(res, okEnvelope);
  };

  const app = new App({
    settings: { xPoweredBy: false },
    noMatchHandler: (req, res) => send(res, errorEnvelope(404, 'NOT_FOUND', `no route ${req.method} ${req.url}`), 404),
    onError: (err: unknown, req, res) => {
      if (res.headersSent) return void res.destroy();
      if (err instanceof Invalid) return send(res, errorEnvelope(400, 'VALIDATION_ERROR', err.message));
      if (err instanceof UpdaterError) {
        d.log.warn({ code: err.code, err: err.message, url: req.url }, 'command refused');
        return send(res, errorEnvelope(envelopeCodeOf[err.code], err.code, err.message));
      }
      d.log.error({ err, url: req.url }, 'request failed');
      send(res, errorEnvelope(500, 'INTERNAL_ERROR', 'internal error'), 500);
    },
  });

  app.get('/', async (_req, res) => {
    send(res, { status: 'ok', service: 'tope-updater', version: d.version, features: ['Version Snapshot Architecture', 'Two-Level Rollback', 'Progress Reporting', 'systemd Integration'] } );
  });

  const openApi = openApiDocument(d.version, d.allowHttp);
  app.get('/api/v1.0/openapi.json', async (_req, res) => {
    send(res, openApi as Record<string, unknown>);
  });

  app.get('/api/v1.0/progress', async (_req, res) => {
    send(res, progressEnvelope((await d.readView()).status));
  });

  app.post('/api/v1.0/download', async (req, res) => {
    const job = await parseBody(req, downloadSchema);
    await oneAtATime(async () => {
      const view = await d.readView();
      const decision = decideDownload(view, job, now(), d.trustWindowMs);
      d.log.info({ route: 'download', version: job.version, stage: view.status.stage, decision: decision.kind }, 'download requested');
      await answer(res, decision, view,
        () => forward(d.toFetcher, { type: 'download', seq: view.seq + 1, job }),
        async () => undefined);
    });
  });

  app.post('/api/v1.0/update', async (req, res) => {
    const { version } = await parseBody(req, updateRequestSchema);
    await oneAtATime(async () => {
      const view = await d.readView();
      const decision = decideUpdate(view, version, now(), d.trustWindowMs);
      d.log.info({ route: 'update', version, stage: view.status.stage, decision: decision.kind }, 'update requested');
      await answer(res, decision, view,
        () => forward(d.toInstaller, { type: 'install', seq: view.seq + 1, version }),
        () => forward(d.toFetcher, { type: 'discard', seq: view.seq + 1, reason: `${expiredText(d.trustWindowMs, version)} and was deleted` }));
    });
  });

  return app;
}
