import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { promises as fsp, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { freePort } from './services.js';
import { tempDir } from './temp-dir.js';
import { waitFor } from './wait.js';

// Package servers no one here wrote, started by the tests from Debian's packages
// (scripts/ensure-tools.sh installs them): each on a free port, serving a temp directory.

export interface RealOrigin {
  readonly name: string;
  readonly port: number;
  readonly scheme: 'http' | 'https';
  /** What the server logged so far (nginx: its access log; python: its request log). */
  log(): Promise<string>;
  stop(): Promise<void>;
}

export interface TlsFiles {
  key: string;
  cert: string;
}

/** Why a server cannot be started here, or null when it can. */
export function missing(command: string): string | null {
  const found =
    spawnSync('sh', ['-c', `command -v ${command} || test -x /usr/sbin/${command}`], { stdio: 'ignore' }).status === 0;
  return found ? null : `${command} is not installed (scripts/ensure-tools.sh installs it when run as root)`;
}

/** Writes the key and certificate where a server reads them from. */
export function tlsFiles(tls: { key: string; cert: string }): TlsFiles {
  const dir = tempDir('origin-tls-');
  const files = { key: path.join(dir, 'srv.key'), cert: path.join(dir, 'srv.pem') };
  writeFileSync(files.key, tls.key, { mode: 0o600 });
  writeFileSync(files.cert, tls.cert);
  return files;
}

const accepts = (port: number, host: string) =>
  new Promise<boolean>((ok) => {
    const s = net.connect(port, host);
    s.on('connect', () => {
      s.destroy();
      ok(true);
    });
    s.on('error', () => ok(false));
  });

class Spawned {
  output = '';
  readonly exited: Promise<void>;
  constructor(readonly child: ChildProcess) {
    child.stdout?.setEncoding('utf8').on('data', (c: string) => {
      this.output += c;
    });
    child.stderr?.setEncoding('utf8').on('data', (c: string) => {
      this.output += c;
    });
    this.exited = new Promise((ok) => child.on('exit', () => ok()));
  }

  alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async stop(): Promise<void> {
    if (this.alive()) this.child.kill('SIGKILL');
    await this.exited;
  }
}

/** Starts `launch(port)` on a free port until it listens (another process may take the port first). */
async function onFreePort(
  name: string,
  launch: (port: number) => Spawned,
  host = '127.0.0.1',
): Promise<{ port: number; proc: Spawned }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const proc = launch(port);
    const up = await waitFor(
      `${name} listening on ${port}`,
      async () => (await accepts(port, host)) || !proc.alive() || null,
      15_000,
    );
    if (up && proc.alive()) return { port, proc };
    await proc.stop();
    if (attempt === 3) throw new Error(`${name} did not start: ${proc.output.slice(-500)}`);
  }
}

/**
 * nginx 1.22 as Debian ships it, in the foreground and without workers. It answers Range with
 * 206, If-Range by comparing with its own ETag (or Last-Modified), and ends a kept-alive
 * connection with `Connection: close` on the keepaliveRequests-th answer.
 */
