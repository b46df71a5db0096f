// Runs as root inside the QEMU VM (test/system/vm.sh), under its real systemd and kernel:
// installs the units as `make install` laid them out, then, for each unit, runs
// limits-probe.js in place of its ExecStart (a drop-in that changes nothing else) and the
// same probe outside the unit, with the limits lifted. Prints one `TOPE-RESULT {json}` line
// per probe on stdout; the test on the host asserts on them.
//
//   limits-vm.js CHECKS.json   [{ unit, user, memoryBytes, tasks }]: how much to allocate and
//                              how many processes to spawn (well beyond the expected limits)
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';

interface Check {
  unit: string;
  user: string;
  memoryBytes: number;
  tasks: number;
}

const checks: Check[] = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const probe = '/mnt/payload/test/limits-probe.js';
const dest = '/mnt/payload/dest';

// each result says when it was made (seconds since the VM's boot), to see where the time goes
const uptime = () => Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
const report = (r: Record<string, unknown>) =>
  process.stdout.write(`TOPE-RESULT ${JSON.stringify({ ...r, uptime: uptime() })}\n`);
const sh = (cmd: string, timeout = 60_000) => execFileSync('sh', ['-c', cmd], { encoding: 'utf8', timeout }).trim();
const show = (unit: string, props: string[]) =>
  Object.fromEntries(
    sh(`systemctl show ${props.map((p) => `-p ${p}`).join(' ')} ${unit}`)
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );

function provision(): void {
  sh(`cp ${dest}/usr/lib/systemd/system/* /etc/systemd/system/`);
  sh(`install -Dm644 ${dest}/usr/lib/sysusers.d/tope-updater.conf /etc/sysusers.d/tope-updater.conf`);
  sh(`install -Dm644 ${dest}/usr/lib/tmpfiles.d/tope-updater.conf /etc/tmpfiles.d/tope-updater.conf`);
  sh('systemd-sysusers && systemd-tmpfiles --create tope-updater.conf && systemctl daemon-reload');
}

function readOut(file: string): string {
  return existsSync(file) ? readFileSync(file, 'utf8') : '';
}

function lastAllocated(out: string): number {
  const m = [...out.matchAll(/^(?:allocated|done) (\d+)$/gm)].pop();
  return m ? Number(m[1]) : 0;
}

/**
 * The probe in place of each unit's ExecStart; everything else as shipped. One daemon-reload for
 * all (each costs seconds under emulation): the probe's arguments come from the manager's
 * environment, set before each start.
 */
function dropIns(): void {
  for (const c of checks) {
    const dir = `/run/systemd/system/${c.unit}.d`;
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      `${dir}/zz-limits-probe.conf`,
      `[Service]
Type=oneshot
Restart=no
ExecStart=
ExecStart=/usr/bin/node ${probe} \${TOPE_LIMITS_PROBE} \${TOPE_LIMITS_ARG}
StandardOutput=truncate:${outFile(c)}
`,
    );
  }
  sh('systemctl daemon-reload');
}

const outFile = (c: Check) => `/run/tope-limits-${c.unit}.out`;

function inUnit(c: Check, mode: string, arg: number): { out: string; props: Record<string, string> } {
  sh(`systemctl set-environment TOPE_LIMITS_PROBE=${mode} TOPE_LIMITS_ARG=${arg}`);
  // fails when the unit fails (an OOM kill): the unit's properties say how it ended
  spawnSync('systemctl', ['start', c.unit], { encoding: 'utf8', timeout: 120_000 });
  const props = show(c.unit, ['Result', 'ExecMainCode', 'ExecMainStatus']);
  sh(`systemctl reset-failed ${c.unit} 2>/dev/null || true`);
  return { out: readOut(outFile(c)), props };
}

/** The same probe outside the unit: a transient service as the same user, limits lifted. */
function outside(c: Check, mode: string, arg: number): { out: string; status: number | null } {
  const out = `/run/tope-limits-baseline-${c.unit}.out`;
  const r = spawnSync(
    'systemd-run',
    [
      '--wait',
      '--quiet',
      '--collect',
      `--uid=${c.user}`,
      '-p',
      'MemoryMax=infinity',
      '-p',
      'TasksMax=infinity',
      '-p',
      `StandardOutput=truncate:${out}`,
      '/usr/bin/node',
      probe,
      mode,
      String(arg),
    ],
    { encoding: 'utf8', timeout: 120_000 },
  );
  return { out: readOut(out), status: r.status };
}

try {
  report({ step: 'started' });
  provision();
  dropIns();
  report({ step: 'provisioned' });
  for (const c of checks) {
    const shipped = show(c.unit, ['MemoryMax', 'TasksMax']);
    const mem = inUnit(c, 'memory', c.memoryBytes);
    report({
      where: 'unit',
      probe: 'memory',
      unit: c.unit,
      shipped,
      asked: c.memoryBytes,
      allocated: lastAllocated(mem.out),
      ...mem.props,
    });
    const base = outside(c, 'memory', c.memoryBytes);
    report({
      where: 'baseline',
      probe: 'memory',
      unit: c.unit,
      asked: c.memoryBytes,
      allocated: lastAllocated(base.out),
      status: base.status,
    });
    const tasks = inUnit(c, 'tasks', c.tasks);
    report({
      where: 'unit',
      probe: 'tasks',
      unit: c.unit,
      shipped,
      asked: c.tasks,
      ...tasks.props,
      ...parseTasks(tasks.out),
    });
    const baseTasks = outside(c, 'tasks', c.tasks);
    report({
      where: 'baseline',
      probe: 'tasks',
      unit: c.unit,
      asked: c.tasks,
      status: baseTasks.status,
      ...parseTasks(baseTasks.out),
    });
  }
} catch (err) {
  report({ failed: String((err as Error).stack ?? err) });
  process.exitCode = 1;
}

function parseTasks(out: string): Record<string, unknown> {
  try {
    return JSON.parse(out.trim().split('\n').pop() ?? '');
  } catch {
    return { output: out.slice(-2000) };
  }
}
