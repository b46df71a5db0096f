import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import pino from 'pino';
import { Backups } from '../services/installer/backups.js';
import { planInstall } from '../services/installer/manifest.js';
import type { PostCmdRunner } from '../services/installer/post-cmds.js';
import { installSteps, stagingPercent, type StepProgress } from '../services/installer/steps.js';
import { Transaction, type TransactionContext } from '../services/installer/transaction.js';
import type { Units } from '../services/installer/units.js';
import { VersionStore } from '../services/installer/versions.js';
import { PackageArchive } from '../shared/package-archive.js';
import { checkPackageTrust } from '../shared/trust/package-trust.js';
import { buildPackage, TEST_KEY_FILE, TEST_PRODUCT_ID, testKey } from './helpers/packages.js';
import { testJournal } from './helpers/journal.js';
import { tempDir } from './helpers/temp-dir.js';

// The staging's progress record (transaction.ts): while files are staged it is written newest
// figure only, the staging never waiting for a write; a failed write stops the staging; and no
// write is under way when the staging returns or throws (an undo writes the record too). The
// whole installs around it are installer.test.ts's; here the record is a stand-in that can be
// held or made to fail, which the real one cannot on demand.

const FILES = 300;
const isStagingFigure = (at: StepProgress) => at.message.startsWith('Installing module');

/** A first install of FILES files, planned as the installer plans it, and a Transaction whose record is `progress`. */
async function firstInstall(progress: (at: StepProgress) => Promise<void>) {
  const root = tempDir('tope-staging-progress-');
  const versionsDir = path.join(root, 'opt/tope/versions');
  const keysDir = path.join(root, 'keys.d');
  await fsp.mkdir(versionsDir, { recursive: true });
  await fsp.mkdir(keysDir);
  await fsp.writeFile(path.join(keysDir, TEST_KEY_FILE), testKey.publicKeyPem);
  const modules = Array.from({ length: FILES }, (_, i) => ({ name: `m${i}`, dst: `/opt/tope/bin/m${i}` }));
  const file = path.join(root, 'package.zip');
  await fsp.writeFile(file, await buildPackage('2.0.0', modules));
  const archive = await PackageArchive.open(file, { maxBytes: 1 << 30, maxEntries: 1000 });
  const trust = { keysDir, productId: async () => TEST_PRODUCT_ID, allowUnsigned: false, floor: async () => 0 };
  const { manifest } = await checkPackageTrust(archive, trust);
  const plan = planInstall(manifest, '2.0.0', archive.files, {
    allowedRoots: ['/opt/tope'],
    versionsDir: '/opt/tope/versions',
    keysDir: '/etc/tope-updater/keys.d',
    trustedKeys: [TEST_KEY_FILE],
  });
  const versions = new VersionStore(versionsDir);
  const journal = testJournal({ stagingDir: versions.stagingName(1) }); // a first install: no fromDir
  const notUsed = (what: string) => () => {
    throw new Error(`${what} is not part of an install without units or post_cmds`);
  };
  const context: TransactionContext = {
    log: pino({ level: 'silent' }),
    versions,
    units: { stop: notUsed('units.stop'), start: notUsed('units.start') } as unknown as Units,
    backups: new Backups(path.join(root, 'backups')),
    heldDir: path.join(root, 'held'),
    limits: { TOPE_POST_CMD_TIMEOUT_MS: 1000, TOPE_UNITS_STOPPED_MAX_MS: 60_000 },
    postCmds: { run: notUsed('postCmds.run') } as unknown as PostCmdRunner,
    hostPath: (devicePath) => path.join(root, devicePath),
    journal: async () => undefined,
    progress,
  };
  // every file the staging extracts, counted as it starts
  let extracted = 0;
  const extractTo = archive.extractTo.bind(archive);
  archive.extractTo = (...args) => {
    extracted++;
    return extractTo(...args);
  };
  return {
    versionsDir,
    extracted: () => extracted,
    forward: () => new Transaction(context, journal).forward(archive, plan.manifest, plan.placements, plan.removals),
    close: () => archive.close(),
  };
}

/** Resolves once `ready()` holds, checked at each turn of the event loop; rejects after `ms`. */
async function until(ready: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ready()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

test('the staging goes on while its first record write is held; then only the newest figure is written', async () => {
  const written: StepProgress[] = [];
  let underWay = 0;
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const install = await firstInstall(async (at) => {
    if (!isStagingFigure(at)) return;
    underWay++;
    if (written.length === 0) await held;
    written.push(at);
    underWay--;
  });
  try {
    const forward = install.forward();
    // every file extracted while the first figure's write still waits: the staging did not wait for it
    await until(() => install.extracted() === FILES, 20_000, `all ${FILES} files extracted while the record is held`);
    assert.equal(written.length, 0);
    release();
    await forward;
    assert.equal(underWay, 0, 'no record write under way once the staging returned');
    // the first figure, then the newest one in place of the 48 offered meanwhile
    assert.deepEqual(
      written.map((at) => at.percent),
      [installSteps.staging.percent, stagingPercent(FILES - 1, FILES)],
    );
    assert.match(written[1].message, new RegExp(`\\(\\d+/${FILES}\\)$`));
    await fsp.access(path.join(install.versionsDir, 'v2.0.0/bin/m299'));
  } finally {
    install.close();
  }
});

test('a failed record write stops the staging: the install throws it, with no write under way and no snapshot made', async () => {
  let underWay = 0;
  const install = await firstInstall(async (at) => {
    if (!isStagingFigure(at)) return;
    underWay++;
    await new Promise<void>((resolve) => setImmediate(resolve));
    underWay--;
    throw new Error('EIO: i/o error, write of the installer record');
  });
  try {
    await assert.rejects(install.forward(), /EIO: i\/o error, write of the installer record/);
    assert.equal(underWay, 0, 'no record write under way once the staging threw');
    assert.ok(install.extracted() < FILES, `stopped after ${install.extracted()} of ${FILES} files`);
    await assert.rejects(fsp.access(path.join(install.versionsDir, 'v2.0.0')), { code: 'ENOENT' });
  } finally {
    install.close();
  }
});
