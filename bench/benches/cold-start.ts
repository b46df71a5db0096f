import type { BenchContext } from '../context.js';
import { BenchDevice } from '../lib/bench-device.js';
import { nowMs } from '../lib/clock.js';
import { firstAnswer } from '../lib/http-timing.js';
import { buildTreePackage } from '../lib/packages.js';
import { fmt, type Row } from '../lib/report.js';
import { median } from '../lib/stats.js';
import { freePort, mainOf, Service, socketActivation, unitEnvironment } from '../../test/helpers/services.js';
import { referenceServer } from './progress-latency.js';

// Cold start of the socket-activated gateway: systemd-socket-activate binds the port and execs
// node with the socket as fd 3, as a .socket unit does when the gateway had exited. A unit
// starts the service on the first connection; here the spawn comes first and the connection
// follows within a millisecond, so spawn → answer is the figure (it bounds connect → answer).

const IDLE_EXIT_MS = 500;

interface Activation {
  answerMs: number;
  /** From the answer to the process being gone, idle. */
  exitMs: number;
  exitCode: number | null;
}

async function activate(
  command: string[],
  env: Record<string, string>,
  path: string,
  waitExit: boolean,
): Promise<Activation> {
  const port = await freePort();
  const t0 = nowMs();
  const s = new Service('cold-start', {}, socketActivation(`127.0.0.1:${port}`, env, command));
  try {
    const r = await firstAnswer(`http://127.0.0.1:${port}${path}`, t0);
    if (!waitExit) return { answerMs: r.ms, exitMs: NaN, exitCode: null };
    const t1 = nowMs();
    const { code } = await s.exited;
    return { answerMs: r.ms, exitMs: nowMs() - t1, exitCode: code };
  } finally {
    await s.kill('SIGKILL');
  }
}

export async function benchColdStart(ctx: BenchContext): Promise<Row[]> {
  const d = new BenchDevice({ TOPE_IDLE_EXIT_MS: String(IDLE_EXIT_MS) });
  const gateway: Activation[] = [];
  const reference: Activation[] = [];
  try {
    // a verified package waiting: /progress reads a real record
    await d.verified(await buildTreePackage('3.1.4', 1, 1024, 0), '3.1.4');
    for (let i = 1; i <= ctx.plan.runs.coldStart; i++) {
      ctx.say(`cold start: run ${i}/${ctx.plan.runs.coldStart}`);
      gateway.push(
        await activate(
          [process.execPath, mainOf('api-gateway')],
          // with its unit's environment (V8's flags, malloc's arenas), as systemd starts it
          { ...d.env, TOPE_LISTEN_PORT: '1', ...unitEnvironment('api-gateway') },
          '/api/v1.0/progress',
          true,
        ),
      );
      reference.push(await activate([process.execPath, referenceServer], {}, '/', false));
    }
  } finally {
    await d.dispose();
  }
  const bad = gateway.find((g) => g.exitCode !== 0);
  if (bad) throw new Error(`the idle gateway exited ${bad.exitCode}, not 0`);
  const ours = median(gateway.map((g) => g.answerMs));
  const theirs = median(reference.map((g) => g.answerMs));
  const exit = median(gateway.map((g) => g.exitMs));
  return [
    {
      measure: 'Cold start: socket-activated gateway that had exited, spawn → first /progress answer (bound: ≤ 2.00×)',
      value: fmt.ms(ours),
      reference: `bare Node http server, same activation: ${fmt.ms(theirs)}`,
      ratio: fmt.ratio(ours / theirs),
      runs: String(gateway.length),
    },
    {
      measure: `Idle exit: last answer → gateway gone (exit 0), TOPE_IDLE_EXIT_MS=${IDLE_EXIT_MS}`,
      value: fmt.ms(exit),
      reference: `the idle period: ${fmt.ms(IDLE_EXIT_MS)}`,
      ratio: fmt.ratio(exit / IDLE_EXIT_MS),
      runs: String(gateway.length),
    },
  ];
}
