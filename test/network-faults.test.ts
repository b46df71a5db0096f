import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cases, networkCampaign } from './reliability/network-campaign.js';

// The network fault cases of test/reliability/network-campaign.ts, each at random offsets, against
// the real fetcher: each ends in the right hash or the case's error code, in bounded requests
// and time. The seed is printed; CAMPAIGN_SEED replays a run.

const seed = Number(process.env.CAMPAIGN_SEED ?? Date.now() % 1e9);

test(
  `network faults: every case ends right, never a loop or a hang (seed ${seed})`,
  { timeout: 600_000 },
  async (t) => {
    const runs = await networkCampaign(3, seed, (l) => t.diagnostic(l));
    assert.equal(runs.length, cases.length * 3);
    assert.deepEqual(
      runs.filter((r) => !r.ok).map((r) => `${r.name}: ${r.outcome}`),
      [],
    );
  },
);
