import { scenarios, type RunResult, type ServiceName } from '../helpers/crash-scenario.js';
import { describeRun, runOne } from './failpoint-campaign.js';

// Downloads and installs killed with SIGKILL at uniform-random instants: each run picks a
// scenario, a process (the fetcher and the installer, which hold state, more often than the
// gateway) and an instant between the services' start and the end of a clean run's work.
// Seeded, so a violation can be replayed with CAMPAIGN_SEED.

export interface RandomCampaign {
  seed: number;
  runs: number;
  kills: number;
  recoveries: number;
  violations: RunResult[];
  cleanRunMs: number;
}

/** mulberry32: small, seedable, good enough to spread kill instants. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export async function randomCampaign(
  runs: number,
  seed: number,
  log: (line: string) => void = () => undefined,
): Promise<RandomCampaign> {
  const random = seededRandom(seed);
  const clean = await runOne('update', null);
  if (clean.violations.length) throw new Error(`a clean run already fails: ${describeRun(clean)}`);
  const span = clean.activeMs;
  const out: RandomCampaign = { seed, runs: 0, kills: 0, recoveries: 0, violations: [], cleanRunMs: clean.activeMs };
  for (let i = 0; i < runs; i++) {
    const scenario = scenarios[Math.floor(random() * scenarios.length)];
    const pick = random();
    const service: ServiceName = pick < 0.4 ? 'fetcher' : pick < 0.8 ? 'installer' : 'api-gateway';
    const atMs = Math.round(random() * span);
    const r = await runOne(scenario, { service, atMs });
    out.runs++;
    out.kills += r.kills;
    if (r.violations.length) out.violations.push(r);
    else if (r.kills) out.recoveries++;
    log(`${i + 1}/${runs} ${describeRun(r)}`);
  }
  return out;
}
