// `make campaign N=…` and `make reliability`: the crash, fault and hostile-input campaigns as a
// command, printing their figures as they go and one table at the end.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ScenarioName, ServiceName } from '../helpers/crash-scenario.js';
import { distDir } from '../helpers/services.js';
import { crashAtEveryFailpoint, describeRun, runOne } from './failpoint-campaign.js';
import { networkCampaign } from './network-campaign.js';
import { describe as describePowercut, powercutCampaign, randomUpdateCut, recoveryCut } from './powercut-campaign.js';
import { randomCampaign } from './random-campaign.js';

const [what = 'usage', ...args] = process.argv.slice(2);
const seed = Number(process.env.CAMPAIGN_SEED ?? Date.now() % 1e9);
const quiet = process.env.CAMPAIGN_VERBOSE
  ? (l: string) => console.log(l)
  : (l: string) => {
      if (/VIOLATIONS|^FAIL /.test(l)) console.log(l);
    };

async function random(n: number) {
  console.log(`random SIGKILL campaign: ${n} runs, seed ${seed}`);
  const r = await randomCampaign(n, seed, quiet);
  console.log(
    `runs ${r.runs}, kills ${r.kills}, recoveries ${r.recoveries}, violations ${r.violations.length} (a clean run takes ${r.cleanRunMs} ms)`,
  );
  return r;
}

