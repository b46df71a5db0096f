// The one list of error codes. API answers carry them at the start of `msg`; reports and
// /progress carry them at the start of `error` ("MD5_MISMATCH: expected ..., got ...").
export const errorCodes = [
  // API
  'VALIDATION_ERROR', 'NOT_FOUND', 'OPERATION_IN_PROGRESS', 'DOWNLOAD_INCOMPLETE', 'PACKAGE_NOT_FOUND',
  'PACKAGE_EXPIRED', 'SERVICE_UNAVAILABLE', 'INTERNAL_ERROR',
  // any answer while the environment (/etc/default/tope-updater) holds a bad value
  'CONFIG_INVALID',
  // download
  'DOWNLOAD_FAILED', 'PACKAGE_SIZE_MISMATCH', 'MD5_MISMATCH', 'SHA256_MISMATCH', 'DISK_FULL',
  // install: refusals before anything is touched
  'INVALID_PACKAGE', 'INVALID_MANIFEST',
  // install: steps that fail
  'SERVICE_STOP_FAILED', 'SERVICE_STOP_TIMEOUT', 'SERVICE_START_FAILED', 'SERVICE_START_TIMEOUT', 'SERVICE_UNHEALTHY',
  'POST_CMD_FAILED', 'POST_CMD_TIMEOUT', 'DEPLOYMENT_FAILED', 'INSTALL_INTERRUPTED',
  // install: what the rollback did, each level named in the final error
  'ROLLBACK_LEVEL_1_SUCCESS', 'ROLLBACK_LEVEL_1_FAILED', 'ROLLBACK_LEVEL_2_SUCCESS', 'ROLLBACK_LEVEL_2_FAILED',
] as const;

export type ErrorCode = (typeof errorCodes)[number];

/** An expected failure with a code from the list; anything else is a bug. */
export class UpdaterError extends Error {
  constructor(readonly code: ErrorCode, message: string) {
    super(message);
  }
  /** The text that goes to the `error` field: "CODE: message". */
  get wire(): string {
    return `${this.code}: ${this.message}`;
  }
}

export const isErrnoException = (e: unknown, code?: string): e is NodeJS.ErrnoException =>
  e instanceof Error && typeof (e as NodeJS.ErrnoException).code === 'string' &&
  (code === undefined || (e as NodeJS.ErrnoException).code === code);
