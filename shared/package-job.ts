import * as z from './schema.js';

// Field rules of the API (README, "The API"), shared by the gateway that validates requests and
// the fetcher and installer that persist and re-check them.
export const versionSchema = z
  .string()
  .check(z.maxLength(64), z.regex(/^[0-9]+\.[0-9]+\.[0-9]+$/, 'must look like 1.2.3'));

const packageName = z.string().check(
  z.regex(/^[A-Za-z0-9._-]{1,128}$/, 'must be 1-128 characters of A-Z a-z 0-9 . _ -'),
  z.refine((n) => n !== '.' && n !== '..', 'must not be . or ..'),
);

export function packageUrlSchema(allowHttp: boolean) {
  return z.string().check(
    z.maxLength(4096),
    z.refine(
      (s) => {
        try {
          const u = new URL(s);
          return u.protocol === 'https:' || (allowHttp && u.protocol === 'http:');
        } catch {
          return false;
        }
      },
      allowHttp ? 'must be an http or https URL' : 'must be an https URL',
    ),
  );
}

export function packageJobSchema(allowHttp: boolean) {
  return z.object({
    version: versionSchema,
    package_url: packageUrlSchema(allowHttp),
    package_name: packageName,
    package_size: z
      .number()
      .check(z.int('must be an integer'), z.minimum(1, 'must be at least 1'), z.maximum(Number.MAX_SAFE_INTEGER)),
    package_md5: z.string().check(z.regex(/^[a-f0-9]{32}$/, 'must be 32 lower-case hex characters')),
    package_sha256: z.optional(z.string().check(z.regex(/^[a-f0-9]{64}$/, 'must be 64 lower-case hex characters'))),
  });
}

/** The stored form; the URL scheme was checked when the request came in. */
export const storedJobSchema = packageJobSchema(true);
export type PackageJob = z.infer<typeof storedJobSchema>;

export const updateRequestSchema = z.object({ version: versionSchema });

export const sameJob = (a: PackageJob | null | undefined, b: PackageJob): boolean =>
  !!a &&
  a.version === b.version &&
  a.package_url === b.package_url &&
  a.package_name === b.package_name &&
  a.package_size === b.package_size &&
  a.package_md5 === b.package_md5 &&
  a.package_sha256 === b.package_sha256;

/** "field: reason; field: reason", the tail of a VALIDATION_ERROR message. */
export const describeIssues = (err: z.$ZodError): string =>
  err.issues.map((i) => `${i.path.length ? i.path.join('.') : 'body'}: ${i.message}`).join('; ');
