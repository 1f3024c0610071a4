// Section 3 of `npm run bench`: what a debug session costs the production service. The demo service
// (examples/demo/service.js, --inspect=127.0.0.1:0, PORT=0) answers GET /checkout?user=alice&items=book,lamp
// to a keep-alive load loop in its own process (bench/load.mjs: `concurrency` workers for `durationMs` after
// `warmupMs`), with
//   (a) no debugger (the baseline),
//   (b) a broker session attached and idle (Debugger.enable),
//   (c) a snapshot breakpoint on the hot path (the `const charged =` line of priceOrder), default rate limits
//       of the policy (minIntervalMs 1000: at most one capture per second, every other hit resumed at once),
//   (d) a pause-mode breakpoint on the same line whose condition is always false (`user.tier === "platinum"`):
//       the broker checks conditions itself on each pause, so every request pauses for that check, until the
//       broker's pause budget (limits.conditionBudgetMsPerSecond, default 100) suspends the breakpoint,
//   (d') the same with that budget at its maximum (1000 ms per second; a second broker process): the cost of
//       each false-condition hit when nothing suspends the breakpoint.
// The broker is a separate process (node dist/cli.js broker). Each run opens a fresh grant and session and
// closes it afterwards (the broker then removes its breakpoints and disables the domains). Rounds are
// interleaved, rotating the order; a variant's ratio to (a) is the median over rounds of its req/s over the
// same round's (a). CPU seconds of the service and the broker are read from /proc per run.
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { basePolicy } from '../test/support/testBroker';
import { grantAndAttach, mintIdentity, startBrokerProcess, type BrokerProcess } from './lib/broker';
import { spawnNode, type Child } from './lib/procs';
import type { RttClient } from './lib/rttClient';
import { nowMs, summarize } from './lib/stats';

const root = join(__dirname, '..');
export const demoService = join(root, 'examples', 'demo', 'service.js');
export const hotLineText = 'const charged =';
export const falseCondition = 'user.tier === "platinum"';

export type LoadVariant = 'none' | 'idle' | 'snapshot' | 'falseCondition' | 'falseConditionNoBudget';
export const loadVariantNames: Record<LoadVariant, string> = {
  none: '(a) no debugger',
  idle: '(b) broker session, attached and idle',
  snapshot: '(c) snapshot breakpoint, default rate limit',
  falseCondition: '(d) false-condition breakpoint (pause mode)',
  falseConditionNoBudget: "(d') the same, pause budget 1000 ms/s",
};

export interface LoadCounts {
  rounds: number;
  /** Adjacent (a)/(b) pairs of runs after the rounds, for the idle goal. */
  idlePairs: number;
  concurrency: number;
  durationMs: number;
  warmupMs: number;
}

interface LoadResult {
  requests: number;
  seconds: number;
  rps: number;
  errors: number;
  non200: number;
  latencyMs: { median: number; p99: number; max: number };
  /** Every answer of the run, warm-up included (the CPU figures cover the whole run). */
  answered: number;
}

function runLoad(url: string, counts: LoadCounts): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [join(__dirname, 'load.mjs'), url, String(counts.concurrency), String(counts.durationMs), String(counts.warmupMs)],
      { encoding: 'utf8', timeout: counts.durationMs + counts.warmupMs + 60_000 },
      (err, stdout, stderr) => {
        if (err) return reject(new Error(`load generator failed: ${err.message}\n${stderr}`));
        try {
          resolve(JSON.parse(stdout.trim().split('\n').pop()!) as LoadResult);
        } catch {
          reject(new Error(`load generator printed no result: ${stdout}\n${stderr}`));
        }
      },
    );
  });
}

/**
 * CPU seconds a process has used so far: the sum over its threads of /proc/<pid>/task/<tid>/schedstat (time on a
 * CPU, in ns), so a run of a few seconds at a third of a core is not read in steps of 1 % (the clock ticks of
 * /proc/<pid>/stat, 1/100 s, used where schedstat is missing). Threads live as long as the process here (the
 * main thread, libuv's and V8's workers).
 */
