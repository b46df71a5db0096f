import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { buildPackage, md5, TEST_KEY_FILE, TEST_PRODUCT_ID, testKey } from './packages.js';
import { distDir } from './services.js';
import { updateModules, VM_BLOB_REL, VM_IN_PLACE, vmBlob, type CatalogEntry } from './update-invariants.js';

// The host's side of the power-cut campaign: boots the VM (test/system/vm.sh boot) on a disk of
// its own that persists from boot to boot, and cuts the power, a SIGKILL of qemu, at an instant
// it picks from the stage marks the guest (test/system/powercut-vm.ts) prints on its results
// port. The guest, at the next boot, checks the invariants and prints what it found.

const repo = path.resolve(distDir, '..');
const vmScript = path.join(repo, 'test/system/vm.sh');

export interface Mark {
  kind: string;
  stage?: string;
  message?: string;
  label?: string;
  uptime: number;
  hostMs: number;
  [k: string]: unknown;
}
export interface VmFinding {
  kind: string;
  violations: string[];
  journal?: string;
  previousBoot?: string;
  [k: string]: unknown;
}

/** When to cut: `delayMs` after the first mark `from` matches (or after qemu started: 'spawn'). */
export interface CutPlan {
  from: 'spawn' | ((m: Mark) => boolean);
  delayMs: number;
  what: string;
  /**
   * A failpoint (shared/failpoint.ts, `name[#n]`) at which this boot's update stops the installer
   * (SIGSTOP): the guest marks `frozen` once it is stopped there, and a cut `from` that mark falls
   * at that very point of the install, with whatever it had not fsynced still unwritten.
   */
  freezeAt?: string;
}

export interface Boot {
  marks: Mark[];
  findings: VmFinding[];
  /** Where the power went: the last mark before it, as a stage name; null when it powered off. */
  cut: { stage: string; atMs: number; what: string; lastMark: Mark | null } | null;
  console: string;
  ms: number;
}

/** The stage a guest's mark says the update was in (the guest polls /progress every 100 ms). */
export function stageOf(mark: Mark | null | undefined): string {
  if (!mark) return 'boot (before the guest ran)';
  if (mark.kind === 'update-start') return 'command sent';
  if (mark.kind === 'update-end') return 'after the end';
  if (mark.kind === 'frozen') return `install: stopped at ${String(mark.failpoint)}`;
  if (mark.kind !== 'stage') return `boot: ${mark.kind}`;
  const prefix = mark.label === 'update' ? '' : `${mark.label}: `;
  const msg = mark.message ?? '';
  switch (mark.stage) {
    case 'downloading':
      return `${prefix}download`;
    case 'verifying':
      return `${prefix}verification`;
    case 'toInstall':
      return `${prefix}verified, install command`;
    case 'success':
      return `${prefix}success shown`;
    case 'failed':
      return `${prefix}failed shown`;
    case 'installing':
      if (/^Installing version|^Verifying package/.test(msg)) return `${prefix}install: package check`;
      if (/^Installing module/.test(msg)) return `${prefix}install: staging`;
      if (/^Stopping|^Running post/.test(msg)) return `${prefix}install: stop, in-place files, post_cmds`;
      if (/^Switching/.test(msg)) return `${prefix}install: switch`;
      if (/^Starting/.test(msg)) return `${prefix}install: start`;
      if (/^Checking services/.test(msg)) return `${prefix}install: probation`;
      return `${prefix}install: ${msg}`;
    default:
      return `${prefix}${mark.stage}`;
  }
}

export class PowercutVm {
  readonly disk: string;
  readonly payload: string;
  catalog: CatalogEntry[] = [];
  private boots = 0;

  constructor(readonly work: string) {
    mkdirSync(work, { recursive: true });
    this.disk = path.join(work, 'disk.img');
    this.payload = path.join(work, 'payload.img');
  }

