// The one list of error codes. API answers carry them at the start of `msg`; reports and
// /progress carry them at the start of `error` ("MD5_MISMATCH: expected ...; the package's MD5 differs").
export const errorCodes = [
  // API
  'VALIDATION_ERROR',
  'NOT_FOUND',
  'OPERATION_IN_PROGRESS',
  'DOWNLOAD_INCOMPLETE',
  'PACKAGE_NOT_FOUND',
  'PACKAGE_EXPIRED',
  'SERVICE_UNAVAILABLE',
  'INTERNAL_ERROR',
  // API: requests refused before any route (only the printer may ask; slow or malformed clients)
  'HOST_NOT_ALLOWED',
  'CROSS_ORIGIN_REFUSED',
  'UNSUPPORTED_MEDIA_TYPE',
  'REQUEST_TIMEOUT',
  'HEADERS_TOO_LARGE',
  // any answer while the environment (/etc/default/tope-updater) holds a bad value
  'CONFIG_INVALID',
  // download
  'DOWNLOAD_FAILED',
  'PACKAGE_SIZE_MISMATCH',
  'MD5_MISMATCH',
  'SHA256_MISMATCH',
  'DISK_FULL',
  // install: refusals before anything is touched
  'INVALID_PACKAGE',
  'INVALID_MANIFEST',
  // a dst that leads through a symlink on the device, or onto something an undo would not restore
  'UNSAFE_DESTINATION',
  // trust: refusals of the fetcher right after the download and of the installer before any change
  'SIGNATURE_MISSING',
  'SIGNATURE_MALFORMED',
  'SIGNATURE_INVALID',
  'INCOMPATIBLE_PACKAGE',
  'DOWNGRADE_REFUSED',
  'PAYLOAD_MISMATCH',
  // install: steps that fail
  'SERVICE_STOP_FAILED',
  'SERVICE_STOP_TIMEOUT',
  'SERVICE_START_FAILED',
  'SERVICE_START_TIMEOUT',
  'SERVICE_UNHEALTHY',
  'POST_CMD_FAILED',
  'POST_CMD_TIMEOUT',
  // the printer's units stayed stopped longer than TOPE_UNITS_STOPPED_MAX_MS before the switch
  'UNITS_STOPPED_TOO_LONG',
  'DEPLOYMENT_FAILED',
  'INSTALL_INTERRUPTED',
  // install: a recovery that did not finish in its attempts; the device is left as it is
  'RECOVERY_ABANDONED',
  // install: what the rollback did, each level named in the final error
  'ROLLBACK_LEVEL_1_SUCCESS',
  'ROLLBACK_LEVEL_1_FAILED',
  'ROLLBACK_LEVEL_2_SUCCESS',
  'ROLLBACK_LEVEL_2_FAILED',
] as const;

export type ErrorCode = (typeof errorCodes)[number];

/** An expected failure with a code from the list; anything else is a bug. */
export class UpdaterError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
  /** The text that goes to the `error` field: "CODE: message". */
  get wire(): string {
    return `${this.code}: ${this.message}`;
  }

  /** An UpdaterError as it is; anything else (a bug or an unexpected I/O error) under `fallback`. */
  static from(e: unknown, fallback: ErrorCode, prefix = ''): UpdaterError {
    if (e instanceof UpdaterError) return e;
    return new UpdaterError(fallback, `${prefix}${e instanceof Error ? e.message : String(e)}`);
  }
}

/** The wire text of any failure: an UpdaterError's own, anything else under `fallback`. */
export const wireOf = (e: unknown, fallback: ErrorCode): string => UpdaterError.from(e, fallback).wire;

/**
 * The API envelope's `code` for each error when it answers a command. A Record, so a new code
 * does not compile until someone decides how the API reports it. Codes that only reports and
 * /progress carry answer 500 if they ever reach a command's answer.
 */
export const envelopeCodeOf: Record<ErrorCode, 400 | 403 | 404 | 408 | 409 | 410 | 415 | 431 | 500> = {
  VALIDATION_ERROR: 400,
  NOT_FOUND: 404,
  OPERATION_IN_PROGRESS: 409,
  DOWNLOAD_INCOMPLETE: 409,
  PACKAGE_NOT_FOUND: 404,
  PACKAGE_EXPIRED: 410,
  SERVICE_UNAVAILABLE: 500,
  INTERNAL_ERROR: 500,
  HOST_NOT_ALLOWED: 403,
  CROSS_ORIGIN_REFUSED: 403,
  UNSUPPORTED_MEDIA_TYPE: 415,
  REQUEST_TIMEOUT: 408,
  HEADERS_TOO_LARGE: 431,
  CONFIG_INVALID: 500,
  DOWNLOAD_FAILED: 500,
  PACKAGE_SIZE_MISMATCH: 500,
  MD5_MISMATCH: 500,
  SHA256_MISMATCH: 500,
  DISK_FULL: 500,
  INVALID_PACKAGE: 500,
  INVALID_MANIFEST: 500,
  UNSAFE_DESTINATION: 500,
  SIGNATURE_MISSING: 500,
  SIGNATURE_MALFORMED: 500,
  SIGNATURE_INVALID: 500,
  INCOMPATIBLE_PACKAGE: 500,
  DOWNGRADE_REFUSED: 500,
  PAYLOAD_MISMATCH: 500,
  SERVICE_STOP_FAILED: 500,
  SERVICE_STOP_TIMEOUT: 500,
  SERVICE_START_FAILED: 500,
  SERVICE_START_TIMEOUT: 500,
  SERVICE_UNHEALTHY: 500,
  POST_CMD_FAILED: 500,
  POST_CMD_TIMEOUT: 500,
  UNITS_STOPPED_TOO_LONG: 500,
  DEPLOYMENT_FAILED: 500,
  INSTALL_INTERRUPTED: 500,
  RECOVERY_ABANDONED: 500,
  ROLLBACK_LEVEL_1_SUCCESS: 500,
  ROLLBACK_LEVEL_1_FAILED: 500,
  ROLLBACK_LEVEL_2_SUCCESS: 500,
  ROLLBACK_LEVEL_2_FAILED: 500,
};

/** "24h", "90min", "1500ms": how the trust window reads in messages, from its configured value. */
export function describeDuration(ms: number): string {
  const units: Array<[number, string]> = [
    [24 * 3600_000, 'd'],
    [3600_000, 'h'],
    [60_000, 'min'],
    [1000, 's'],
  ];
  // days only when whole days read better than hours (24h stays "24h", as the contract shows it)
  for (const [size, unit] of units)
    if (ms >= size && ms % size === 0 && !(unit === 'd' && ms / size < 2)) return `${ms / size}${unit}`;
  return `${ms}ms`;
}

/** The PACKAGE_EXPIRED detail, one text for the gateway, the fetcher and the installer. */
export const expiredText = (windowMs: number, version?: string): string =>
  `Package${version ? ` ${version}` : ''} expired (>${describeDuration(windowMs)} after verification)`;

export const isErrnoException = (e: unknown, code?: string): e is NodeJS.ErrnoException =>
  e instanceof Error &&
  typeof (e as NodeJS.ErrnoException).code === 'string' &&
  (code === undefined || (e as NodeJS.ErrnoException).code === code);