export async function startNginx(
  docroot: string,
  tls?: TlsFiles,
  keepaliveRequests = 100,
  /** More directives for the server block (gzip_static always, say). */
  serverConfig = '',
  /** The one address it listens on: an IPv6 one ('::1') makes an origin reachable over IPv6 only. */
  host = '127.0.0.1',
): Promise<RealOrigin> {
  const listenOn = net.isIPv6(host) ? `[${host}]` : host;
  const dir = tempDir('nginx-');
  const accessLog = path.join(dir, 'access.log');
  const { port, proc } = await onFreePort(
    'nginx',
    (p) => {
      writeFileSync(
        path.join(dir, 'nginx.conf'),
        `
daemon off;
master_process off;
pid ${dir}/nginx.pid;
error_log stderr warn;
events { worker_connections 64; }
http {
  log_format tope '$status range="$http_range" if_range="$http_if_range" etag="$sent_http_etag" connection="$sent_http_connection" request=$connection_requests';
  access_log ${accessLog} tope;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests ${keepaliveRequests};
  default_type application/octet-stream;
  server {
    listen ${listenOn}:${p}${tls ? ' ssl' : ''};
    ${tls ? `ssl_certificate ${tls.cert}; ssl_certificate_key ${tls.key};` : ''}
    root ${docroot};
    ${serverConfig}
  }
}
`,
      );
      return new Spawned(
        spawn('nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf')], {
          stdio: ['ignore', 'pipe', 'pipe'],
          env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin` },
        }),
      );
    },
    host,
  );
  return {
    name: tls ? 'nginx over TLS' : 'nginx',
    port,
    scheme: tls ? 'https' : 'http',
    log: () => fsp.readFile(accessLog, 'utf8').catch(() => ''),
    stop: () => proc.stop(),
  };
}

/**
 * `openssl s_server -WWW`: HTTP/1.0 over TLS, no Content-Length, no Range, no ETag; the
 * connection closes after the body, which is the only end of it.
 */
export async function startOpensslWww(docroot: string, tls: TlsFiles): Promise<RealOrigin> {
  const { port, proc } = await onFreePort(
    'openssl s_server',
    (p) =>
      new Spawned(
        spawn(
          'openssl',
          ['s_server', '-WWW', '-quiet', '-accept', `127.0.0.1:${p}`, '-cert', tls.cert, '-key', tls.key],
          { cwd: docroot, stdio: ['ignore', 'pipe', 'pipe'] },
        ),
      ),
  );
  return {
    name: 'openssl s_server -WWW',
    port,
    scheme: 'https',
    log: async () => proc.output,
    stop: () => proc.stop(),
  };
}

/** `python3 -m http.server`: HTTP/1.0, Content-Length and Last-Modified, Range ignored (200). */
export async function startPythonHttp(docroot: string): Promise<RealOrigin> {
  const { port, proc } = await onFreePort(
    'python3 -m http.server',
    (p) =>
      new Spawned(
        spawn('python3', ['-u', '-m', 'http.server', String(p), '--bind', '127.0.0.1', '--directory', docroot], {
          stdio: ['ignore', 'pipe', 'pipe'],
        }),
      ),
  );
  return {
    name: 'python3 -m http.server',
    port,
    scheme: 'http',
    log: async () => proc.output,
    stop: () => proc.stop(),
  };
}

export interface RealProxy {
  readonly port: number;
  /** The request lines the proxy took so far ("CONNECT 127.0.0.1:443 HTTP/1.1", "GET http://... HTTP/1.1"). */
  requests(): Promise<string[]>;
  stop(): Promise<void>;
}

/**
 * tinyproxy 1.11 as Debian ships it (tinyproxy-bin), in the foreground: a forward proxy that
 * tunnels CONNECT to any port and forwards absolute-form requests, for clients on loopback only;
 * with `auth`, only to requests carrying those Basic credentials (407 otherwise).
 */
export async function startTinyproxy(auth?: { user: string; password: string }): Promise<RealProxy> {
  const dir = tempDir('tinyproxy-');
  const logFile = path.join(dir, 'requests.log');
  const { port, proc } = await onFreePort('tinyproxy', (p) => {
    const conf = path.join(dir, `tinyproxy-${p}.conf`);
    writeFileSync(
      conf,
      [
        `Port ${p}`,
        'Listen 127.0.0.1',
        'Timeout 60',
        `LogFile "${logFile}"`,
        // one line per connection and per request line, which requests() reads
        'LogLevel Connect',
        'MaxClients 20',
        'Allow 127.0.0.1',
        ...(auth ? [`BasicAuth ${auth.user} ${auth.password}`] : []),
        '',
      ].join('\n'),
    );
    return new Spawned(spawn('tinyproxy', ['-d', '-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] }));
  });
  return {
    port,
    requests: async () => {
      const log = await fsp.readFile(logFile, 'utf8').catch(() => '');
      return [...log.matchAll(/\]: Request \(file descriptor \d+\): (.+)$/gm)].map((m) => m[1]);
    },
    stop: () => proc.stop(),
  };
}
