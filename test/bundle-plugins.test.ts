import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { test } from 'node:test';
import { build } from 'esbuild';
import { assertOnlyCalled, BUNDLE_OPTIONS } from '../scripts/bundle-plugins.js';
import { tempDir } from './helpers/temp-dir.js';

// What the services' bundles leave out (scripts/bundle-plugins.ts), each shown on a small program
// built the way `make build` builds a service and run by Node: the built-ins it has loaded come
// from process.moduleLoadList.

const run = promisify(execFile);
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const dir = tempDir('tope-bundle-plugins-');

/** Writes `files` under the test's folder and bundles `entry` among them as a service is bundled. */
async function bundle(name: string, files: Record<string, string>, entry: string) {
  for (const [file, text] of Object.entries(files)) {
    await fsp.mkdir(path.dirname(path.join(dir, name, file)), { recursive: true });
    await fsp.writeFile(path.join(dir, name, file), text);
  }
  const outfile = path.join(dir, name, 'out.mjs');
  const { metafile } = await build({
    ...BUNDLE_OPTIONS,
    entryPoints: [path.join(dir, name, entry)],
    outfile,
    logLevel: 'silent',
    metafile: true,
    nodePaths: [path.join(repo, 'node_modules')], // pino, as the services have it
  });
  return { outfile, metafile };
}

/** Runs a built program that prints one JSON line last. */
async function runJson(outfile: string): Promise<Record<string, unknown>> {
  const { stdout } = await run(process.execPath, [outfile]);
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
}

const LOADED = "process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice(13))";

test('an ES import of node:util or node:crypto loads neither util lazy exports nor crypto until one is read', async () => {
  const { outfile } = await bundle(
    'lazy',
    {
      'main.mjs': `
import util, { promisify } from 'node:util';
import { createHash } from 'node:crypto';
const atStart = ${LOADED};
await promisify(setTimeout)(1);
const digest = createHash('sha256').update('tope').digest('hex');
console.log(JSON.stringify({ atStart, afterUse: ${LOADED}, digest, inherits: typeof util.inherits }));
`,
    },
    'main.mjs',
  );
  const out = await runJson(outfile);
  const atStart = out.atStart as string[];
  // util's lazy exports (worker_threads through the transferable abort signals, parseArgs, diff)
  for (const lazy of ['worker_threads', 'internal/util/parse_args/parse_args', 'internal/util/diff', 'crypto'])
    assert.ok(!atStart.includes(lazy), `${lazy} loaded before anything read it`);
  assert.ok((out.afterUse as string[]).includes('crypto'), 'crypto loaded once createHash was read');
  assert.equal(out.digest, createHash('sha256').update('tope').digest('hex'));
  assert.equal(out.inherits, 'function', "util's default export still has every export");
});

test('pino bundled without its transports: it logs, loads no worker_threads, and says transports are not built in', async () => {
  const { outfile } = await bundle(
    'pino',
    {
      'main.mjs': `
import pino from 'pino';
const log = pino({ base: { service: 'probe' } }, pino.destination({ dest: 1, sync: true }));
log.info('hello');
let refused = '';
try { pino.transport({ target: 'pino/file' }); } catch (e) { refused = e.message; }
console.log(JSON.stringify({ loaded: ${LOADED}, refused }));
`,
    },
    'main.mjs',
  );
  const { stdout } = await run(process.execPath, [outfile]);
  const [line, last] = stdout.trim().split('\n');
  assert.equal((JSON.parse(line!) as { msg: string; service: string }).msg, 'hello');
  const out = JSON.parse(last!) as { loaded: string[]; refused: string };
  assert.ok(!out.loaded.includes('worker_threads'), 'worker_threads loaded');
  assert.match(out.refused, /pino transports are not built into this bundle/);
});

test("a bundled package's assert() guards as Node's does; using more of assert fails the build", async () => {
  const { outfile } = await bundle(
    'assert',
    {
      'node_modules/guarded/index.js': `
const assert = require('node:assert');
module.exports = (value) => assert(value, 'value must be set');
`,
      'main.mjs': `
import guard from 'guarded';
guard(1);
let thrown = {};
try { guard(0); } catch (e) { thrown = { name: e.name, code: e.code, message: e.message, isError: e instanceof Error }; }
console.log(JSON.stringify({ thrown, loaded: ${LOADED} }));
`,
    },
    'main.mjs',
  );
  const out = await runJson(outfile);
  assert.deepEqual(out.thrown, {
    name: 'AssertionError',
    code: 'ERR_ASSERTION',
    message: 'value must be set',
    isError: true,
  });
  assert.ok(!(out.loaded as string[]).includes('assert'), "Node's assert module loaded");

  for (const [name, use] of [
    ['member', "const assert = require('assert');\nmodule.exports = () => assert.strictEqual(1, 1);"],
    ['destructured', "const { deepEqual } = require('node:assert');\nmodule.exports = () => deepEqual(1, 1);"],
    ['chained', "module.exports = () => require('assert').equal(1, 1);"],
  ] as const) {
    const { metafile } = await bundle(
      `assert-${name}`,
      { 'node_modules/strict/index.js': use, 'main.mjs': "import s from 'strict';\ns();\n" },
      'main.mjs',
    );
    await assert.rejects(assertOnlyCalled(metafile.inputs), /strict\/index\.js uses .*is assert\(\) alone/, name);
  }
});

test("undici's Milo parser is left out of the fetcher's bundle, and its HTTP/1.1 client still parses a response", async () => {
  const fetcherBundle = await fsp.readFile(path.join(repo, 'dist', 'bundle', 'fetcher.js'), 'utf8');
  // parser-h1.js's own name for the Milo build it loads, and the stub's message in its place
  assert.ok(!fetcherBundle.includes('miloPackage'), "Milo's parser built into the fetcher");
  assert.ok(fetcherBundle.includes('the Milo parser is not built into this bundle'));
  const { outfile } = await bundle(
    'undici',
    {
      'main.mjs': `
import http from 'node:http';
import Agent from 'undici/lib/dispatcher/agent.js';
import request from 'undici/lib/api/api-request.js';
const server = http.createServer((req, res) => res.end('parsed by llhttp'));
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const agent = new Agent();
const origin = 'http://127.0.0.1:' + server.address().port;
const response = await request.call(agent, { origin, path: '/', method: 'GET' });
const body = await response.body.text();
await agent.close();
server.close();
console.log(JSON.stringify({ status: response.statusCode, body }));
`,
    },
    'main.mjs',
  );
  assert.deepEqual(await runJson(outfile), { status: 200, body: 'parsed by llhttp' });
});

test("undici's SOCKS5 agent is left out of the fetcher's bundle; its proxy agent is built in (a proxy: test/proxy.test.ts)", async () => {
  const fetcherBundle = await fsp.readFile(path.join(repo, 'dist', 'bundle', 'fetcher.js'), 'utf8');
  // socks5-client.js's class, and the stub's message in the agent's place (esbuild writes a class
  // as `Name = class extends`, numbering the name to keep it apart from another of the same name)
  const declares = (name: string) => new RegExp(`\\b${name}\\d*=class extends`).test(fetcherBundle);
  assert.ok(!declares('Socks5Client'), "undici's SOCKS5 client built into the fetcher");
  assert.ok(fetcherBundle.includes('SOCKS proxies are not built into this bundle'));
  assert.ok(declares('EnvHttpProxyAgent'), "undici's proxy agent not in the fetcher's bundle");
});
