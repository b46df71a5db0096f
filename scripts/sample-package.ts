// `make sample`: a small package built and signed by tope-pack (with the development key that
// `make run` trusts) into ./var/sample, and the calls that download and install it against
// `make run` (served by `python3 -m http.server` from that folder).
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEV_PRODUCT_ID, ensureDevTrust } from './dev-trust.js';

const version = process.argv[2] ?? '1.0.0';
const dir = path.resolve('var/sample');
const src = path.join(dir, 'src');
mkdirSync(path.join(src, 'bin'), { recursive: true });
mkdirSync(path.join(src, 'etc'), { recursive: true });
writeFileSync(path.join(src, 'bin/hello'), `#!/bin/sh\necho "hello from tope ${version}"\n`, { mode: 0o755 });
writeFileSync(path.join(src, 'etc/printer.conf'), `speed=100\nversion=${version}\n`, { mode: 0o644 });
const description = {
  version,
  compatible: [DEV_PRODUCT_ID],
  security_version: 0,
  modules: [
    { name: 'hello', src: 'bin/hello', dst: '/opt/tope/bin/hello', post_cmds: ['./bin/hello > hello.out'] },
    { name: 'config', src: 'etc/printer.conf', dst: '/opt/tope/etc/printer.conf' },
  ],
};
writeFileSync(path.join(dir, 'description.json'), `${JSON.stringify(description, null, 2)}\n`);
const key = ensureDevTrust();
const name = `tope-${version}.zip`;
// beside this script in dist/scripts, wherever it is run from
const tool = path.join(path.dirname(fileURLToPath(import.meta.url)), 'tope-pack/main.js');
const built = JSON.parse(
  execFileSync(
    process.execPath,
    [tool, 'build', path.join(dir, 'description.json'), src, '--key', key, '--out', path.join(dir, name)],
    { encoding: 'utf8' },
  ),
);
const request = {
  version,
  package_url: `http://127.0.0.1:8000/${name}`,
  package_name: name,
  package_size: built.package_size,
  package_md5: built.package_md5,
};
process.stdout
  .write(`wrote var/sample/${name} (${built.package_size} bytes, md5 ${built.package_md5}), signed with ${path.relative(process.cwd(), key)}

  (cd var/sample && python3 -m http.server 8000 --bind 127.0.0.1) &
  curl -s 127.0.0.1:12315/api/v1.0/download -H 'content-type: application/json' -d '${JSON.stringify(request)}'
  curl -s 127.0.0.1:12315/api/v1.0/progress
  curl -s 127.0.0.1:12315/api/v1.0/update -H 'content-type: application/json' -d '{"version":"${version}"}'
  ls -l var/root/opt/tope/versions/ && cat var/root/opt/tope/versions/current/hello.out
`);
