import type { ServerResponse } from 'node:http';
import type { ErrorCode } from '../../shared/errors.js';
import type { Status } from '../../shared/status.js';

// The wire envelope {code, msg, data?}: HTTP 200 for every handled request, as device-api and
// ota-gui expect (README, "The API").

export type Envelope = { code: number; msg: string; data?: unknown; stage?: string | null; progress?: number | null };

export function send(res: ServerResponse, body: Envelope | Record<string, unknown>, httpStatus = 200): void {
  sendText(res, JSON.stringify(body), httpStatus);
}

/** An answer already serialized (the /progress body, kept between polls): the same headers as send(). */
export function sendText(res: ServerResponse, text: string, httpStatus = 200): void {
  res.statusCode = httpStatus;
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('content-length', Buffer.byteLength(text));
  res.setHeader('cache-control', 'no-store');
  res.end(text);
}

export const errorEnvelope = (code: number, error: ErrorCode, text: string): Envelope => ({
  code,
  msg: `${error}: ${text}`,
});

/** Busy and expiry answers also carry the stage and progress at the top level, as clients read them. */
export const stateErrorEnvelope = (code: number, error: ErrorCode, text: string, status: Status): Envelope => ({
  ...errorEnvelope(code, error, text),
  stage: status.stage,
  progress: status.progress,
});

export const okEnvelope: Envelope = { code: 200, msg: 'success', data: null };

/** /progress: code 500 and "Update failed: <error>" while failed; null top-level stage and progress otherwise. */
export function progressEnvelope(status: Status): Envelope {
  if (status.stage === 'failed') {
    return {
      code: 500,
      msg: status.error ? `Update failed: ${status.error}` : 'Update failed',
      data: status,
      stage: status.stage,
      progress: status.progress,
    };
  }
  return { code: 200, msg: 'success', data: status, stage: null, progress: null };
}
