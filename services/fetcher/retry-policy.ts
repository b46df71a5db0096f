import { UpdaterError } from '../../shared/errors.js';
import { backoffDelay } from './backoff.js';

/**
 * When a failed attempt is tried again, as data (in the manner of undici's RetryHandler options):
 * the transfer loop only counts failures and asks `decideRetry`.
 */
export interface RetryPolicy {
  /** Failed attempts in a row that are tried again; one more fails the download. New bytes reset the count. */
  maxRetries: number;
  /** The first wait; it doubles with every further failure, with +-20 % jitter. */
  baseMs: number;
  /** The longest a server's Retry-After can make us wait (the backoff still applies). */
  retryAfterMaxMs: number;
  /** HTTP answers worth another attempt: these codes, and every code from `serverErrorsFrom` up. */
  retryStatuses: RetryStatuses;
  random?: () => number;
}

export interface RetryStatuses {
  codes: readonly number[];
  serverErrorsFrom: number;
}

/** 408 Request Timeout, 429 Too Many Requests, and any 5xx. */
export const RETRY_STATUSES: RetryStatuses = { codes: [408, 429], serverErrorsFrom: 500 };

export const isRetryStatus = (statuses: RetryStatuses, status: number): boolean =>
  status >= statuses.serverErrorsFrom || statuses.codes.includes(status);

export type RetryDecision = { kind: 'wait'; delayMs: number } | { kind: 'give-up'; error: UpdaterError };

/**
 * After the `failures`-th failed attempt in a row: how long to wait before the next one, or the
 * error to fail with. `retryAfterMs` is the server's Retry-After, if it sent one.
 */
export function decideRetry(
  policy: RetryPolicy,
  failures: number,
  reason: string,
  retryAfterMs: number | null,
): RetryDecision {
  if (failures > policy.maxRetries) {
    const error = new UpdaterError('DOWNLOAD_FAILED', `${reason} (gave up after ${failures} attempts)`);
    return { kind: 'give-up', error };
  }
  const backoff = backoffDelay(failures, policy.baseMs, policy.random);
  return { kind: 'wait', delayMs: Math.max(backoff, Math.min(retryAfterMs ?? 0, policy.retryAfterMaxMs)) };
}

/**
 * The reason a failed request gives, with its error's code when the message does not carry it:
 * a certificate refused says which check (SELF_SIGNED_CERT_IN_CHAIN, CERT_HAS_EXPIRED,
 * ERR_TLS_CERT_ALTNAME_INVALID, ...), a timeout which one (UND_ERR_BODY_TIMEOUT, ...), so that a
 * fleet's failures can be counted by cause.
 */
export function networkFailureReason(failure: unknown): string {
  const error = failure as { message?: unknown; code?: unknown; cause?: { code?: unknown } } | null;
  const message = String(error?.message ?? failure);
  const code = [error?.code, error?.cause?.code].find((c): c is string => typeof c === 'string' && c !== '');
  return `network error: ${code && !message.includes(code) ? `${code}: ${message}` : message}`;
}
