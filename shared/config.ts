import { DEFAULT_DEVICE_API_URL } from './device-api.js';
import * as z from './schema.js';

// Every knob of the updater, its environment variable and its default. The defaults are
// the production paths; `make run` and the tests point them under ./var or a temp dir.
const bool = z.pipe(
  z.enum(['0', '1', 'true', 'false', 'yes', 'no']),
  z.transform((v) => v === '1' || v === 'true' || v === 'yes'),
);
const ms = z.coerce.number().check(z.int(), z.minimum(0), z.maximum(7 * 24 * 3600 * 1000));
const port = z.coerce.number().check(z.int(), z.minimum(1), z.maximum(65535));
const absPath = z.string().check(z.refine((p) => p.startsWith('/'), 'must be an absolute path'));
const httpUrl = z.url({ protocol: /^https?$/ });
// curl's reading of a proxy without a scheme (proxy.lan:3128): http://. An https:// proxy (TLS to
// the proxy itself) or a SOCKS one is refused: neither is tested here. Nothing after the port
// (undici takes a proxy's origin only), and credentials that decode (undici decodes them as it
// starts: a stray % would end the fetcher at each start instead of CONFIG_INVALID).
const decodes = (s: string) => {
  try {
    decodeURIComponent(s);
    return true;
  } catch {
    return false;
  }
};
/** `s` as an http:// URL, or null when it is none. */
const httpUrlOf = (s: string) => {
  const u = URL.parse(s);
  return u?.protocol === 'http:' ? u : null;
};
const proxyUrl = z.pipe(
  z.transform((s: string) => (s.includes('://') ? s : `http://${s}`)),
  z.url({ protocol: /^http$/, error: 'must be an http:// proxy URL like http://proxy.lan:3128' }).check(
    // (a value that is no http:// URL is the check above's to name)
    z.refine((s) => {
      const u = httpUrlOf(s);
      return !u || (u.pathname === '/' && !u.search && !u.hash);
    }, 'must name the proxy alone (http://[user:password@]host:port), with no path, query or fragment'),
    z.refine((s) => {
      const u = httpUrlOf(s);
      return !u || (decodes(u.username) && decodes(u.password));
    }, 'has credentials with a % that is not %XX (write a % in a password as %25)'),
  ),
);
const withDefault = z._default;
/** A list in one variable: split, each item trimmed (and lower-cased), empty ones dropped. */
const list = (separator: string, lowerCase = false) =>
  z.transform((s: string) =>
    s
      .split(separator)
      .map((n) => (lowerCase ? n.trim().toLowerCase() : n.trim()))
      .filter(Boolean),
  );

