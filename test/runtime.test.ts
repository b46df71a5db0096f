import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { distDir } from './helpers/services.js';
import { tempDir } from './helpers/temp-dir.js';

// Which Node runs everything: package.json's engines.node is the floor, scripts/node.sh the one
// place that decides between this machine's node and the pinned build it installs.

const repo = path.join(distDir, '..');
const minimum = /^>=(\d+\.\d+\.\d+)$/.exec(
  JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')).engines.node,
)![1];
const pin = /^PIN=(\S+)$/m.exec(readFileSync(path.join(repo, 'scripts/node.sh'), 'utf8'))![1];
const atLeast = (have: string, floor: string) => {
  const [a, b] = [have, floor].map((v) => v.split('.').map(Number));
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i] > b[i];
  return true;
};

/** scripts/node.sh's answer with only a stand-in `node` (reporting `version`) ahead of the system's tools. */
function nodeShWith(version: string): { standIn: string; answer: string } {
  const dir = tempDir('stand-in-node-');
  writeFileSync(path.join(dir, 'node'), `#!/bin/sh\necho ${version}\n`, { mode: 0o755 });
  const answer = execFileSync('bash', [path.join(repo, 'scripts/node.sh')], {
    encoding: 'utf8',
    env: { ...process.env, PATH: `${dir}:/usr/local/bin:/usr/bin:/bin` },
  }).trim();
  return { standIn: dir, answer };
}

test('the tests and the services they start run on a Node that meets engines.node', (t) => {
  t.diagnostic(`node ${process.version} at ${process.execPath}`);
  assert.ok(
    atLeast(process.versions.node, minimum),
    `node ${process.version} is older than >=${minimum}: run the tests through make`,
  );
  assert.ok(atLeast(pin, minimum), `the pinned ${pin} itself meets >=${minimum}`);
});

test('node.sh: a node on PATH that meets engines.node is used as it is (a stand-in node that reports 99.0.0)', () => {
  const { standIn, answer } = nodeShWith('99.0.0');
  assert.equal(answer, standIn);
});

const arch = process.arch === 'arm64' ? 'arm64' : 'x64';
const cached = path.join(
  process.env.TOPE_NODE_CACHE ??
    path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'tope-updater/node'),
  `v${pin}-linux-${arch}`,
);
test(
  'node.sh: an older node on PATH gets the pinned build from the cache (a stand-in node that reports 20.0.0)',
  {
    skip: existsSync(path.join(cached, 'bin/node'))
      ? undefined
      : `the pinned Node ${pin} is not in ${cached} (this machine's node is new enough; the test would download 50 MB)`,
  },
  () => {
    const { answer } = nodeShWith('20.0.0');
    assert.equal(answer, path.join(cached, 'bin'));
    assert.equal(
      execFileSync(path.join(answer, 'node'), ['-p', 'process.versions.node'], { encoding: 'utf8' }).trim(),
      pin,
    );
  },
);
