import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { parseContentLength, parseContentRange, parseRetryAfter } from '../services/fetcher/http-headers.js';
import { planInstall } from '../services/installer/manifest.js';
import { manifestSchema } from '../shared/package-manifest.js';
import { PackageArchive } from '../shared/package-archive.js';
import { checkPackageTrust, expectationOf } from '../shared/trust/package-trust.js';
import { errorCodes, UpdaterError } from '../shared/errors.js';
import { busyStages, stages } from '../shared/status.js';
import { call } from './helpers/api.js';
import { InstallDevice } from './helpers/install-device.js';
import { Origin } from './helpers/origin.js';
import { buildPackage, md5, TEST_KEY_FILE, TEST_PRODUCT_ID, testKey } from './helpers/packages.js';
import { tempDir } from './helpers/temp-dir.js';

// Property and fuzz tests (fast-check): the header parsers, the manifest planner and the zip
// reader against random and mutated input, and the gateway against random command sequences.
// A failing case prints its seed and the shrunk counterexample; FC_SEED replays it.

const seed = process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined;
const runs = (n: number) => ({ numRuns: Number(process.env.FC_RUNS || n), ...(seed !== undefined ? { seed } : {}) });

test('Content-Range: every well-formed value round-trips; any other string is null or consistent, never a throw', () => {
  fc.assert(
    fc.property(fc.nat(2 ** 40), fc.nat(2 ** 40), fc.nat(2 ** 40), (a, len, extra) => {
      const end = a + len;
      const total = end + 1 + extra;
      assert.deepEqual(parseContentRange(`bytes ${a}-${end}/${total}`), { start: a, end, total });
      assert.deepEqual(parseContentRange(`bytes ${a}-${end}/*`), { start: a, end, total: null });
      assert.equal(parseContentRange(`bytes ${end + 1}-${a}/${total}`), null, 'end before start');
      assert.equal(parseContentRange(`bytes ${a}-${end}/${end}`), null, 'end at or past total');
    }),
    runs(2000),
  );
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.stringMatching(/^bytes [0-9* -]{0,12}\/[0-9*]{0,6}$/)), (s) => {
      const r = parseContentRange(s);
      if (r) assert.ok(Number.isSafeInteger(r.start) && r.start <= r.end && (r.total === null || r.end < r.total), s);
    }),
    runs(3000),
  );
});

test('Content-Length and Retry-After: only clean numbers (or an HTTP date) count, never a throw', () => {
  fc.assert(
    fc.property(fc.string(), (s) => {
      const n = parseContentLength(s);
      if (n !== null) assert.ok(Number.isSafeInteger(n) && n >= 0 && /^\s*\d+\s*$/.test(s), s);
      const ms = parseRetryAfter(s, 0);
      if (ms !== null) assert.ok(ms >= 0, s);
    }),
    runs(3000),
  );
  fc.assert(
    fc.property(fc.nat(1e9), (n) => {
      assert.equal(parseContentLength(String(n)), n);
    }),
    runs(500),
  );
});

// Path pieces that have broken installers: climbing out, doubling, roots that are prefixes.
const pathPiece = fc.constantFrom(
  'opt',
  'tope',
  'tope-data',
  'etc',
  'versions',
  'current',
  '..',
  '.',
  '',
  'bin',
  'a',
  'passwd',
  'x\0y',
  ' ',
  'v1.0.0',
  'tope-updater',
  'keys.d',
  'k.pub',
);
const devicePath = fc.oneof(
  fc.array(pathPiece, { minLength: 1, maxLength: 6 }).map((p) => `/${p.join('/')}`),
  fc.array(pathPiece, { minLength: 1, maxLength: 6 }).map((p) => p.join('/')),
  fc.string({ maxLength: 40 }),
);
const layout = {
  allowedRoots: ['/opt/tope', '/etc/tope'],
  versionsDir: '/opt/tope/versions',
  keysDir: '/etc/tope-updater/keys.d',
  trustedKeys: ['a.pub'],
};
const files = new Map([
  ['bin/a', {}],
  ['bin/b', {}],
  ['etc/c', {}],
]);

