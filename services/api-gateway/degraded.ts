import http from 'node:http';
import type { DegradedServer } from '../../shared/degraded.js';
import { failed } from '../../shared/status.js';
import { errorEnvelope, progressEnvelope, send } from './envelope.js';

/**
 * The API while the configuration is invalid: /progress shows the failed stage with the error (so
 * ota-gui and device-api see it where they already look), every other route answers
 * CONFIG_INVALID. No command reaches a worker. Each connection closes after its answer, so
 * that the process can end soon and read the configuration again (see shared/degraded.ts).
 */
export const degradedGateway: DegradedServer = (error) =>
  http.createServer((req, res) => {
    req.resume();
    res.setHeader('connection', 'close');
    if (req.method === 'GET' && req.url?.split('?')[0] === '/api/v1.0/progress') {
      return send(res, progressEnvelope(failed(error, 'Configuration invalid', 0)));
    }
    send(res, errorEnvelope(500, 'CONFIG_INVALID', error.replace(/^CONFIG_INVALID: /, '')));
  });
