import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeRun } from './reliability/failpoint-campaign.js';
import { randomCampaign } from './reliability/random-campaign.js';

// Downloads and installs killed with SIGKILL at uniform-random instants (CAMPAIGN_RUNS of them,
// 200 by default; `make campaign N=1000` runs more), each followed by restart, recovery and the
// invariants. The seed is printed; CAMPAIGN_SEED replays a run.

const runs = Number(process.env.CAMPAIGN_RUNS ?? 200);
const seed = Number(process.env.CAMPAIGN_SEED ?? Date.now() % 1e9);

test(
  `[systemctl stand-in] random SIGKILL campaign: ${runs} runs, zero violations (seed ${seed})`,
  { timeout: 3_600_000 },
  async (t) => {
    const r = await randomCampaign(runs, seed);
    t.diagnostic(
      `runs ${r.runs}, kills ${r.kills}, recoveries ${r.recoveries}, violations ${r.violations.length}, seed ${seed}`,
    );
    assert.deepEqual(r.violations.map(describeRun), []);
    assert.ok(r.kills >= runs / 2, `most runs killed a live process (${r.kills} of ${runs})`);
  },
);
