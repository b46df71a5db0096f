import { createWriteStream, mkdirSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { packPackage } from '../../scripts/tope-pack/pack.js';
import { TEST_PRODUCT_ID, testKey } from '../../test/helpers/packages.js';
import { output } from '../lib/commands.js';
import { digestFile, randomStream, UNIT_PREFIX, type PackageFile } from '../lib/packages.js';

// One payload, three signed update files that each install it as one file: ours (a zip signed by
// tope-pack's code), SWUpdate's .swu (sw-description signed with CMS, then a newc cpio archive
// with CRCs, sw-description first, as SWUpdate documents) and Mender's artifact (mender-artifact's
// single-file update module, signed with RSA). All stored, none compressed: the payload is random,
// as a firmware image would compress.

/** SWUpdate matches `-H board:revision` against the revisions sw-description accepts. */
export const SWUPDATE_HARDWARE = { board: 'tope-bench', revision: '1.0' };
export const MENDER_DEVICE_TYPE = 'tope-bench';
export const PAYLOAD_NAME = 'payload';

export interface PeerArtifacts {
  payload: { file: string; bytes: number; sha256: string };
  ours: PackageFile;
  swu: string;
  mender: string;
  /** SWUpdate's CMS signer certificate (`swupdate -k`). */
  swuCert: string;
  /** The public key Mender verifies artifacts with (ArtifactVerifyKey). */
  menderPublicKey: string;
}

const openssl = (...args: string[]) => output('openssl', args);

/**
 * Writes the payload and the three update files into `dir` (served by the origin). The peers
 * install the payload at `swuDest` (a file) and into `menderDestDir`; ours where its manifest says.
 */
export async function buildPeerArtifacts(
  dir: string,
  keysDir: string,
  bytes: number,
  swuDest: string,
  menderDestDir: string,
): Promise<PeerArtifacts> {
  mkdirSync(keysDir, { recursive: true });
  const payloadFile = path.join(keysDir, PAYLOAD_NAME);
  await pipeline(randomStream(bytes), createWriteStream(payloadFile));
  const { sha256 } = await digestFile(payloadFile);
  const payload = { file: payloadFile, bytes, sha256 };

  const oursFile = path.join(dir, 'ours.zip');
  await packPackage(
    {
      version: '2.0.0',
      compatible: [TEST_PRODUCT_ID],
      security_version: 0,
      modules: [
        {
          name: PAYLOAD_NAME,
          src: `modules/${PAYLOAD_NAME}`,
          dst: `/opt/tope/bin/${PAYLOAD_NAME}`,
          process_name: `${UNIT_PREFIX}0.service`,
          restart_order: 1,
        },
      ],
    },
    new Map([[`modules/${PAYLOAD_NAME}`, { file: payloadFile, compress: false, mode: 0o100644 }]]),
    testKey.privateKeyPem,
    oursFile,
  );
  const ours = {
    file: oursFile,
    size: (await fsp.stat(oursFile)).size,
    payloadBytes: bytes,
    ...(await digestFile(oursFile)),
  };

  // SWUpdate: Debian's build wants signed images (CMS, a signer certificate for emailProtection)
  const swuKey = path.join(keysDir, 'swu-key.pem');
  const swuCert = path.join(keysDir, 'swu-cert.pem');
  await openssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    swuKey,
    '-out',
    swuCert,
    '-days',
    '30',
    '-subj',
    '/CN=tope-bench',
    '-addext',
    'extendedKeyUsage=emailProtection',
  );
  const swuDir = path.join(keysDir, 'swu');
  mkdirSync(swuDir);
  await fsp.writeFile(
    path.join(swuDir, 'sw-description'),
    [
      'software = {',
      '  version = "2.0.0";',
      '  description = "tope-updater bench: one file";',
      `  hardware-compatibility = [ "${SWUPDATE_HARDWARE.revision}" ];`,
      '  files: (',
      '    {',
      `      filename = "${PAYLOAD_NAME}";`,
      `      path = "${swuDest}";`,
      '      type = "rawfile";',
      `      sha256 = "${sha256}";`,
      '    }',
      '  );',
      '};',
      '',
    ].join('\n'),
  );
  await openssl(
    'cms',
    '-sign',
    '-in',
    path.join(swuDir, 'sw-description'),
    '-out',
    path.join(swuDir, 'sw-description.sig'),
    '-signer',
    swuCert,
    '-inkey',
    swuKey,
    '-outform',
    'DER',
    '-nosmimecap',
    '-binary',
  );
  await fsp.link(payloadFile, path.join(swuDir, PAYLOAD_NAME));
  const swu = path.join(dir, 'update.swu');
  await output('sh', [
    '-c',
    'cd "$1" && printf "%s\\n" sw-description sw-description.sig "$3" | cpio --quiet -o -H crc > "$2"',
    'sh',
    swuDir,
    swu,
    PAYLOAD_NAME,
  ]);

  // Mender: the single-file module's metadata files beside the payload; mender-artifact wants
  // the key in PKCS#1 ("traditional") form
  const menderKey = path.join(keysDir, 'mender-key.pem');
  const menderPublicKey = path.join(keysDir, 'mender-public.pem');
  await openssl('genrsa', '-traditional', '-out', menderKey, '3072');
  await openssl('rsa', '-in', menderKey, '-pubout', '-out', menderPublicKey);
  const moduleDir = path.join(keysDir, 'mender');
  mkdirSync(moduleDir);
  await fsp.writeFile(path.join(moduleDir, 'dest_dir'), `${menderDestDir}\n`);
  await fsp.writeFile(path.join(moduleDir, 'filename'), `${PAYLOAD_NAME}\n`);
  await fsp.writeFile(path.join(moduleDir, 'permissions'), '644\n');
  await fsp.link(payloadFile, path.join(moduleDir, PAYLOAD_NAME));
  const mender = path.join(dir, 'update.mender');
  await output('sh', [
    '-c',
    'cd "$1" && mender-artifact write module-image -T single-file -t "$3" -n tope-bench-2.0.0 -k "$4" ' +
      '--compression none -o "$2" -f dest_dir -f filename -f permissions -f "$5"',
    'sh',
    moduleDir,
    mender,
    MENDER_DEVICE_TYPE,
    menderKey,
    PAYLOAD_NAME,
  ]);
  return { payload, ours, swu, mender, swuCert, menderPublicKey };
}
