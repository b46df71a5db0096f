import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { tempDir } from './temp-dir.js';

/**
 * A throw-away certificate authority and a server certificate for 127.0.0.1, made with openssl.
 * `server` makes the certificate wrong on purpose: other names, or `days: -1` (already expired).
 */
export function makeTestCa(server: { altNames?: string; days?: number } = {}): {
  caFile: string;
  key: string;
  cert: string;
} {
  const dir = tempDir('ca-');
  const f = (n: string) => path.join(dir, n);
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  ssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=tope test CA',
    '-keyout',
    f('ca.key'),
    '-out',
    f('ca.pem'),
  );
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', f('srv.key'), '-out', f('srv.csr'));
  writeFileSync(f('ext'), `subjectAltName=${server.altNames ?? 'IP:127.0.0.1,DNS:localhost'}\n`);
  ssl(
    'x509',
    '-req',
    '-in',
    f('srv.csr'),
    '-CA',
    f('ca.pem'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-days',
    String(server.days ?? 2),
    '-extfile',
    f('ext'),
    '-out',
    f('srv.pem'),
  );
  return { caFile: f('ca.pem'), key: readFileSync(f('srv.key'), 'utf8'), cert: readFileSync(f('srv.pem'), 'utf8') };
}