export const configSchema = z.object({
  TOPE_LISTEN_HOST: withDefault(z.string().check(z.minLength(1)), '127.0.0.1'),
  TOPE_LISTEN_PORT: withDefault(port, 12315),
  TOPE_DEVICE_API_URL: withDefault(httpUrl, DEFAULT_DEVICE_API_URL),
  TOPE_FETCHER_STATE_DIR: withDefault(absPath, '/var/lib/tope-updater/fetcher'),
  TOPE_INSTALLER_STATE_DIR: withDefault(absPath, '/var/lib/tope-updater/installer'),
  TOPE_FETCHER_SOCKET: withDefault(absPath, '/run/tope-updater/fetcher.sock'),
  TOPE_INSTALLER_SOCKET: withDefault(absPath, '/run/tope-updater/installer.sock'),
  TOPE_VERSIONS_DIR: withDefault(absPath, '/opt/tope/versions'),
  TOPE_ALLOWED_ROOTS: z.pipe(
    z.pipe(
      withDefault(z.string(), '/opt/tope'),
      z.transform((s: string) => s.split(':').filter(Boolean)),
    ),
    z.array(absPath).check(z.minLength(1)),
  ),
  // Where the device's file system begins: '/' on a printer, ./var/root under `make run`.
  TOPE_ROOT_PREFIX: withDefault(absPath, '/'),
  TOPE_ALLOW_HTTP: withDefault(bool, false),
  // The trust chain (device paths, under TOPE_ROOT_PREFIX like TOPE_VERSIONS_DIR): the vendor keys a
  // package's signature must verify under, and the product id its `compatible` must name.
  TOPE_TRUSTED_KEYS_DIR: withDefault(absPath, '/etc/tope-updater/keys.d'),
  TOPE_PRODUCT_ID_FILE: withDefault(absPath, '/etc/tope-updater/product-id'),
  // Development only: a package without manifest.sig is accepted (a bad signature never is).
  TOPE_ALLOW_UNSIGNED: withDefault(bool, false),
  TOPE_IDLE_EXIT_MS: withDefault(ms, 60_000),
  // A command to a worker whose socket takes no connection (the worker between two lives) is tried
  // again for this long before SERVICE_UNAVAILABLE.
  TOPE_WORKER_CONNECT_GRACE_MS: withDefault(ms.check(z.maximum(60_000)), 5000),
  TOPE_HTTP_TIMEOUT_MS: withDefault(ms.check(z.minimum(100)), 30_000),
  TOPE_RETRY_BASE_MS: withDefault(ms, 1000),
  TOPE_RETRY_ATTEMPTS: withDefault(z.coerce.number().check(z.int(), z.minimum(0), z.maximum(20)), 3),
  TOPE_RETRY_AFTER_MAX_MS: withDefault(ms, 60_000),
  TOPE_REPORT_TIMEOUT_MS: withDefault(ms.check(z.minimum(1)), 500),
  TOPE_TRUST_WINDOW_MS: withDefault(ms, 24 * 3600 * 1000),
  TOPE_DISK_RESERVE_BYTES: withDefault(z.coerce.number().check(z.int(), z.minimum(0)), 4 * 1024 * 1024),
  TOPE_UNIT_STOP_TIMEOUT_MS: withDefault(ms, 10_000),
  TOPE_UNIT_START_TIMEOUT_MS: withDefault(ms, 30_000),
  TOPE_PROBATION_MS: withDefault(ms, 10_000),
  TOPE_POST_CMD_TIMEOUT_MS: withDefault(ms, 30_000),
  // One deadline for the whole time the printer's units are down during an install: from the
  // first unit's stop to the switch (post_cmds included, each bounded by what is left of it).
  // Past it the install is undone before the switch and the units start again.
  TOPE_UNITS_STOPPED_MAX_MS: withDefault(ms.check(z.minimum(1)), 5 * 60_000),
  // The units a package may stop and start (names or glob patterns with * and ?): the device's
  // word, not the package's. The updater's own units are never among them, whatever this says.
  TOPE_MANAGED_UNITS: z.pipe(
    z.pipe(withDefault(z.string(), 'device-api.service,ota-gui.service'), list(',')),
    z
      .array(
        z
          .string()
          .check(
            z.regex(
              /^[A-Za-z0-9:_.\\@*?-]+$/,
              'must be unit names or patterns (* and ?) like printerd.service,printer@*.service',
            ),
          ),
      )
      .check(z.minLength(1)),
  ),
  TOPE_SYSTEMCTL: withDefault(z.string().check(z.minLength(1)), 'systemctl'),
  // Where post_cmds run: `systemd`, each in a sandboxed transient unit of its own (systemd-run);
  // `none`, as a child of the installer with only PATH and TOPE_VERSION* in its environment (make
  // run, tests); `auto`, systemd under systemd as root, else every post_cmd fails (never unsandboxed
  // unless this says so).
  TOPE_POST_CMD_SANDBOX: withDefault(z.enum(['auto', 'systemd', 'none']), 'auto'),
  TOPE_SYSTEMD_RUN: withDefault(z.string().check(z.minLength(1)), 'systemd-run'),
  TOPE_ZIP_MAX_BYTES: withDefault(z.coerce.number().check(z.int(), z.minimum(1)), 2 * 1024 * 1024 * 1024),
  TOPE_ZIP_MAX_ENTRIES: withDefault(z.coerce.number().check(z.int(), z.minimum(1)), 10_000),
  // Tells a restart of the process from a reboot (bytes not yet fsynced may be lost in the latter).
  TOPE_BOOT_ID_FILE: withDefault(absPath, '/proc/sys/kernel/random/boot_id'),
  // The gateway answers only requests a web page cannot forge: these names (with the listening
  // port) are allowed in Host beside localhost, 127.0.0.1, [::1], TOPE_LISTEN_HOST and the
  // address a connection arrived on (a LAN drop-in needs nothing here unless reached by a name).
  TOPE_API_HOST_NAMES: z.pipe(withDefault(z.string(), ''), list(',', true)),
  // Slow clients: the request's headers, then its body, each within their deadline; past the cap
  // the oldest connection not being answered is closed to make room.
  TOPE_API_HEADERS_TIMEOUT_MS: withDefault(ms.check(z.minimum(100)), 5000),
  TOPE_API_BODY_TIMEOUT_MS: withDefault(ms.check(z.minimum(100)), 5000),
  TOPE_API_MAX_CONNECTIONS: withDefault(z.coerce.number().check(z.int(), z.minimum(4), z.maximum(10_000)), 256),
  // Package URLs: loopback, link-local and unspecified addresses are refused unless a net listed
  // here holds them ("127.0.0.0/8,::1/128"); private ranges too, unless TOPE_ALLOW_PRIVATE_URLS.
  TOPE_ALLOWED_URL_NETS: z.pipe(
    z.pipe(withDefault(z.string(), ''), list(',')),
    z.array(
      z.string().check(z.regex(/^[0-9a-fA-F:.]+\/\d{1,3}$/, 'must be a list of CIDR nets like 127.0.0.0/8,::1/128')),
    ),
  ),
  TOPE_ALLOW_PRIVATE_URLS: withDefault(bool, false),
  // A download slower than this on average over each window ends (resumable DOWNLOAD_FAILED): a
  // server trickling bytes just inside the stall timeout cannot hold the fetcher for ever.
  TOPE_DOWNLOAD_MIN_BYTES_PER_S: withDefault(z.coerce.number().check(z.int(), z.minimum(0)), 1024),
  TOPE_DOWNLOAD_RATE_WINDOW_MS: withDefault(ms.check(z.minimum(100)), 120_000),
  TOPE_LOG_LEVEL: withDefault(z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']), 'info'),
  // With a bad value elsewhere, a socket-activated process answers CONFIG_INVALID for this long,
  // then ends so that its next start reads the environment file again. Below 2.5 s, a client
  // polling it would make systemd's default start limit (5 starts in 10 s) close the socket.
  TOPE_CONFIG_RECHECK_MS: withDefault(ms, 5000),
});

// The proxy variables as curl and undici read them (each lower-case name before its upper-case
// one; the Python updater's httpx read these too, and ALL_PROXY, which is not read here): the
// fetcher's requests go through the proxy named for their scheme (https:// URLs through
// HTTP_PROXY's when HTTPS_PROXY is not set, as undici does); hosts in NO_PROXY (names, `.domain`
// suffixes, `*`, each with an optional :port, and nets such as 10.0.0.0/8 for an address written
// in the URL, as curl reads them) are reached directly. Only the fetcher reads them:
// they are often set for the whole system (systemd's DefaultEnvironment=), for tools of every
// kind, and a value only some other tool understands must not take the gateway or the installer
// down with CONFIG_INVALID.
const proxyShape = {
  HTTPS_PROXY: z.optional(proxyUrl),
  HTTP_PROXY: z.optional(proxyUrl),
  NO_PROXY: z.optional(z.string()),
};
const fetcherConfigSchema = z.extend(configSchema, proxyShape);

/** What a process reads: the fetcher's configuration has the proxy settings too (undefined elsewhere). */
export type Config = z.infer<typeof fetcherConfigSchema>;

/** A bad environment: which variables, and a message naming each with its value. */
export class ConfigError extends Error {
  constructor(
    readonly variables: string[],
    message: string,
  ) {
    super(message);
  }
}

/** Read under their lower-case name first, then their own (curl's and undici's order). */
const LOWER_CASE_FIRST = new Set(Object.keys(proxyShape));

/** A value as a message may show it: a proxy variable's without its credentials. */
const shown = (key: string, value: string) => (LOWER_CASE_FIRST.has(key) ? withoutPassword(value) : value);

/** A proxy URL's credentials (all before its last `@`) do not go into a message, a log line or /progress. */
export function withoutPassword(value: string): string {
  return value.replace(
    /^([a-z][a-z0-9+.-]*:\/\/)?[^]*@(?=[^@]*$)/i,
    (_match, scheme: string | undefined) => `${scheme ?? ''}***@`,
  );
}

/**
 * Reads the configuration once; a bad value names its variable, as it was set (`https_proxy` or
 * `HTTPS_PROXY`). `role`: the process reading it (the fetcher reads the proxy settings too).
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, role?: string): Config {
  const schema = role === 'fetcher' ? fetcherConfigSchema : configSchema;
  const picked: Record<string, string> = {};
  const setAs: Record<string, string> = {};
  for (const key of Object.keys(schema.shape)) {
    const names = LOWER_CASE_FIRST.has(key) ? [key.toLowerCase(), key] : [key];
    const name = names.find((n) => env[n] !== undefined && env[n] !== '');
    if (name === undefined) continue;
    picked[key] = env[name]!;
    setAs[key] = name;
  }
  const parsed = schema.safeParse(picked);
  if (!parsed.success) {
    const nameOf = (i: { path: PropertyKey[] }) => setAs[String(i.path[0])] ?? String(i.path[0]);
    const variables = [...new Set(parsed.error.issues.map(nameOf))];
    const lines = parsed.error.issues.map(
      (i) => `${nameOf(i)}=${JSON.stringify(shown(String(i.path[0]), picked[String(i.path[0])] ?? ''))}: ${i.message}`,
    );
    throw new ConfigError(variables, `invalid configuration: ${lines.join('; ')}`);
  }
  return parsed.data;
}

/**
 * One setting read on its own, its default when its value is bad: what a process whose
 * configuration is invalid still needs (where to listen, how to log) to say so.
 */
export function settingOrDefault<K extends keyof typeof configSchema.shape>(
  key: K,
  env: NodeJS.ProcessEnv = process.env,
): Config[K] {
  const field = configSchema.shape[key];
  const v = env[key];
  const parsed = field.safeParse(v === '' ? undefined : v);
  return (parsed.success ? parsed.data : field.parse(undefined)) as Config[K];
}
