import assert from 'node:assert/strict';
import { test } from 'node:test';
import { vmAvailable } from './helpers/vm.js';
import { cutAtFailpoint, cutAtStage, describe, powercutCampaign } from './reliability/powercut-campaign.js';
import { tempDir } from './helpers/temp-dir.js';

// Real power cuts (make test's share; `make powercut N=…` is the campaign): the QEMU VM runs
// whole updates on a disk that persists across boots, and the host SIGKILLs qemu, so the
// guest's page cache and every write it had not flushed are gone (test/system/vm.sh boot says
// why cache=none). Five cuts, one disk: mid-download, mid-install (units stopped, in-place
// files and post_cmds), inside the switch of `current`, mid-probation, and just after a success
// (what the install removed at its end must stay removed). After each, the VM boots again with no API call; the guest checks that
// current is a complete old or new snapshot, byte-exact, the in-place files all old or all new,
// /progress agrees with it, the state files parse, device-api's last report is the status,
// nothing is left over, and that the same package then downloads and installs. The five cuts
// take about 6 min (347 s run alone on the 2-core host; the four before the switch's took 308 s
// in a make test run).

const available = vmAvailable();
const skip = available === true ? false : available;
const work = tempDir('tope-powercut-');

test(
  'power cuts of the whole VM mid-download, mid-install, inside the switch, mid-probation and just after success: each boot recovers to old or new, never wedged',
  { skip, timeout: 3_600_000 },
  async () => {
    const lines: string[] = [];
    const r = await powercutCampaign(
      {
        work,
        log: (l) => lines.push(l),
        plans: [
          cutAtStage('mid-download', (m) => m.stage === 'downloading', 1500),
          cutAtStage('mid-install', (m) => m.stage === 'installing' && /^Stopping services/.test(m.message ?? ''), 0),
          // inside the switch: `previous` already names the old snapshot, and the new `current`
          // is made under its temporary name, not yet renamed over the old one (the installer
          // stops itself there and the power goes at once)
          cutAtFailpoint('in-switch', 'installer.link-made#2'),
          cutAtStage(
            'mid-probation',
            (m) => m.stage === 'installing' && /^Checking services/.test(m.message ?? ''),
            1500,
          ),
          // a cut just after a success: the finished install must stay finished (this cut does not
          // catch finding 8 when its fix is reverted: the next download's fsyncs commit the ext4
          // journal, removal included, before the cut comes)
          cutAtStage('after-success', (m) => m.stage === 'success', 2000),
        ],
      },
      1,
    );
    const summary = `${describe(r)} in ${Math.round(r.ms / 1000)} s\n${lines.join('\n')}`;
    assert.deepEqual(
      r.violations.map((v) => `${v.cut}: ${v.finding.violations.join('; ')}\n${v.finding.journal ?? ''}\n${v.console}`),
      [],
      summary,
    );
    assert.equal(r.cuts.length, 5, summary);
    assert.deepEqual(
      r.cuts.map((c) => c.what),
      ['mid-download', 'mid-install', 'in-switch', 'mid-probation', 'after-success'],
      summary,
    );
    // the in-switch cut fell where it was aimed, as the guest's disk showed it when the installer
    // stopped: `previous` already on the running snapshot (which `current` still names), and the
    // new `current` made under its temporary name
    assert.equal(r.cuts[2].stage, 'install: stopped at installer.link-made#2', summary);
    const frozen = r.cuts[2].lastMark;
    const links = frozen?.links as Record<string, string | null> | undefined;
    assert.ok(links && links.current !== null && links.current !== `v${String(frozen?.version)}`, summary);
    assert.deepEqual(
      links,
      { current: links.current, previous: links.current, '.link-tmp-current': `v${String(frozen?.version)}` },
      summary,
    );
    assert.equal(r.recoveries, 5, summary);
    console.log(summary);
  },
);