test('the manifest planner: any manifest is refused with INVALID_MANIFEST or placed strictly inside the allowed roots', () => {
  // weighted toward manifests that pass, so that placements are made and checked, not only refusals
  const likely = <T>(valid: fc.Arbitrary<T>, other: fc.Arbitrary<T>) =>
    fc.oneof({ arbitrary: valid, weight: 19 }, { arbitrary: other, weight: 1 });
  const rootedPath = fc
    .tuple(
      likely(
        fc.constantFrom('/opt/tope', '/etc/tope'),
        fc.constantFrom('/opt/tope/versions', '/etc/tope-updater/keys.d', '/opt'),
      ),
      fc.array(likely(fc.constantFrom('bin', 'a', 'etc', 'k.pub', 'versions', 'current'), pathPiece), {
        minLength: 1,
        maxLength: 3,
      }),
    )
    .map(([root, pieces]) => `${root}/${pieces.join('/')}`);
  const module = fc.record(
    {
      name: likely(fc.constantFrom('a', 'b', 'c'), fc.string({ maxLength: 5 })),
      src: likely(fc.constantFrom('bin/a', 'bin/b', 'etc/c'), fc.constantFrom('../bin/a', 'bin/', 'x', '')),
      dst: likely(rootedPath, devicePath),
      size: likely(fc.nat(10), fc.constant(-1)),
      sha256: likely(fc.constant('0'.repeat(64)), fc.constant('not hex')),
      process_name: fc.option(likely(fc.constant('a.service'), fc.string({ maxLength: 10 })), { nil: undefined }),
      restart_order: fc.option(likely(fc.integer({ min: -1000, max: 1000 }), fc.integer({ min: -2000, max: 2000 })), {
        nil: undefined,
      }),
    },
    { requiredKeys: ['name', 'src', 'dst', 'size', 'sha256'] },
  );
  const manifest = fc.oneof(
    {
      arbitrary: fc.record({
        version: likely(fc.constant('2.0.0'), fc.constantFrom('2.0', '9.9.9')),
        compatible: likely(fc.constant(['tope-test']), fc.constant([])),
        security_version: likely(fc.integer({ min: 0, max: 3 }), fc.constant(-1)),
        modules: likely(
          fc.uniqueArray(module, { selector: (m) => m.name, minLength: 1, maxLength: 4 }),
          fc.array(module, { maxLength: 4 }),
        ),
        remove_keys: fc.option(fc.array(fc.constantFrom('a.pub', 'k.pub', '../x.pub'), { maxLength: 2 }), {
          nil: undefined,
        }),
      }),
      weight: 9,
    },
    { arbitrary: fc.anything(), weight: 1 },
  );
  const snapshotRoot = path.posix.dirname(layout.versionsDir);
  let snapshotPlacements = 0;
  fc.assert(
    fc.property(manifest, (raw) => {
      let plan: ReturnType<typeof planInstall>;
      try {
        // as the installer gets it: parsed and validated by the trust check (checkPackageTrust) first
        const parsed = manifestSchema.safeParse(raw);
        if (!parsed.success) throw new UpdaterError('INVALID_MANIFEST', 'not a manifest');
        plan = planInstall(parsed.data, '2.0.0', files, layout);
      } catch (e) {
        assert.ok(e instanceof UpdaterError && e.code === 'INVALID_MANIFEST', String(e));
        return;
      }
      for (const p of plan.placements) {
        const dst = p.kind === 'snapshot' ? path.posix.join(snapshotRoot, p.rel) : p.dst;
        assert.equal(path.posix.normalize(dst), dst);
        const keyFile =
          p.kind === 'in-place' && p.trustedKey && path.posix.dirname(dst) === layout.keysDir && dst.endsWith('.pub');
        assert.ok(keyFile || layout.allowedRoots.some((r) => dst.startsWith(`${r}/`)), dst);
        assert.ok(!dst.startsWith('/opt/tope/versions/') && dst !== '/opt/tope/versions', dst);
        if (p.kind === 'snapshot') assert.ok(!p.rel.split('/').includes('..') && !path.posix.isAbsolute(p.rel), p.rel);
        // the staging tree's path is the snapshot's joined with rel as it stands (transaction.ts)
        if (p.kind === 'snapshot') {
          assert.equal(p.rel, path.posix.relative(snapshotRoot, p.module.dst));
          snapshotPlacements++;
        }
      }
    }),
    runs(3000),
  );
  assert.ok(snapshotPlacements > 0, 'some manifests were placed in the snapshot, not all refused');
});