export function cpuSeconds(pid: number): number {
  try {
    let ns = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    if (Number.isFinite(ns) && ns > 0) return ns / 1e9;
  } catch {
    /* no schedstat: fall back to the ticks */
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}

async function startService(): Promise<{ child: Child; url: string; inspector: string }> {
  const child = await spawnNode(['--inspect=127.0.0.1:0', demoService], /SERVICE_URL=(\S+)/, { cwd: root, env: { ...process.env, PORT: '0' }, label: 'demo service' });
  for (let i = 0; i < 100; i++) {
    const match = /Debugger listening on (ws:\/\/\S+)/.exec(child.output());
    if (match) return { child, url: child.ready, inspector: new URL(match[1]!).host };
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`demo service printed no inspector URL:\n${child.output()}`);
}

export async function benchThroughput(scratch: string, counts: LoadCounts, log: (line: string) => void) {
  const lineIndex = readFileSync(demoService, 'utf8')
    .split('\n')
    .findIndex((l) => l.includes(hotLineText));
  if (lineIndex < 0) throw new Error(`no "${hotLineText}" line in ${demoService}`);
  log(`section 3: starting the demo service and the broker (dist/cli.js); hot line ${lineIndex + 1} of service.js`);
  const service = await startService();
  const children: Child[] = [service.child];
  let live: RttClient | undefined;
  try {
    // basePolicy: target "app", group "devs" may use pause and snapshot; snapshot limits left at their defaults.
    const broker = await startBrokerProcess(basePolicy(service.inspector), join(scratch, 'throughput-broker'));
    children.push(broker.child);
    const identity = mintIdentity(broker.configFile);
    // (e): the same policy with the pause budget of conditional breakpoints at its maximum (1000 ms per second),
    // to show what each false-condition hit costs when nothing suspends the breakpoint.
    const unbudgeted = await startBrokerProcess(
      { ...basePolicy(service.inspector), limits: { conditionBudgetMsPerSecond: 1000 } },
      join(scratch, 'throughput-broker-nobudget'),
      'broker, condition budget 1000 ms/s',
    );
    children.push(unbudgeted.child);
    const unbudgetedIdentity = mintIdentity(unbudgeted.configFile);
    const url = `${service.url}/checkout?user=alice&items=book,lamp`;
    const check = await fetch(url);
    const body = (await check.json()) as { charged?: number };
    if (check.status !== 200 || body.charged !== 47.25) throw new Error(`demo service answered ${check.status} ${JSON.stringify(body)}`);
    const breakpoint = { lineNumber: lineIndex, urlRegex: 'service\\.js$' };

    interface Setup {
      client?: RttClient;
      events: Record<string, number>;
      /** The first Loupe.breakpointSuspended: when (ms after the breakpoint was set) and the broker's figures. */
      suspended?: { afterMs: number; params: Record<string, unknown> };
    }
    /** A session (one grant), Debugger enabled, a breakpoint on the hot line if asked; counts the Loupe.* events. */
    const session = async (on: BrokerProcess, idToken: string, mode: 'pause' | 'snapshot', reason: string, bp?: Record<string, unknown>): Promise<Setup> => {
      const { client } = await grantAndAttach(on.url, idToken, { mode, reason });
      const setup: Setup = { client, events: {} };
      let setAt = nowMs();
      client.onEvent = (text) => {
        const method = /^\{"method":"((?:Loupe|Debugger)\.[A-Za-z]+)"/.exec(text)?.[1];
        if (!method || method === 'Debugger.scriptParsed') return;
        setup.events[method] = (setup.events[method] ?? 0) + 1;
        // A false condition never passes, so the client should never see a pause; if it does, it resumes.
        if (method === 'Debugger.paused') client.socket.send(JSON.stringify({ id: 9_000_000 + setup.events[method]!, method: 'Debugger.resume', params: {} }));
        if (method === 'Loupe.breakpointSuspended' && !setup.suspended) setup.suspended = { afterMs: nowMs() - setAt, params: (JSON.parse(text) as { params: Record<string, unknown> }).params };
      };
      await client.call('Debugger.enable');
      if (bp) {
        setAt = nowMs();
        const set = await client.call('Debugger.setBreakpointByUrl', { ...breakpoint, ...bp });
        if (!set.locations?.length) throw new Error(`${mode} breakpoint did not resolve`);
      }
      return setup;
    };
    const setups: Record<LoadVariant, () => Promise<Setup>> = {
      none: async () => ({ events: {} }),
      idle: () => session(broker, identity, 'pause', 'benchmark: idle session'),
      snapshot: () => session(broker, identity, 'snapshot', 'benchmark: snapshot breakpoint on the hot path', {}),
      falseCondition: () => session(broker, identity, 'pause', 'benchmark: false-condition breakpoint on the hot path', { condition: falseCondition }),
      falseConditionNoBudget: () => session(unbudgeted, unbudgetedIdentity, 'pause', 'benchmark: false-condition breakpoint, budget at its maximum', { condition: falseCondition }),
    };

    const variants: LoadVariant[] = ['none', 'idle', 'snapshot', 'falseCondition', 'falseConditionNoBudget'];
    const runs: Record<LoadVariant, (LoadResult & { serviceCpuS: number; brokerCpuS: number; events: Record<string, number>; suspended?: Setup['suspended'] })[]> = {
      none: [],
      idle: [],
      snapshot: [],
      falseCondition: [],
      falseConditionNoBudget: [],
    };
    /** One load run under `variant`'s setup: its figures, with the service's and the broker's CPU around it. */
    const measure = async (variant: LoadVariant) => {
      const setup = await setups[variant]();
      live = setup.client;
      const brokerPid = (variant === 'falseConditionNoBudget' ? unbudgeted : broker).child.proc.pid!;
      const cpu0 = [cpuSeconds(service.child.proc.pid!), cpuSeconds(brokerPid)];
      const result = await runLoad(url, counts);
      const cpu1 = [cpuSeconds(service.child.proc.pid!), cpuSeconds(brokerPid)];
      if (setup.client) {
        await setup.client.close();
        live = undefined;
        // The broker removes the session's breakpoints and disables the domains after the close.
        await new Promise((r) => setTimeout(r, 300));
      }
      return { ...result, serviceCpuS: cpu1[0]! - cpu0[0]!, brokerCpuS: cpu1[1]! - cpu0[1]!, events: { ...setup.events }, ...(setup.suspended ? { suspended: setup.suspended } : {}) };
    };
    log(`section 3: warm-up (${counts.warmupMs + 1000} ms of load, no debugger)`);
    await runLoad(url, { ...counts, durationMs: 1000 });
    for (let round = 0; round < counts.rounds; round++) {
      const order = variants.map((_, i) => variants[(i + round) % variants.length]!);
      for (const variant of order) {
        const run = await measure(variant);
        runs[variant].push(run);
        log(
          `section 3: round ${round + 1}/${counts.rounds}: ${loadVariantNames[variant]}: ${run.rps.toFixed(0)} req/s${run.suspended ? ` (breakpoint suspended ${run.suspended.afterMs.toFixed(0)} ms after it was set: ${run.suspended.params.reason})` : ''}`,
        );
      }
    }
    // (b) against (a) again, in adjacent pairs with no breakpoint row between them: a breakpoint deoptimizes the hot
    // function, and in the rounds the run after one pays for its re-optimization, whichever variant it is. Which of
    // the two goes first alternates. The idle goal is judged on these pairs.
    const idlePairs: { none: Awaited<ReturnType<typeof measure>>; idle: Awaited<ReturnType<typeof measure>> }[] = [];
    for (let pair = 0; pair < counts.idlePairs; pair++) {
      const first: LoadVariant = pair % 2 === 0 ? 'none' : 'idle';
      const a = await measure(first);
      const b = await measure(first === 'none' ? 'idle' : 'none');
      const [none, idle] = first === 'none' ? [a, b] : [b, a];
      idlePairs.push({ none, idle });
      const cpuRatio = idle.serviceCpuS / idle.answered / (none.serviceCpuS / none.answered);
      log(`section 3: pair ${pair + 1}/${counts.idlePairs}: (a) ${none.rps.toFixed(0)} req/s, (b) ${idle.rps.toFixed(0)} req/s, service CPU per request (b)/(a) ${cpuRatio.toFixed(3)}`);
    }
    const summary = (variant: LoadVariant) => {
      const rs = runs[variant];
      const events: Record<string, number> = {};
      for (const r of rs) for (const [k, v] of Object.entries(r.events)) events[k] = (events[k] ?? 0) + v;
      // CPU is read around the whole load run (warm-up included), so it is divided by that wall time.
      const loadSeconds = (rs.length * (counts.durationMs + counts.warmupMs)) / 1000;
      return {
        name: loadVariantNames[variant],
        rounds: rs.length,
        rps: summarize(rs.map((r) => r.rps)),
        rpsPerRound: rs.map((r) => Math.round(r.rps)),
        /** Paired: each round's req/s over the same round's no-debugger req/s; a disturbance of one run moves one pair only. */
        ratioToNone: summarize(rs.map((r, i) => r.rps / runs.none[i]!.rps)),
        ratioToNonePerRound: rs.map((r, i) => Math.round((r.rps / runs.none[i]!.rps) * 1000) / 1000),
        requests: rs.reduce((s, r) => s + r.requests, 0),
        errors: rs.reduce((s, r) => s + r.errors + r.non200, 0),
        latencyMedianMs: summarize(rs.map((r) => r.latencyMs.median)).median,
        latencyP99Ms: summarize(rs.map((r) => r.latencyMs.p99)).median,
        serviceCpuPerSecond: rs.reduce((s, r) => s + r.serviceCpuS, 0) / loadSeconds,
        /** The service's CPU per answered request (µs): what a variant costs the target, steadier than req/s when
         *  other work shares the machine; paired per round like the req/s ratio. /proc ticks are 10 ms, so a run's
         *  figure is good to about 10 ms / its requests. */
        serviceCpuUsPerRequest: summarize(rs.map((r) => (r.serviceCpuS / r.answered) * 1e6)),
        cpuPerRequestToNone: summarize(rs.map((r, i) => r.serviceCpuS / r.answered / (runs.none[i]!.serviceCpuS / runs.none[i]!.answered))),
        brokerCpuPerSecond: rs.reduce((s, r) => s + r.brokerCpuS, 0) / loadSeconds,
        eventsPerSecond: Object.fromEntries(Object.entries(events).map(([k, v]) => [k, v / loadSeconds])),
        suspendedRuns: rs.filter((r) => r.suspended).length,
        suspendedAfterMs: rs.filter((r) => r.suspended).map((r) => Math.round(r.suspended!.afterMs)),
        suspension: rs.find((r) => r.suspended)?.suspended?.params ?? null,
      };
    };
    const cpuPerRequest = (r: { serviceCpuS: number; answered: number }) => r.serviceCpuS / r.answered;
    return {
      url: url.replace(service.url, ''),
      idlePairs: {
        pairs: idlePairs.length,
        cpuPerRequestToNone: summarize(idlePairs.map((p) => cpuPerRequest(p.idle) / cpuPerRequest(p.none))),
        cpuPerRequestToNonePerPair: idlePairs.map((p) => Math.round((cpuPerRequest(p.idle) / cpuPerRequest(p.none)) * 1000) / 1000),
        ratioToNone: summarize(idlePairs.map((p) => p.idle.rps / p.none.rps)),
      },
      hotLine: lineIndex + 1,
      condition: falseCondition,
      concurrency: counts.concurrency,
      durationMs: counts.durationMs,
      warmupMs: counts.warmupMs,
      variants: Object.fromEntries(variants.map((v) => [v, summary(v)])) as Record<LoadVariant, ReturnType<typeof summary>>,
    };
  } finally {
    await live?.close().catch(() => undefined);
    for (const child of children.reverse()) await child.stop();
  }
}
