import { promises as fsp } from 'node:fs';
import path from 'node:path';
import {
  CrashScenario,
  failpointsInCode,
  scenarios,
  type Kill,
  type RunResult,
  type ScenarioName,
  type ServiceName,
} from '../helpers/crash-scenario.js';
import { distDir } from '../helpers/services.js';
import { tempDir } from '../helpers/temp-dir.js';

// Every failpoint in the code, crashed at: a census run of each scenario records which process
// passes which failpoint how often; then each (process, failpoint) is crashed at its first,
// middle and last pass, in the first scenario that reaches that pass. After each crash: restart,
// recovery, and the invariants (test/helpers/crash-scenario.ts).

const repo = path.resolve(distDir, '..');

export interface FailpointCampaign {
  inCode: string[];
  reached: string[];
  census: RunResult[];
  results: RunResult[];
}

async function census(scenario: ScenarioName): Promise<{ result: RunResult; passes: Map<string, number> }> {
  const dir = tempDir('tope-census-');
  const trace = path.join(dir, 'trace');
  const s = new CrashScenario(scenario, { TOPE_FAILPOINT_TRACE: trace });
  await s.setUp();
  try {
    const result = await s.run(null);
    const passes = new Map<string, number>();
    for (const line of (await fsp.readFile(trace, 'utf8')).split('\n').filter(Boolean))
      passes.set(line, (passes.get(line) ?? 0) + 1);
    return { result, passes };
  } finally {
    await s.tearDown();
  }
}

export async function runOne(scenario: ScenarioName, kill: Kill | null): Promise<RunResult> {
  const s = new CrashScenario(scenario);
  await s.setUp();
  try {
    return await s.run(kill);
  } finally {
    await s.tearDown();
  }
}

export const describeRun = (r: RunResult): string =>
  `${r.scenario} ${r.kill ? `${r.kill.service} ${r.kill.failpoint ? `${r.kill.failpoint}#${r.kill.hit}` : `@${r.kill.atMs}ms`}` : 'no kill'}: ` +
  `kills ${r.kills}, first end ${r.firstEnd}${r.violations.length ? `, VIOLATIONS: ${r.violations.join(' | ')}` : ''} (${r.ms} ms)`;

export async function crashAtEveryFailpoint(log: (line: string) => void = () => undefined): Promise<FailpointCampaign> {
  const inCode = await failpointsInCode(repo);
  const reached = new Set<string>();
  const planned = new Set<string>();
  const plan: Array<{ scenario: ScenarioName; kill: Kill }> = [];
  const censusRuns: RunResult[] = [];
  for (const scenario of scenarios) {
    const { result, passes } = await census(scenario);
    censusRuns.push(result);
    log(`census ${describeRun(result)}: ${[...passes].map(([k, n]) => `${k}×${n}`).join(', ')}`);
    for (const [key, count] of passes) {
      const [service, failpoint] = key.split(' ') as [ServiceName, string];
      reached.add(failpoint);
      for (const hit of new Set([1, Math.ceil(count / 2), count])) {
        if (planned.has(`${key}#${hit}`)) continue;
        planned.add(`${key}#${hit}`);
        plan.push({ scenario, kill: { service, failpoint, hit } });
      }
    }
  }
  const results: RunResult[] = [];
  for (const { scenario, kill } of plan) {
    const r = await runOne(scenario, kill);
    results.push(r);
    log(describeRun(r));
  }
  return { inCode, reached: [...reached].sort(), census: censusRuns, results };
}