test('the zip reader: mutated packages are refused with a package error or unpack only inside the sysroot', async () => {
  const zip = await buildPackage('2.0.0', [
    { name: 'a', dst: '/opt/tope/bin/a', data: 'a'.repeat(300) },
    { name: 'c', dst: '/etc/tope/c.conf', data: 'c 2.0.0\n' },
  ]);
  const work = tempDir('tope-fuzz-');
  const sysroot = path.join(work, 'sysroot');
  const mutation = fc.oneof(
    fc
      .array(fc.tuple(fc.nat(zip.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 })
      .map((flips) => (b: Buffer) => {
        for (const [i, v] of flips) b[i] = v;
        return b;
      }),
    fc.nat(zip.length - 1).map((n) => (b: Buffer) => b.subarray(0, n)),
    fc.tuple(fc.nat(zip.length - 1), fc.uint8Array({ minLength: 1, maxLength: 64 })).map(
      ([at, bytes]) =>
        (b: Buffer) =>
          Buffer.concat([b.subarray(0, at), Buffer.from(bytes), b.subarray(at)]),
    ),
  );
  const allowedCodes = new Set([
    'INVALID_PACKAGE',
    'INVALID_MANIFEST',
    'SIGNATURE_MISSING',
    'SIGNATURE_MALFORMED',
    'SIGNATURE_INVALID',
    'PAYLOAD_MISMATCH',
  ]);
  const keysDir = path.join(work, 'keys.d');
  await fsp.mkdir(keysDir);
  await fsp.writeFile(path.join(keysDir, TEST_KEY_FILE), testKey.publicKeyPem);
  const trust = { keysDir, productId: async () => TEST_PRODUCT_ID, allowUnsigned: false, floor: async () => 0 };
  let unpacked = 0;
  await fc.assert(
    fc.asyncProperty(mutation, async (mutate) => {
      await fsp.rm(sysroot, { recursive: true, force: true });
      const file = path.join(work, 'package.zip');
      await fsp.writeFile(file, mutate(Buffer.from(zip)));
      let archive: PackageArchive | null = null;
      try {
        archive = await PackageArchive.open(file, { maxBytes: 1024 * 1024, maxEntries: 50 });
        const { manifest } = await checkPackageTrust(archive, trust);
        const { placements } = planInstall(manifest, '2.0.0', archive.files, layout);
        for (const p of placements) {
          const dst =
            p.kind === 'snapshot' ? path.join(sysroot, 'opt/tope/versions/.staging', p.rel) : path.join(sysroot, p.dst);
          await archive.extractTo(p.module.src, dst, expectationOf(p.module));
        }
        unpacked++;
      } catch (e) {
        assert.ok(e instanceof UpdaterError && allowedCodes.has(e.code), `not a package error: ${(e as Error).stack}`);
      } finally {
        archive?.close();
      }
      const written = await fsp.readdir(work, { recursive: true });
      for (const w of written.map(String)) {
        assert.ok(
          w === 'package.zip' || w === 'sysroot' || w.startsWith(`sysroot${path.sep}`) || w.startsWith('keys.d'),
          `written outside: ${w}`,
        );
      }
      for (const w of (await fsp.readdir(sysroot, { recursive: true }).catch(() => [])).map(String)) {
        assert.ok(['opt', 'etc'].includes(w.split(path.sep)[0]), `outside the allowed roots: ${w}`);
        assert.ok(!w.endsWith('.tope-partial'), `a partial file left behind: ${w}`);
      }
    }),
    runs(400),
  );
  assert.ok(unpacked > 0, 'some mutations (in unused bytes) still unpack: the property saw both sides');
});

// The gateway against random command sequences, over real processes (installs go through the
// recording systemctl stand-in).
const d = new InstallDevice();
const origin = new Origin(1);
let goodJob: Record<string, unknown>;

before(async () => {
  await d.seedVersion('v1.0.0', { 'bin/a': 'a 1.0.0\n' }, ['current']);
  await d.setUnits({ 'a.service': { active: true } });
  origin.body = await buildPackage('2.0.0', [{ name: 'a', dst: '/opt/tope/bin/a', process_name: 'a.service' }]);
  await origin.start();
  goodJob = {
    version: '2.0.0',
    package_url: origin.url(),
    package_name: 'tope-2.0.0.zip',
    package_size: origin.body.length,
    package_md5: md5(origin.body),
  };
  await d.start('fetcher', 'installer', 'api-gateway');
});
after(async () => {
  await d.stop();
  await origin.stop();
});

const knownCodes = new Set<string>(errorCodes);
// a stage that only a command can leave
const stable: ReadonlySet<string> = new Set(stages.filter((stage) => !busyStages.has(stage)));

test('[systemctl stand-in] the gateway under random bodies and command sequences: envelopes, the stage machine, and it never dies', async () => {
  const field = fc.oneof(fc.anything(), fc.string(), fc.integer(), fc.constant(null));
  const body = fc.oneof(
    fc.constant(() => goodJob),
    fc
      .record({
        key: fc.constantFrom('version', 'package_url', 'package_name', 'package_size', 'package_md5', 'extra'),
        value: field,
      })
      .map(({ key, value }) => () => ({ ...goodJob, [key]: value })),
    fc.record({ version: fc.oneof(fc.constant('2.0.0'), fc.constant('1.0.0'), fc.string()) }).map((b) => () => b),
    fc.anything().map((b) => () => b),
  );
  const command = fc.oneof(
    fc.record({ route: fc.constantFrom('/api/v1.0/download', '/api/v1.0/update'), body }),
    fc.record({
      route: fc.constantFrom('/api/v1.0/download', '/api/v1.0/update', '/api/v1.0/nope'),
      raw: fc.oneof(fc.string(), fc.constant('{"version":'), fc.constant('[]')),
    }),
    fc.record({ route: fc.constant('/api/v1.0/progress') }),
  );
  await fc.assert(
    fc.asyncProperty(fc.array(command, { minLength: 1, maxLength: 8 }), async (cmds) => {
      for (const c of cmds) {
        const beforeStage = (await d.progress()).body.data.stage as string;
        const r =
          'raw' in c
            ? await call(d.base, 'POST', c.route, undefined, c.raw)
            : 'body' in c
              ? await call(d.base, 'POST', c.route, c.body())
              : await call(d.base, 'GET', c.route);
        assert.equal(r.http === 200 || r.http === 404 || r.http === 400 || r.http === 413, true, `HTTP ${r.http}`);
        assert.equal(typeof r.body.code, 'number');
        assert.equal(typeof r.body.msg, 'string');
        if (r.body.code !== 200 && c.route !== '/api/v1.0/progress') {
          const code = /^([A-Z_]+):/.exec(r.body.msg)?.[1];
          assert.ok(code && knownCodes.has(code), `an error from the one list: ${r.body.msg}`);
          // a refused command changes nothing: a stage that only a command can leave stays
          if (stable.has(beforeStage))
            assert.equal((await d.progress()).body.data.stage, beforeStage, `after refused ${r.body.msg}`);
        }
        const now = (await d.progress()).body.data;
        assert.ok((stages as readonly string[]).includes(now.stage), now.stage);
        assert.ok(now.progress >= 0 && now.progress <= 100);
      }
    }),
    runs(40),
  );
  for (const s of d.running) assert.equal(s.child.exitCode, null, `${s.child.spawnargs.at(-1)} is still running`);
  const end = await d.progress();
  assert.ok(
    ['idle', 'downloading', 'verifying', 'toInstall', 'installing', 'success', 'failed'].includes(end.body.data.stage),
  );
});
