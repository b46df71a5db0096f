import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import { UpdaterError } from '../shared/errors.js';
import {
  checkPackage,
  hashFilePrefix,
  hashingStream,
  PackageHasher,
  packageProblem,
  type Digests,
} from '../shared/package-check.js';
import { tempDir } from './helpers/temp-dir.js';

const body = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) % 251));
const expected: Digests = {
  md5: createHash('md5').update(body).digest('hex'),
  sha256: createHash('sha256').update(body).digest('hex'),
};

test('the hasher gives both digests of the bytes, however they are cut into chunks', () => {
  for (const chunkSize of [1, 1000, 65_536, body.length]) {
    const hasher = new PackageHasher();
    for (let at = 0; at < body.length; at += chunkSize) hasher.update(body.subarray(at, at + chunkSize));
    assert.deepEqual(hasher.digests(), expected, `chunks of ${chunkSize}`);
  }
});

test('the hashing stream passes every byte through unchanged and hashes them on the way', async () => {
  const hasher = new PackageHasher();
  const out: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      out.push(chunk);
      callback();
    },
  });
  await pipeline(Readable.from([body.subarray(0, 12_345), body.subarray(12_345)]), hashingStream(hasher), sink);
  assert.ok(Buffer.concat(out).equals(body));
  assert.deepEqual(hasher.digests(), expected);
});

test('a file prefix hashed from disk and the rest fed in continue one digest (a resumed download)', async () => {
  const file = path.join(tempDir('check-'), 'pkg.part');
  const onDisk = 1024 * 1024 + 17; // more than one read buffer
  const big = Buffer.concat([body, body, body, body]);
  await fsp.writeFile(file, big.subarray(0, onDisk));
  const handle = await fsp.open(file, 'r');
  try {
    const hasher = new PackageHasher();
    await hashFilePrefix(handle, onDisk, hasher);
    hasher.update(big.subarray(onDisk));
    assert.equal(hasher.digests().sha256, createHash('sha256').update(big).digest('hex'));
    await assert.rejects(hashFilePrefix(handle, onDisk + 1, new PackageHasher()), /part file shorter than/);
  } finally {
    await handle.close();
  }
});

const refusal = (f: () => void): UpdaterError => {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof UpdaterError);
    return e;
  }
  assert.fail('the package was accepted');
};

test('the digest comparison says which digest failed and what was expected, never what the bytes have', () => {
  const claims = { package_md5: expected.md5, package_sha256: expected.sha256 };
  assert.equal(packageProblem(claims, { digests: expected }), null);
  checkPackage(claims, { digests: expected });
  checkPackage({ package_md5: expected.md5 }, { digests: { ...expected, sha256: '0'.repeat(64) } }); // SHA-256 optional

  const badMd5 = refusal(() => checkPackage({ ...claims, package_md5: 'f'.repeat(32) }, { digests: expected }));
  assert.equal(badMd5.wire, `MD5_MISMATCH: expected ${'f'.repeat(32)}; the package's MD5 differs`);
  assert.ok(
    !badMd5.wire.includes(expected.md5) && !badMd5.wire.includes(expected.sha256),
    'no digest of what a URL returned',
  );

  const badSha = refusal(() => checkPackage({ ...claims, package_sha256: '0'.repeat(64) }, { digests: expected }));
  assert.equal(badSha.wire, `SHA256_MISMATCH: expected ${'0'.repeat(64)}; the package's SHA-256 differs`);
  assert.ok(
    !badSha.wire.includes(expected.sha256) && !badSha.wire.includes(expected.md5),
    'no digest of what a URL returned',
  );

  // both wrong: the checks run in order and the first one is reported
  const both = packageProblem({ package_md5: 'f'.repeat(32), package_sha256: '0'.repeat(64) }, { digests: expected });
  assert.equal(both?.code, 'MD5_MISMATCH');
});