if (what === 'one') {
  const [scenario, service, failpoint, hit] = args;
  console.log(
    describeRun(
      await runOne(scenario as ScenarioName, { service: service as ServiceName, failpoint, hit: Number(hit ?? 1) }),
    ),
  );
} else if (what === 'campaign') {
  const r = await random(Number(args[0] ?? 1000));
  process.exitCode = r.violations.length ? 1 : 0;
} else if (what === 'powercut') {
  // every 8th cut (from the 3rd) falls in the recovery boot that follows the previous cut;
  // POWERCUT_MINUTES: begin no new cut after that long (a loaded host fits fewer)
  const n = Number(args[0] ?? 40);
  const budgetMs = process.env.POWERCUT_MINUTES ? Number(process.env.POWERCUT_MINUTES) * 60_000 : undefined;
  const work = mkdtempSync(path.join(os.tmpdir(), 'tope-powercut-'));
  console.log(`power-cut campaign: ${n} cuts, seed ${seed}, work in ${work}`);
  const r = await powercutCampaign(
    {
      work,
      log: (l) => console.log(l),
      budgetMs,
      plans: Array.from({ length: n }, (_, i) => (i % 8 === 2 ? recoveryCut : randomUpdateCut)),
    },
    seed,
  );
  for (const v of r.violations)
    console.log(
      `\nVIOLATION after ${v.cut}:\n  ${v.finding.violations.join('\n  ')}\n--- guest journal ---\n${v.finding.journal ?? ''}\n--- previous boot ---\n${v.finding.previousBoot ?? ''}\n--- console of the boot ---\n${v.console}`,
    );
  const perCut = Math.round(r.ms / Math.max(1, r.cuts.length) / 1000);
  const rows = Object.entries(r.byStage)
    .sort((a, b) => b[1] - a[1])
    .map(([stage, count]) => `| ${stage} | ${count} |`);
  const table = [
    '| power-cut campaign (seed ' + seed + ') | figures |',
    '|---|---|',
    `| cuts | ${r.cuts.length}${r.cuts.length < n ? ` of ${n} planned (the time budget ran out)` : ''} (${r.cuts.filter((c) => c.recoveryCut).length} during a recovery boot, before it settled) |`,
    `| boots | ${r.boots} (${Math.round(r.bootMs.reduce((a, b) => a + b, 0) / r.boots / 1000)} s each on average) |`,
    `| recoveries checked | ${r.recoveries} |`,
    `| violations | ${r.violations.length} |`,
    '',
    '| where the power went (the last stage the guest saw) | cuts |',
    '|---|---|',
    ...rows,
  ].join('\n');
  const machine = `${os.cpus()[0]?.model ?? 'cpu'} × ${os.cpus().length}, load ${os.loadavg()[0].toFixed(1)} at the end, Linux ${os.release()}, node ${process.version}`;
  console.log(`\n${describePowercut(r)}\n\n${table}\n\n${machine}; ${Math.round(r.ms / 1000)} s, ${perCut} s a cut`);
  const file = process.env.RELIABILITY_FILE;
  if (file) {
    const block = `<!-- powercut -->\n${table}\n\nMeasured ${new Date().toISOString().slice(0, 10)} on ${machine}, in ${Math.round(r.ms / 1000)} s (${perCut} s a cut).\n<!-- /powercut -->`;
    writeFileSync(file, readFileSync(file, 'utf8').replace(/<!-- powercut -->[\s\S]*<!-- \/powercut -->/, block));
    console.log(`written to ${file}`);
  }
  // the boots' consoles and results stay for a campaign that found something
  if (r.violations.length) console.log(`each boot's console and results port: ${work}`);
  else rmSync(work, { recursive: true, force: true });
  process.exitCode = r.violations.length ? 1 : 0;
} else if (what === 'reliability') {
  const t0 = Date.now();
  const fp = await crashAtEveryFailpoint(quiet);
  const fpBad = fp.results.filter((r) => r.violations.length).length;
  const fpReached = fp.results.filter((r) => r.reached);
  console.log(
    `failpoints: ${fp.inCode.length} in the code, ${fp.reached.length} reached, ${fpReached.length} crashes, violations ${fpBad}`,
  );
  const rnd = await random(Number(args[0] ?? 1000));
  const net = await networkCampaign(Number(args[1] ?? 5), seed, quiet);
  const netBad = net.filter((r) => !r.ok).length;
  console.log(`network faults: ${net.length} runs, failures ${netBad}`);
  console.log('property and fuzz tests: running test/properties.test.ts');
  const props = (() => {
    try {
      execFileSync(process.execPath, ['--test', path.join(distDir, 'test/properties.test.js')], { stdio: 'pipe' });
      return 'passed';
    } catch (e) {
      return `FAILED: ${String((e as { stdout?: Buffer }).stdout ?? e).slice(-2000)}`;
    }
  })();
  const rows = [
    [
      'failpoints (every one in the code)',
      `${fp.inCode.length} failpoints, ${fp.reached.length} reached by the scenarios; ${fpReached.length} crashes at first/middle/last pass, ${fpReached.length} recoveries`,
      String(fpBad),
    ],
    [
      'random SIGKILL (seed ' + rnd.seed + ')',
      `${rnd.runs} runs, ${rnd.kills} kills, ${rnd.recoveries} recoveries`,
      String(rnd.violations.length),
    ],
    [
      'network faults (14 cases)',
      `${net.length} runs, ${net.filter((r) => r.ok).length} ended right (hash or error code), max ${Math.max(...net.map((r) => r.requests))} requests, max ${Math.max(...net.map((r) => r.ms))} ms`,
      String(netBad),
    ],
    [
      'property and fuzz tests',
      `header parsers, manifest planner, mutated zips, gateway command sequences: ${props === 'passed' ? 'passed' : 'failed'}`,
      props === 'passed' ? '0' : '1',
    ],
  ];
  const table = [
    '| campaign | figures | violations |',
    '|---|---|---|',
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
  const machine = `${os.cpus()[0]?.model ?? 'cpu'} × ${os.cpus().length}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Linux ${os.release()}, node ${process.version}`;
  console.log(`\n${table}\n\n${machine}; ${Math.round((Date.now() - t0) / 1000)} s`);
  const file = process.env.RELIABILITY_FILE;
  if (file) {
    // the figures go between the markers; the prose around them is the document's own
    const block = `<!-- figures -->\n${table}\n\nMeasured ${new Date().toISOString().slice(0, 10)} on ${machine}, in ${Math.round((Date.now() - t0) / 1000)} s.\n<!-- /figures -->`;
    const doc = readFileSync(file, 'utf8');
    writeFileSync(file, doc.replace(/<!-- figures -->[\s\S]*<!-- \/figures -->/, block));
    console.log(`written to ${file}`);
  }
  process.exitCode = fpBad + rnd.violations.length + netBad + (props === 'passed' ? 0 : 1) ? 1 : 0;
} else {
  console.error(
    'usage: main.js reliability [randomRuns] [networkRepeats] | campaign N | powercut N | one SCENARIO SERVICE FAILPOINT [HIT]',
  );
  process.exitCode = 2;
}
