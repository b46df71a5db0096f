import assert from 'node:assert/strict';
import { test } from 'node:test';
import { crashAtEveryFailpoint, describeRun } from './reliability/failpoint-campaign.js';

// The failpoints come from the code (every `failpoint('…')` call under services/ and shared/):
// each is reached by a scenario, and crashing the process there, at its first, middle and last
// pass, ends after restart and recovery with every invariant of test/helpers/crash-scenario.ts.

test(
  '[systemctl stand-in] every failpoint in the code: crashed at, restarted, recovered, invariants hold',
  { timeout: 1_800_000 },
  async (t) => {
    const { inCode, reached, census, results } = await crashAtEveryFailpoint();
    assert.ok(inCode.length >= 20, `the failpoints were read from the code (${inCode.length})`);
    assert.deepEqual(reached, inCode, 'every failpoint in the code is reached by a scenario');
    assert.deepEqual(
      census.flatMap((r) => r.violations),
      [],
      'the scenarios pass without a crash',
    );
    assert.deepEqual(results.filter((r) => r.violations.length).map(describeRun), []);
    const crashed = new Set(results.filter((r) => r.kills > 0).map((r) => r.kill!.failpoint));
    assert.deepEqual([...crashed].sort(), inCode, 'each failpoint killed its process at least once');
    t.diagnostic(`${results.filter((r) => r.kills).length} crashes at ${inCode.length} failpoints, 0 violations`);
  },
);
