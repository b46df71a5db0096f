// `make sample`: builds a small package into ./var/sample and prints the calls that download
// and install it against `make run` (served by `python3 -m http.server` from that folder).
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import yazl from 'yazl';

const version = process.argv[2] ?? '1.0.0';
const dir = path.resolve('var/sample');
mkdirSync(dir, { recursive: true });
const zip = new yazl.ZipFile();
const manifest = {
  version,
  modules: [
    { name: 'hello', src: 'bin/hello', dst: '/opt/tope/bin/hello', post_cmds: ['./bin/hello > hello.out'] },
    { name: 'config', src: 'etc/printer.conf', dst: '/opt/tope/etc/printer.conf' },
  ],
};
zip.addBuffer(Buffer.from(JSON.stringify(manifest, null, 2)), 'manifest.json');
zip.addBuffer(Buffer.from(`#!/bin/sh\necho "hello from tope ${version}"\n`), 'bin/hello', { mode: 0o100755 });
zip.addBuffer(Buffer.from(`speed=100\nversion=${version}\n`), 'etc/printer.conf', { mode: 0o100644 });
zip.end();
const chunks: Buffer[] = [];
for await (const c of zip.outputStream as AsyncIterable<Buffer>) chunks.push(c);
const body = Buffer.concat(chunks);
const name = `tope-${version}.zip`;
writeFileSync(path.join(dir, name), body);
const md5 = createHash('md5').update(body).digest('hex');
const request = { version, package_url: `http://127.0.0.1:8000/${name}`, package_name: name, package_size: body.length, package_md5: md5 };
process.stdout.write(`wrote var/sample/${name} (${body.length} bytes, md5 ${md5})

  (cd var/sample && python3 -m http.server 8000 --bind 127.0.0.1) &
  curl -s 127.0.0.1:12315/api/v1.0/download -H 'content-type: application/json' -d '${JSON.stringify(request)}'
  curl -s 127.0.0.1:12315/api/v1.0/progress
  curl -s 127.0.0.1:12315/api/v1.0/update -H 'content-type: application/json' -d '{"version":"${version}"}'
  ls -l var/root/opt/tope/versions/ && cat var/root/opt/tope/versions/current/hello.out
`);
