#!/usr/bin/env node
// tope-pack: builds, signs and checks tope-updater packages (installed as `tope-pack`, see README).
import { createHash } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import { parseArgs } from 'node:util';
import * as z from '../../shared/schema.js';
import { UpdaterError } from '../../shared/errors.js';
import { PackageArchive } from '../../shared/package-archive.js';
import { describeIssues, versionSchema } from '../../shared/package-job.js';
import { manifestSchema, moduleSchema } from '../../shared/package-manifest.js';
import { checkPackageTrust, expectationOf } from '../../shared/trust/package-trust.js';
import { keygen, packPackage, payloadDigest, payloadFromDirectory, type PackageDescription } from './pack.js';

const usage = `usage:
  tope-pack keygen <private.pem> <public.pub>
      a new Ed25519 key pair: the private key (PKCS#8 PEM, mode 0600) stays with the vendor,
      the public one goes into each device's trusted keys directory
  tope-pack build <description.json> <payload-dir> --key <private.pem> --out <package.zip> [--version <x.y.z>]
      description.json is manifest.json without the modules' size and sha256; each module's src
      is a file under payload-dir. Writes the package and prints its size, md5 and sha256
  tope-pack verify <package.zip> --keys <dir> [--product <id>] [--floor <n>]
      the device's checks: signature by a key of <dir>, manifest, entries, every payload hash;
      with --product and --floor also compatibility and the security floor
`;

// the description a vendor writes: the manifest, less what the tool computes
const descriptionSchema = z.extend(manifestSchema, {
  modules: z.array(z.partial(moduleSchema, { size: true, sha256: true })).check(z.minLength(1), z.maxLength(1000)),
});

async function fileDigests(file: string): Promise<{ md5: string; sha256: string }> {
  const md5 = createHash('md5');
  const sha = createHash('sha256');
  for await (const c of createReadStream(file) as AsyncIterable<Buffer>) {
    md5.update(c);
    sha.update(c);
  }
  return { md5: md5.digest('hex'), sha256: sha.digest('hex') };
}

async function build(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      key: { type: 'string' },
      out: { type: 'string' },
      version: { type: 'string' },
    },
  });
  const [descriptionFile, dir] = positionals;
  if (!descriptionFile || !dir || !values.key || !values.out) throw new Error(usage);
  const raw = JSON.parse(await fsp.readFile(descriptionFile, 'utf8')) as Record<string, unknown>;
  if (values.version) raw.version = versionSchema.parse(values.version);
  const parsed = descriptionSchema.safeParse(raw);
  if (!parsed.success) throw new Error(`${descriptionFile}: ${describeIssues(parsed.error)}`);
  const description = parsed.data as PackageDescription;
  const key = await fsp.readFile(values.key);
  const payload = await payloadFromDirectory(description, dir);
  // a size or sha256 the description gives (a manifest.json of an earlier release reused) must be
  // the file's: signed as it is, every device would refuse the package at install (PAYLOAD_MISMATCH)
  for (const m of description.modules) {
    if (m.size === undefined && m.sha256 === undefined) continue;
    const file = await payloadDigest(payload.get(m.src)!);
    if ((m.size ?? file.size) !== file.size || (m.sha256 ?? file.sha256) !== file.sha256) {
      throw new Error(
        `module ${m.name}: ${descriptionFile} gives ${m.size !== undefined ? `size ${m.size} ` : ''}${m.sha256 ? `sha256 ${m.sha256} ` : ''}` +
          `but ${m.src} is ${file.size} bytes with sha256 ${file.sha256}; leave size and sha256 out (build computes them)`,
      );
    }
  }
  await packPackage(description, payload, key, values.out);
  const { size } = await fsp.stat(values.out);
  const { md5, sha256 } = await fileDigests(values.out);
  process.stdout.write(
    `${JSON.stringify({ package: values.out, version: description.version, package_size: size, package_md5: md5, package_sha256: sha256 })}\n`,
  );
}

async function verifyCommand(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      keys: { type: 'string' },
      product: { type: 'string' },
      floor: { type: 'string' },
    },
  });
  const [file] = positionals;
  if (!file || !values.keys) throw new Error(usage);
  const floor = z.coerce
    .number()
    .check(z.int(), z.minimum(0))
    .parse(values.floor ?? '0');
  const archive = await PackageArchive.open(file, { maxBytes: Number.MAX_SAFE_INTEGER, maxEntries: 100_000 });
  try {
    const trusted = await checkPackageTrust(archive, {
      keysDir: values.keys,
      productId: async () => values.product ?? null,
      allowUnsigned: false,
      floor: async () => floor,
    });
    for (const m of trusted.manifest.modules) await archive.checkEntry(m.src, expectationOf(m));
    const { version, security_version, compatible } = trusted.manifest;
    process.stdout.write(
      `${JSON.stringify({ ok: true, version, security_version, compatible, signed_by: trusted.signedBy })}\n`,
    );
  } finally {
    archive.close();
  }
}

const [command, ...rest] = process.argv.slice(2);
try {
  if (command === 'keygen') {
    if (rest.length !== 2) throw new Error(usage);
    await keygen(rest[0], rest[1]);
    process.stdout.write(`wrote ${rest[0]} (private, keep it secret) and ${rest[1]} (public)\n`);
  } else if (command === 'build') await build(rest);
  else if (command === 'verify') await verifyCommand(rest);
  else throw new Error(usage);
} catch (e) {
  // a refusal prints the device's own wire text ("SIGNATURE_INVALID: ..."), exit 1; a usage error exit 2
  process.stderr.write(`${e instanceof UpdaterError ? e.wire : (e as Error).message}\n`);
  process.exitCode = e instanceof UpdaterError ? 1 : 2;
}
