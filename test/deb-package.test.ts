import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { distDir } from './helpers/services.js';
import { tempDir } from './helpers/temp-dir.js';

// What `make deb` builds, as a Debian developer reads a package before installing it: its control
// fields, the files every Debian package carries (copyright, changelog, md5sums), nothing in a real
// /lib and no node_modules, and lintian's verdict where lintian is installed. Installing it under a
// real systemd is test/system-deb.test.ts.

const repo = path.resolve(distDir, '..');
const pkg = JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')) as {
  version: string;
  engines: { node: string };
  dependencies: Record<string, string>;
};
const work = tempDir('deb-package-');
const deb = execFileSync('make', ['-s', '-C', repo, 'deb-package', `DEB_DIR=${work}`], {
  encoding: 'utf8',
  env: { ...process.env, MAKEFLAGS: '' },
})
  .trim()
  .split('\n')
  .at(-1)!;
const dpkgDeb = (...args: string[]) => execFileSync('dpkg-deb', args, { encoding: 'utf8' });

test('control: version, Depends on the Node package.json names and systemd, a description within 80 columns', () => {
  const field = (name: string) => dpkgDeb('-f', deb, name).trim();
  assert.equal(field('Package'), 'tope-updater');
  assert.equal(field('Version'), pkg.version);
  assert.equal(field('Architecture'), 'all');
  const nodeMin = /[0-9]+(\.[0-9]+)*/.exec(pkg.engines.node)![0];
  assert.equal(field('Depends'), `nodejs (>= ${nodeMin}), systemd`);
  for (const line of field('Description').split('\n')) assert.ok(line.length <= 80, line);
});

test('files: copyright naming every bundled dependency, changelog, md5sums of every file, no node_modules, nothing in /lib', () => {
  const files = dpkgDeb('-c', deb)
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(/\s+/).slice(5).join(' ').replace(/^\.\//, ''));
  assert.ok(files.includes('usr/share/doc/tope-updater/copyright'));
  assert.ok(files.includes('usr/share/doc/tope-updater/changelog.gz'));
  assert.ok(files.includes('usr/share/man/man1/tope-pack.1.gz'));
  assert.ok(files.includes('usr/lib/tope-updater/dist/bundle/tools/tope-pack.js'));
  assert.deepEqual(
    files.filter((f) => /(^|\/)node_modules\//.test(f)),
    [],
  );
  assert.deepEqual(
    files.filter((f) => /^(lib|bin|sbin|lib64)\//.test(f)),
    [],
  );

  const tree = path.join(work, 'tree');
  dpkgDeb('-R', deb, tree);
  const copyright = readFileSync(path.join(tree, 'usr/share/doc/tope-updater/copyright'), 'utf8');
  assert.match(copyright, /^Format: https:\/\/www\.debian\.org\/doc\/packaging-manuals\/copyright-format\/1\.0\/$/m);
  for (const dependency of Object.keys(pkg.dependencies)) {
    const stanza = copyright.split('\n\n').find((s) => s.startsWith(`Files: node_modules/${dependency}/*\n`));
    assert.ok(stanza, `${dependency} in the copyright file`);
    // the licence's name and its whole text, which MIT asks to go with every copy
    assert.match(stanza, /^License: MIT$/m, dependency);
    assert.match(stanza, /^ Permission is hereby granted, free of charge/m, dependency);
  }
  const changelog = execFileSync('gzip', ['-dc', path.join(tree, 'usr/share/doc/tope-updater/changelog.gz')], {
    encoding: 'utf8',
  });
  assert.match(
    changelog,
    new RegExp(`^tope-updater \\(${pkg.version.replace(/\./g, '\\.')}\\) unstable; urgency=medium\n`),
  );
  assert.match(
    changelog,
    /^ -- TOPE firmware team <firmware@tope\.invalid> {2}\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d \+0000$/m,
  );

  // tope-pack's manual page, from its usage text: every command in it
  const man = execFileSync('gzip', ['-dc', path.join(tree, 'usr/share/man/man1/tope-pack.1.gz')], { encoding: 'utf8' });
  for (const command of ['keygen', 'build', 'verify'])
    assert.match(man, new RegExp(`^ {2}tope\\\\-pack ${command} `, 'm'));

  // dpkg --verify's reference: every file but the control area, each hash right
  const sums = readFileSync(path.join(tree, 'DEBIAN/md5sums'), 'utf8').trim().split('\n');
  assert.deepEqual(sums.map((l) => l.slice(34)).sort(), files.filter((f) => f && !f.endsWith('/')).sort());
  const check = spawnSync('md5sum', ['--check', '--quiet', path.join(tree, 'DEBIAN/md5sums')], {
    cwd: tree,
    encoding: 'utf8',
  });
  assert.equal(check.status, 0, check.stdout + check.stderr);
  assert.equal(readFileSync(path.join(tree, 'DEBIAN/conffiles'), 'utf8'), '/etc/default/tope-updater\n');
  for (const script of ['postinst', 'prerm', 'postrm'])
    assert.equal(spawnSync('sh', ['-n', path.join(tree, 'DEBIAN', script)]).status, 0, script);
});

const lintian = spawnSync('lintian', ['--version']).status === 0;

test(
  'lintian: no error, no warning',
  { skip: lintian ? false : 'lintian is not installed (apt-get install lintian)', timeout: 300_000 },
  () => {
    // a TMPDIR of the test's: lintian 2.116 leaves its ELF index's database files there
    // (mldbm-elf-*, Lintian::Storage::MLDBM) when it ends
    const r = spawnSync('lintian', ['--tag-display-limit', '0', deb], {
      encoding: 'utf8',
      env: { ...process.env, TMPDIR: tempDir('lintian-') },
    });
    assert.deepEqual(
      r.stdout.split('\n').filter((l) => /^[EW]: /.test(l)),
      [],
    );
  },
);
