import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { stages } from '../shared/status.js';
import { distDir } from './helpers/services.js';

// Every status the product shows is built by the constructors in shared/status.ts, so a stage's
// message and progress rules live in one place. This reads the product's sources for a status
// built by hand: an object literal that names a stage.

const repo = path.join(distDir, '..');
const sources = (dir: string): string[] =>
  readdirSync(path.join(repo, dir), { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => path.relative(repo, path.join(entry.parentPath, entry.name)));

test('no status is built by hand outside shared/status.ts: no object literal names a stage', () => {
  const literal = new RegExp(`\\bstage:\\s*['"\`](${stages.join('|')})['"\`]`);
  const found = [...sources('services'), ...sources('shared')]
    .filter((file) => file !== path.join('shared', 'status.ts'))
    .flatMap((file) =>
      readFileSync(path.join(repo, file), 'utf8')
        .split('\n')
        .flatMap((line, index) => (literal.test(line) ? [`${file}:${index + 1}: ${line.trim()}`] : [])),
    );
  assert.deepEqual(found, []);
});