  /** The packages 2.0.0 … (versions+1).0.0, each with a blob the throttled origin serves for seconds. */
  async preparePayload(versions: number): Promise<void> {
    const stage = path.join(this.work, 'payload');
    rmSync(stage, { recursive: true, force: true });
    mkdirSync(path.join(stage, 'packages'), { recursive: true });
    for (let i = 0; i < versions; i++) {
      const version = `${i + 2}.0.0`;
      // the blob makes the throttled download last; a module like the others, since every entry must be one
      const zip = await buildPackage(version, [
        ...updateModules(version, { inPlace: VM_IN_PLACE }),
        { name: 'blob', dst: `/opt/tope/${VM_BLOB_REL}`, data: vmBlob(version), compress: false },
      ]);
      const name = `tope-${version}.zip`;
      writeFileSync(path.join(stage, 'packages', name), zip);
      this.catalog.push({ version, package_name: name, package_size: zip.length, package_md5: md5(zip) });
    }
    writeFileSync(path.join(stage, 'packages/catalog.json'), JSON.stringify(this.catalog));
    // the device trusts the key this process signs with, and is the product the packages name
    mkdirSync(path.join(stage, 'trust'), { recursive: true });
    writeFileSync(path.join(stage, 'trust', TEST_KEY_FILE), testKey.publicKeyPem);
    writeFileSync(path.join(stage, 'trust', 'product-id'), `${TEST_PRODUCT_ID}\n`);
    // node goes onto the root disk at the first boot: the units that start at later boots need it
    writeFileSync(
      path.join(stage, 'entry'),
      '[ -s /usr/bin/node ] || { cp /mnt/payload/node /usr/bin/node.new && sync && mv /usr/bin/node.new /usr/bin/node; }\nexec /usr/bin/node /mnt/payload/test/system/powercut-vm.js\n',
    );
    writeFileSync(path.join(stage, 'package.json'), '{"type":"module"}\n');
    const files = [
      ...['powercut-vm.js', 'recorded-reports.js', 'origin-server.js', 'device-api-recorder.js', 'printerd.js'].map(
        (f) => `${path.join(distDir, 'test/system', f)}:test/system/${f}`,
      ),
      `${path.join(distDir, 'test/helpers/update-invariants.js')}:test/helpers/update-invariants.js`,
      // the dependency-free modules of shared/ the two above import
      ...['device-api.js', 'stages.js', 'state-names.js', 'version-dirs.js'].map(
        (f) => `${path.join(distDir, 'shared', f)}:shared/${f}`,
      ),
      `${path.join(stage, 'packages')}:packages`,
      `${path.join(stage, 'trust')}:trust`,
      `${path.join(stage, 'package.json')}:package.json`,
    ];
    const r = spawnSync('bash', [vmScript, 'payload', this.payload, path.join(stage, 'entry'), ...files], {
      encoding: 'utf8',
      env: { ...process.env, PERSISTENT: '1', MAKEFLAGS: '' },
    });
    if (r.status !== 0) throw new Error(`vm.sh payload failed: ${r.stderr}`);
    rmSync(stage, { recursive: true, force: true });
  }

  /** A fresh root disk: the next boot provisions it. */
  freshDisk(): void {
    rmSync(this.disk, { force: true });
    const r = spawnSync('bash', [vmScript, 'disk', this.disk], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`vm.sh disk failed: ${r.stderr}`);
  }

  /**
   * One boot. `cut`: SIGKILL qemu as planned. `endWhen`: stop it (also by SIGKILL, not counted as
   * a cut) once the guest printed what the caller waited for. Rejects after `timeoutMs`.
   */
  boot(cut: CutPlan | null, endWhen: (b: Boot) => boolean = () => false, timeoutMs = 1_800_000): Promise<Boot> {
    const n = ++this.boots;
    const consoleFile = path.join(this.work, `boot-${n}.console.log`);
    // the results port as it came, with the host's ms: to follow a campaign while it runs
    const resultsFile = path.join(this.work, `boot-${n}.results.log`);
    const t0 = Date.now();
    const b: Boot = { marks: [], findings: [], cut: null, console: consoleFile, ms: 0 };
    return new Promise((resolve, reject) => {
      // vm.sh boot execs qemu: this child's pid is the emulator's, so its SIGKILL is the power cut
      const qemu = spawn('bash', [vmScript, 'boot', this.disk, this.payload, consoleFile], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, BOOT_APPEND: cut?.freezeAt ? `tope.freeze=${cut.freezeAt}` : '' },
      });
      let stderr = '';
      let ended = false;
      let armed: NodeJS.Timeout | undefined;
      qemu.stderr.setEncoding('utf8').on('data', (d: string) => {
        stderr += d;
      });
      const powerOff = (what: 'cut' | 'end') => {
        if (ended) return;
        ended = true;
        if (what === 'cut' && cut)
          b.cut = {
            stage: stageOf(b.marks.at(-1)),
            atMs: Date.now() - t0,
            what: cut.what,
            lastMark: b.marks.at(-1) ?? null,
          };
        qemu.kill('SIGKILL');
      };
      const arm = () => {
        armed = setTimeout(() => powerOff('cut'), cut!.delayMs);
      };
      if (cut?.from === 'spawn') arm();
      // a guest that never gets to its checks is a finding of its own, not a boot without news
      const deadline = setTimeout(() => {
        b.findings.push({
          kind: 'timeout',
          violations: [
            `the VM ran past its ${timeoutMs} ms deadline; its last mark: ${JSON.stringify(b.marks.at(-1) ?? null)}`,
          ],
        });
        powerOff('end');
      }, timeoutMs);
      createInterface({ input: qemu.stdout }).on('line', (raw) => {
        const text = raw.replace(/\r$/, '');
        appendFileSync(resultsFile, `${Date.now() - t0} ${text}\n`);
        const m = /^TOPE-(MARK|RESULT) (\{.*\})$/.exec(text);
        if (!m || ended) return;
        let json: Record<string, unknown>;
        try {
          json = JSON.parse(m[2]);
        } catch {
          return;
        }
        if (m[1] === 'MARK') {
          const mark = { ...json, hostMs: Date.now() - t0 } as Mark;
          b.marks.push(mark);
          if (cut && cut.from !== 'spawn' && !armed && cut.from(mark)) arm();
        } else {
          b.findings.push(json as VmFinding);
        }
        if (endWhen(b)) powerOff('end');
      });
      qemu.on('close', (code, signal) => {
        clearTimeout(armed);
        clearTimeout(deadline);
        b.ms = Date.now() - t0;
        if (signal === 'SIGKILL' || code === 0) resolve(b);
        else reject(new Error(`qemu exited ${code} ${signal}: ${stderr}`));
      });
    });
  }

  consoleTail(b: Boot, lines = 60): string {
    try {
      return readFileSync(b.console, 'utf8').replace(/\r/g, '').split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }
}
