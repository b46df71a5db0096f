import assert from 'node:assert/strict';
import { symlinkSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { buildPackage, md5 } from './helpers/packages.js';
import { Sandbox, sandboxAvailable, holdSandboxLock } from './helpers/sandbox.js';
import { waitFor } from './helpers/wait.js';

// A package's post_cmds under a real systemd (PID 1 in a systemd-nspawn container), the updater
// installed as `make install` lays it out, TOPE_POST_CMD_SANDBOX left at its default (auto): each
// post_cmd runs in a transient unit of its own. A hostile package's post_cmds try what a root
// process could do from inside the installer, each attempt's exit status written to a file of
// the new version, then end well so that the install succeeds and the test reads what happened.

const available = sandboxAvailable();
const skip = available === true ? false : available;
const sbx = skip ? null : new Sandbox('postcmd');
const BYSTANDER = 'tope-test-bystander.service';

async function publish(version: string, postCmds: string[]) {
  const zip = await buildPackage(version, [
    {
      name: 'printerd',
      dst: '/opt/tope/bin/printerd',
      process_name: 'printerd.service',
      data: `printerd ${version}\n`,
      post_cmds: postCmds,
    },
  ]);
  sbx!.testFile(`packages/tope-${version}.zip`, zip);
  return {
    version,
    package_name: `tope-${version}.zip`,
    package_size: zip.length,
    package_md5: md5(zip),
    package_url: `http://127.0.0.1:8000/tope-${version}.zip`,
  };
}

/** Downloads and starts the install of a package with these post_cmds. */
async function startInstall(version: string, postCmds: string[]) {
  const s = sbx!;
  const pkg = await publish(version, postCmds);
  assert.equal(s.api('POST', '/api/v1.0/download', pkg).code, 200);
  await s.stage('toInstall');
  assert.equal(s.api('POST', '/api/v1.0/update', { version }).code, 200);
}

const ended = (version: string) =>
  waitFor(
    `the install of ${version} to end`,
    () => {
      const p = sbx!.api('GET', '/api/v1.0/progress').data;
      return ['success', 'failed'].includes(p.stage) ? p : null;
    },
    60_000,
    200,
  );

async function install(version: string, postCmds: string[]) {
  await startInstall(version, postCmds);
  return ended(version);
}

const postCmdUnits = (state = '') =>
  sbx!.sh(`systemctl list-units --all --plain --no-legend ${state} 'tope-post-cmd-*' | wc -l`);

let releaseSandbox: (() => void) | null = null;
before(async () => {
  if (!sbx) return;
  releaseSandbox = await holdSandboxLock();
  sbx.optFile('versions/v1.0.0/bin/printerd', 'printerd 1.0.0\n');
  symlinkSync('v1.0.0', path.join(sbx.host, 'persist/opt-tope/versions/current'));
  // the installer stays up after the install, so that its unit's status can be read then
  sbx.env = { PROBATION_MS: '1000', IDLE_MS: '600000' };
  sbx.up();
  // a unit the package has nothing to do with
  sbx.sh(`systemd-run --unit=${BYSTANDER} --quiet sleep infinity`);
});
after(() => {
  try {
    sbx?.down();
  } finally {
    releaseSandbox?.();
  }
});

/** Each attempt of the hostile package: its exit status lands in attempts/<name> of the new version. */
const attempts: Record<string, string> = {
  // a unit of its own, made by systemd with none of the sandbox, writing the system
  systemdRun: `systemd-run --wait --quiet /bin/sh -c ': > /usr/x'`,
  stopUnit: `systemctl stop ${BYSTANDER}`,
  writeUsr: `(: > /usr/y)`,
  writeOldSnapshot: `(: > /opt/tope/versions/v1.0.0/evil)`,
  appendCurrent: `(echo evil >> /opt/tope/versions/current/bin/printerd)`,
  writeEtc: `(: > /etc/tope-evil)`,
  // root may signal every root process: SIGRTMIN+5 to PID 1 would reboot (-0 only asks whether it may)
  signalPid1: 'kill -0 1',
  // the installer's own mount namespace, where /run/systemd is there, through /proc
  installerRoot:
    'i=$(grep -l installer/main.js /proc/[0-9]*/cmdline 2>/dev/null | head -n1); [ -n "$i" ] && [ -S "${i%/cmdline}/root/run/systemd/private" ]',
  // the updater's own API: a new download, another install
  api: 'curl -s --max-time 5 -o /dev/null http://127.0.0.1:12315/api/v1.0/progress',
  // sd_notify as the installer: with the NOTIFY_SOCKET it was given, and with systemd's own path
  notify: 'systemd-notify --status=post-cmd-was-here ERRNO=42',
  notifyByPath: 'NOTIFY_SOCKET=/run/systemd/notify systemd-notify --status=post-cmd-was-here ERRNO=43',
};

test(
  'a post_cmd runs in a unit of its own: it writes the new version and nothing else, reaches no systemd, holds no capability, and cannot speak as the installer',
  { skip },
  async () => {
    const s = sbx!;
    const statusErrno = () => s.prop('tope-installer.service', 'StatusErrno');
    const end = await install('2.0.0', [
      'mkdir attempts',
      ...Object.entries(attempts).map(([name, cmd]) => `${cmd} >/dev/null 2>&1; echo $? > attempts/${name}`),
      "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status > capabilities",
      // a legitimate migration: its own files, in its working directory and by $TOPE_VERSION_DIR
      'env > env.txt',
      'sleep 602 & echo left running',
      'echo "migrated to $TOPE_VERSION" > migrated && v=x && echo "${v}y 100%n" > "$TOPE_VERSION_DIR/expanded" && pwd > cwd',
    ]);
    assert.equal(end.stage, 'success', JSON.stringify(end));
    const dir = '/opt/tope/versions/v2.0.0';
    assert.equal(s.sh('readlink /opt/tope/versions/current'), 'v2.0.0');
    // each attempt failed, and changed nothing
    const outcome = (name: string) => (s.sh(`cat ${dir}/attempts/${name}`) === '0' ? 'succeeded' : 'failed');
    assert.deepEqual(
      Object.fromEntries(Object.keys(attempts).map((name) => [name, outcome(name)])),
      Object.fromEntries(Object.keys(attempts).map((name) => [name, 'failed'])),
    );
    for (const file of ['/usr/x', '/usr/y', '/etc/tope-evil', '/opt/tope/versions/v1.0.0/evil'])
      assert.equal(s.status(`test -e ${file}`), 1, `${file} exists`);
    assert.equal(s.sh('cat /opt/tope/versions/v1.0.0/bin/printerd'), 'printerd 1.0.0');
    assert.equal(s.active(BYSTANDER), 'active');
    assert.equal(statusErrno(), '0', 'no ERRNO= from a post_cmd (nor from the systemd tools the installer runs)');
    assert.doesNotMatch(s.prop('tope-installer.service', 'StatusText'), /post-cmd-was-here/);
    // no capability at all, and none to gain
    const caps = Object.fromEntries(
      s
        .sh(`cat ${dir}/capabilities`)
        .split('\n')
        .map((l) => l.split(/:\s+/)),
    );
    assert.deepEqual(caps, {
      CapInh: '0000000000000000',
      CapPrm: '0000000000000000',
      CapEff: '0000000000000000',
      CapBnd: '0000000000000000',
      CapAmb: '0000000000000000',
      NoNewPrivs: '1',
    });
    // the migration worked, in the new snapshot, with the shell's own ${...} and no % specifier
    assert.equal(s.sh(`cat ${dir}/migrated`), 'migrated to 2.0.0');
    assert.equal(s.sh(`cat ${dir}/expanded`), 'xy 100%n');
    assert.equal(s.sh(`cat ${dir}/cwd`), dir);
    assert.equal(s.sh('cat /run/printerd.version'), 'printerd 2.0.0');
    // each post_cmd ran in a unit the journal names; none is left
    const journal = s.sh('journalctl --no-pager -o cat -u tope-installer.service');
    assert.match(journal, /"unit":"tope-post-cmd-[0-9a-f]{12}\.service".*"msg":"post_cmd running in its own unit"/);
    assert.match(journal, /post_cmds run each in a sandboxed transient unit/);
    assert.equal(postCmdUnits(), '0');
    assert.equal(s.status('pgrep -a -x sleep | grep "sleep 602"'), 1, 'what it left running was killed when it ended');
    const env = s
      .sh(`cat ${dir}/env.txt`)
      .split('\n')
      .map((line) => line.slice(0, line.indexOf('=')));
    assert.deepEqual(env.filter((name) => !['PWD', 'SHLVL', '_', 'OLDPWD'].includes(name)).sort(), [
      // systemd's own for every service
      'INVOCATION_ID',
      'LANG',
      'PATH',
      'SYSTEMD_EXEC_PID',
      'TOPE_VERSION',
      'TOPE_VERSION_DIR',
    ]);
  },
);

test(
  'a failing post_cmd in its unit: POST_CMD_FAILED with its exit status and output; one past its deadline: POST_CMD_TIMEOUT, everything it started killed; the device stays as it was',
  { skip },
  async () => {
    const s = sbx!;
    const failed = await install('3.0.0', ['echo doomed >&2; echo out; exit 7']);
    assert.equal(failed.stage, 'failed');
    assert.match(
      failed.error,
      /^POST_CMD_FAILED: 'echo doomed >&2; echo out; exit 7' exited 7 — doomed \| stdout: out$/,
    );
    assert.equal(s.sh('readlink /opt/tope/versions/current'), 'v2.0.0');
    assert.equal(s.status('test -e /opt/tope/versions/v3.0.0'), 1);

    // the installer killed while a post_cmd runs: its unit outlives it, and the restarted installer
    // stops it before its recovery removes the snapshot the post_cmd was writing
    await startInstall('3.2.0', ['while :; do date > still-here; sleep 1; done']);
    await waitFor('the post_cmd running', () => postCmdUnits('--state=active') === '1', 30_000, 100);
    const restarts = Number(s.prop('tope-installer.service', 'NRestarts'));
    s.sh(`kill -KILL ${s.prop('tope-installer.service', 'MainPID')}`);
    const interrupted = await ended('3.2.0');
    assert.equal(interrupted.stage, 'failed');
    assert.match(interrupted.error, /^INSTALL_INTERRUPTED: /);
    assert.ok(Number(s.prop('tope-installer.service', 'NRestarts')) > restarts);
    assert.equal(postCmdUnits(), '0');
    assert.equal(s.status('test -e /opt/tope/versions/v3.2.0'), 1);
    assert.match(
      s.sh('journalctl --no-pager -o cat -u tope-installer.service'),
      /"units":\["tope-post-cmd-[0-9a-f]{12}\.service"\].*"msg":"stopping post_cmd units the last installer left running"/,
    );

    // a short deadline, read by the installer at its next start
    s.sh('echo TOPE_POST_CMD_TIMEOUT_MS=3000 >> /etc/default/tope-updater && systemctl stop tope-installer.service');
    const timedOut = await install('3.1.0', ['sleep 600 & sleep 601']);
    assert.equal(timedOut.stage, 'failed');
    assert.equal(timedOut.error, "POST_CMD_TIMEOUT: 'sleep 600 & sleep 601' timed out after 3000 ms");
    assert.equal(s.status('pgrep -x sleep -a | grep -E "sleep 60[01]"'), 1, 'its processes are gone');
    assert.equal(postCmdUnits(), '0');
    assert.equal(s.sh('readlink /opt/tope/versions/current'), 'v2.0.0');
    assert.equal(s.active('printerd.service'), 'active');
  },
);
