import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Status } from '../../shared/status.js';
import { progressEnvelope, sendText } from './envelope.js';
import type { View } from './status-view.js';

export const PROGRESS_PATH = '/api/v1.0/progress';

type Listener = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * The /progress answer, serialized once per status: device-api and ota-gui poll it several times
 * a second through a whole update, and between two writes of a worker's record every answer is
 * the same bytes. The view hands back the same status object until a record changes (its cached
 * records), so that object's identity says when to serialize again.
 */
export class ProgressAnswer {
  private status: Status | null = null;
  private body = '';

  constructor(private readonly readView: () => Promise<View>) {}

  async text(): Promise<string> {
    const { status } = await this.readView();
    if (status !== this.status) {
      this.body = JSON.stringify(progressEnvelope(status));
      this.status = status;
    }
    return this.body;
  }

  async send(res: ServerResponse): Promise<void> {
    sendText(res, await this.text());
  }
}

/**
 * Answers `GET /api/v1.0/progress` (that exact request line: the polls' own) ahead of the app's
 * router, with the bytes the route would send: the poll is most of the gateway's traffic, and
 * tinyhttp's request set-up and routing doubled a bare server's latency (BENCHMARKS.md, the
 * budget section). Anything else, a failure to read the records included, goes to the app,
 * whose route for the same path answers the rest (HEAD, a query string) and the errors.
 */
export function progressFirst<Q extends IncomingMessage, S extends ServerResponse>(
  next: (req: Q, res: S) => void,
  progress: ProgressAnswer,
): Listener {
  // the app's own request types add to Node's, filled in by the app
  const toApp = (req: IncomingMessage, res: ServerResponse) => next(req as Q, res as S);
  return (req, res) => {
    if (req.method !== 'GET' || req.url !== PROGRESS_PATH) return toApp(req, res);
    progress.text().then(
      (text) => sendText(res, text),
      () => toApp(req, res),
    );
  };
}
