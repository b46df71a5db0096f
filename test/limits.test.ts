import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { distDir } from './helpers/services.js';
import { runVm, vmAvailable, type VmResult } from './helpers/vm.js';
import { tempDir } from './helpers/temp-dir.js';

// Each unit's MemoryMax= and TasksMax= enforced, not just set. systemd-nspawn cannot show it on
// a host whose memory and pids controllers are cgroup v1 (the limits are accepted, never
// applied: see test/system/README.md), so this boots a QEMU VM with its own kernel and systemd
// (test/system/vm.sh), once for every check. Inside (test/system/limits-vm.ts), a drop-in
// replaces only each unit's ExecStart with a probe (test/system/limits-probe.ts) that allocates
// twice the unit's MemoryMax, then one that spawns TasksMax + 16 processes. The same probes as
// a transient service of the same user with the limits lifted are the baseline: they allocate
// and spawn it all, so each OOM kill and each refused fork is the unit's doing.

const available = vmAvailable();
const skip = available === true ? false : available;

const MiB = 1 << 20;
const units = [
  { unit: 'tope-api-gateway.service', user: 'tope-gateway', memoryMax: 128 * MiB, tasksMax: 32 },
  { unit: 'tope-fetcher.service', user: 'tope-fetcher', memoryMax: 192 * MiB, tasksMax: 32 },
  { unit: 'tope-installer.service', user: 'root', memoryMax: 256 * MiB, tasksMax: 64 },
];

let results: VmResult[] = [];
let scratch = '';

function result(where: 'unit' | 'baseline', probe: 'memory' | 'tasks', unit: string): Record<string, any> {
  const r = results.find((x) => x.where === where && x.probe === probe && x.unit === unit);
  assert.ok(r, `no ${where} ${probe} result for ${unit} from the VM: ${JSON.stringify(results)}`);
  return r;
}

describe('MemoryMax= and TasksMax= enforced, in a QEMU VM (systemd-nspawn cannot enforce cgroup limits on this host)', () => {
  before(
    async () => {
      if (skip) return;
      scratch = tempDir('tope-limits-');
      const checks = units.map((u) => ({
        unit: u.unit,
        user: u.user,
        memoryBytes: 2 * u.memoryMax,
        tasks: u.tasksMax + 16,
      }));
      writeFileSync(path.join(scratch, 'checks.json'), JSON.stringify(checks));
      writeFileSync(
        path.join(scratch, 'entry'),
        'exec /usr/bin/node /mnt/payload/test/limits-vm.js /mnt/payload/test/checks.json\n',
      );
      results = await runVm(
        path.join(scratch, 'entry'),
        [
          [path.join(distDir, 'test/system/limits-vm.js'), 'test/limits-vm.js'],
          [path.join(distDir, 'test/system/limits-probe.js'), 'test/limits-probe.js'],
          [path.join(scratch, 'checks.json'), 'test/checks.json'],
        ],
        420,
      );
      const failed = results.find((r) => 'failed' in r);
      if (failed) throw new Error(`inside the VM: ${String(failed.failed)}`);
    },
    { timeout: 600_000 },
  );

  test(
    'the baseline: outside the units, as the same users, the probes allocate and spawn beyond every limit',
    { skip },
    () => {
      for (const u of units) {
        const mem = result('baseline', 'memory', u.unit);
        assert.equal(mem.status, 0, `${u.unit}: ${JSON.stringify(mem)}`);
        assert.equal(mem.allocated, 2 * u.memoryMax, `${u.unit}: ${JSON.stringify(mem)}`);
        const tasks = result('baseline', 'tasks', u.unit);
        assert.equal(tasks.status, 0, `${u.unit}: ${JSON.stringify(tasks)}`);
        assert.equal(tasks.error, null, `${u.unit}: ${JSON.stringify(tasks)}`);
        assert.equal(tasks.spawned, u.tasksMax + 16, `${u.unit}: ${JSON.stringify(tasks)}`);
        assert.ok(tasks.peak > u.tasksMax, `${u.unit}: ${JSON.stringify(tasks)}`);
      }
    },
  );

  for (const u of units) {
    test(
      `${u.unit}: MemoryMax=${u.memoryMax / MiB}M, beyond it the kernel kills the unit (Result=oom-kill)`,
      { skip },
      () => {
        const r = result('unit', 'memory', u.unit);
        assert.equal(r.Result, 'oom-kill', JSON.stringify(r));
        assert.equal(r.ExecMainStatus, '9', 'SIGKILL');
        assert.ok(r.allocated < u.memoryMax, `killed before it had allocated its limit: ${JSON.stringify(r)}`);
        assert.equal(r.shipped.MemoryMax, String(u.memoryMax), 'the unit as shipped');
      },
    );

    test(
      `${u.unit}: TasksMax=${u.tasksMax}, beyond it a fork fails with EAGAIN and the unit never holds more`,
      { skip },
      () => {
        const r = result('unit', 'tasks', u.unit);
        assert.equal(r.error, 'EAGAIN', JSON.stringify(r));
        assert.equal(r.pidsMax, String(u.tasksMax), JSON.stringify(r));
        // the fork failed with the cgroup full: exactly TasksMax tasks, never more
        assert.equal(r.peak, u.tasksMax, JSON.stringify(r));
        assert.ok(r.spawned < u.tasksMax, JSON.stringify(r));
        assert.equal(r.Result, 'success', `the probe survived the refusal: ${JSON.stringify(r)}`);
        assert.equal(r.shipped.TasksMax, String(u.tasksMax), 'the unit as shipped');
      },
    );
  }
});
