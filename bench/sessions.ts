// Section 4 of `npm run bench`: idle sessions. N sessions on one target (bench/fixtures/target.js), each
// Debugger.enable'd, opened all at once:
//   (a) direct: N WebSocket clients (TCP_QUICKACK) straight to the target's inspector (no proxy process),
//   (c) the bare ws relay (bench/relay.mjs), one target connection per client: the floor for any proxy,
//   (d) the broker (node dist/cli.js broker): per session one grant (POST /v1/grants, one identity token for
//       all, minted once with `dist/cli.js token`), one attach, Debugger.enable.
// Time to open: from the first request to the last Debugger.enable answer (wall), and per session (grant,
// attach, enable). Memory: the proxy process's RSS (VmRSS) after the N sessions settled minus before, / N, each
// read after a full garbage collection in that proxy (HeapProfiler.collectGarbage through the proxy's own
// inspector, which both proxies run for this and nothing else), so garbage not yet collected does not count;
// the target's RSS delta / N as well (every session, proxied or not, is an inspector session in the target).
// Each path has its own target process (a target that once held N sessions reuses that memory for the next
// N). Each round opens N, waits, measures, closes all; rounds are interleaved, rotating the order. Memory is
// reported from each path's first round (a process that once held N sessions keeps part of that heap).
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { basePolicy } from '../test/support/testBroker';
import { startTarget, type TargetProcess } from '../test/support/target';
import { grantAndAttach, mintIdentity, rssBytes, startBrokerProcess, type BrokerProcess } from './lib/broker';
import { fdatasyncFloor } from './lib/disk';
import { spawnNode, type Child } from './lib/procs';
import { RttClient } from './lib/rttClient';
import { nowMs, summarize } from './lib/stats';

export type SessionPath = 'direct' | 'relay' | 'broker';
export const sessionPathNames: Record<SessionPath, string> = {
  direct: '(a) direct to the inspector',
  relay: '(c) bare ws relay',
  broker: '(d) broker: grant + attach',
};

export interface SessionCounts {
  sessions: number;
  rounds: number;
  /** Fresh proxy processes more per proxy for the memory figure. */
  memoryRounds: number;
  settleMs: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The inspector address a node child printed (started with --inspect=127.0.0.1:0). */
const inspectorOf = (child: Child): string => {
  const url = /Debugger listening on (ws:\/\/\S+)/.exec(child.output())?.[1];
  if (!url) throw new Error(`no inspector address in the output of ${child.proc.pid}:\n${child.output().slice(0, 500)}`);
  return url;
};

/** Median of a few RSS reads, 50 ms apart (one read can land mid-allocation), after a full GC when `gc` is given. */
async function steadyRss(pid: number, gc?: RttClient): Promise<number> {
  if (gc) await gc.call('HeapProfiler.collectGarbage', {}, 30_000);
  const reads: number[] = [];
  for (let i = 0; i < 5; i++) {
    reads.push(rssBytes(pid));
    await sleep(50);
  }
  return summarize(reads).median;
}

export async function benchSessions(scratch: string, counts: SessionCounts, log: (line: string) => void) {
  log(`section 4: starting 3 targets, the bare relay and the broker (dist/cli.js)`);
  const fixture = join(__dirname, 'fixtures', 'target.js');
  const [tDirect, tRelay, tBroker] = await Promise.all([startTarget(fixture), startTarget(fixture), startTarget(fixture)]);
  const targetOf: Record<SessionPath, TargetProcess> = { direct: tDirect!, relay: tRelay!, broker: tBroker! };
  const children: Child[] = [];
  const open: RttClient[] = [];
  const inspectors: RttClient[] = [];
  try {
    const relay = await spawnNode(['--inspect=127.0.0.1:0', join(__dirname, 'relay.mjs'), tRelay!.wsUrl], /relay listening on (ws:\/\/\S+)/, { cwd: join(__dirname, '..'), label: 'relay' });
    children.push(relay);
    const broker = await startBrokerProcess(basePolicy(tBroker!.inspector), join(scratch, 'sessions-broker'), 'broker (dist/cli.js)', ['--inspect=127.0.0.1:0']);
    children.push(broker.child);
    // One connection to each proxy's inspector, for the whole section: its own memory is in every "before" too.
    const gcOf: Partial<Record<SessionPath, RttClient>> = { relay: await RttClient.connect(inspectorOf(relay)), broker: await RttClient.connect(inspectorOf(broker.child)) };
    inspectors.push(...Object.values(gcOf));
    const identity = mintIdentity(broker.configFile);
    const proxyPid: Record<SessionPath, number | undefined> = { direct: undefined, relay: relay.proc.pid, broker: broker.child.proc.pid };

    /** Where a path's sessions go: the section's proxies, or (memory rounds) fresh ones. */
    interface Proxies {
      relayUrl: string;
      brokerUrl: string;
      identity: string;
    }
    const section: Proxies = { relayUrl: `${relay.ready}/`, brokerUrl: broker.url, identity };
    const openOne = async (path: SessionPath, via: Proxies = section) => {
      const t0 = nowMs();
      let grantMs = 0;
      let attachMs: number;
      let client: RttClient;
      if (path === 'broker') {
        const s = await grantAndAttach(via.brokerUrl, via.identity, { mode: 'pause', reason: 'benchmark: idle sessions' });
        ({ client, grantMs, attachMs } = s);
      } else {
        client = await RttClient.connect(path === 'direct' ? tDirect!.wsUrl : via.relayUrl, { quickAck: path === 'direct' });
        attachMs = nowMs() - t0;
      }
      open.push(client);
      const t1 = nowMs();
      await client.call('Debugger.enable', {}, 60_000);
      const t2 = nowMs();
      return { grantMs, attachMs, enableMs: t2 - t1, totalMs: t2 - t0 };
    };
    const closeAll = async () => {
      await Promise.all(open.splice(0).map((c) => c.close()));
    };

    log('section 4: warm-up (5 sessions per path, one after another)');
    for (const path of ['direct', 'relay', 'broker'] as SessionPath[]) {
      for (let i = 0; i < 5; i++) await openOne(path);
      await closeAll();
    }
    await sleep(counts.settleMs);

    const paths: SessionPath[] = ['direct', 'relay', 'broker'];
    const results: Record<
      SessionPath,
      {
        wallMs: number[];
        perSession: { grantMs: number; attachMs: number; enableMs: number; totalMs: number }[];
        proxyRss: { before: number; after: number; closed: number }[];
        targetRss: { before: number; after: number }[];
      }
    > = {
      direct: { wallMs: [], perSession: [], proxyRss: [], targetRss: [] },
      relay: { wallMs: [], perSession: [], proxyRss: [], targetRss: [] },
      broker: { wallMs: [], perSession: [], proxyRss: [], targetRss: [] },
    };
    for (let round = 0; round < counts.rounds; round++) {
      const order = paths.map((_, i) => paths[(i + round) % paths.length]!);
      for (const path of order) {
        const pid = proxyPid[path];
        const before = pid ? await steadyRss(pid, gcOf[path]) : NaN;
        const targetBefore = await steadyRss(targetOf[path].proc.pid!);
        const start = nowMs();
        const sessions = await Promise.all(Array.from({ length: counts.sessions }, () => openOne(path)));
        const wallMs = nowMs() - start;
        await sleep(counts.settleMs);
        const after = pid ? await steadyRss(pid, gcOf[path]) : NaN;
        const targetAfter = await steadyRss(targetOf[path].proc.pid!);
        await closeAll();
        await sleep(counts.settleMs);
        const closed = pid ? await steadyRss(pid, gcOf[path]) : NaN;
        const r = results[path];
        r.wallMs.push(wallMs);
        r.perSession.push(...sessions);
        r.proxyRss.push({ before, after, closed });
        r.targetRss.push({ before: targetBefore, after: targetAfter });
        log(
          `section 4: round ${round + 1}/${counts.rounds}: ${sessionPathNames[path]}: ${counts.sessions} sessions open in ${wallMs.toFixed(0)} ms${pid ? `, RSS +${((after - before) / 2 ** 20).toFixed(1)} MiB` : ''}`,
        );
      }
    }
    // Memory again in fresh proxy processes: a process's first N sessions are the figure (later rounds reuse what
    // the first left), and one such figure swings with the allocator from run to run (the relay's from 38 to
    // 65 KiB per session), so each proxy gets `memoryRounds` fresh processes more, each warmed up as above, and the
    // goal takes the median of these and the timed rounds' first.
    const fresh: Record<'relay' | 'broker', number[]> = {
      relay: [(results.relay.proxyRss[0]!.after - results.relay.proxyRss[0]!.before) / counts.sessions],
      broker: [(results.broker.proxyRss[0]!.after - results.broker.proxyRss[0]!.before) / counts.sessions],
    };
    for (let round = 0; round < counts.memoryRounds; round++) {
      for (const path of round % 2 === 0 ? (['relay', 'broker'] as const) : (['broker', 'relay'] as const)) {
        let proxy: Child;
        let via: Proxies;
        if (path === 'relay') {
          proxy = await spawnNode(['--inspect=127.0.0.1:0', join(__dirname, 'relay.mjs'), tRelay!.wsUrl], /relay listening on (ws:\/\/\S+)/, { cwd: join(__dirname, '..'), label: 'relay' });
          via = { ...section, relayUrl: `${proxy.ready}/` };
        } else {
          const started = await startBrokerProcess(basePolicy(tBroker!.inspector), join(scratch, `sessions-broker-memory-${round}`), 'broker (dist/cli.js)', ['--inspect=127.0.0.1:0']);
          proxy = started.child;
          via = { ...section, brokerUrl: started.url, identity: mintIdentity(started.configFile) };
        }
        try {
          const gc = await RttClient.connect(inspectorOf(proxy));
          try {
            for (let i = 0; i < 5; i++) await openOne(path, via);
            await closeAll();
            await sleep(counts.settleMs);
            const before = await steadyRss(proxy.proc.pid!, gc);
            await Promise.all(Array.from({ length: counts.sessions }, () => openOne(path, via)));
            await sleep(counts.settleMs);
            const after = await steadyRss(proxy.proc.pid!, gc);
            await closeAll();
            fresh[path].push((after - before) / counts.sessions);
            log(`section 4: memory round ${round + 1}/${counts.memoryRounds}: ${sessionPathNames[path]}, a fresh process: ${((after - before) / counts.sessions / 1024).toFixed(0)} KiB per session`);
          } finally {
            await gc.close();
          }
        } finally {
          await proxy.stop();
        }
      }
    }
    const n = counts.sessions;
    const summary = (path: SessionPath) => {
      const r = results[path];
      const first = r.proxyRss[0]!;
      const firstRounds = path === 'direct' ? [] : fresh[path];
      return {
        name: sessionPathNames[path],
        wallMs: summarize(r.wallMs),
        wallMsPerRound: r.wallMs.map((x) => Math.round(x)),
        totalMs: summarize(r.perSession.map((s) => s.totalMs)),
        grantMs: summarize(r.perSession.map((s) => s.grantMs)),
        attachMs: summarize(r.perSession.map((s) => s.attachMs)),
        enableMs: summarize(r.perSession.map((s) => s.enableMs)),
        proxyRssBeforeBytes: first.before,
        proxyRssAfterBytes: first.after,
        proxyRssAfterCloseBytes: first.closed,
        proxyBytesPerSession: (first.after - first.before) / n,
        proxyBytesPerSessionPerRound: r.proxyRss.map((x) => Math.round((x.after - x.before) / n)),
        /** The first round of a fresh process each: the timed rounds' and the memory rounds'. */
        proxyBytesPerSessionFresh: firstRounds.map((b) => Math.round(b)),
        proxyBytesPerSessionFreshMedian: firstRounds.length > 0 ? summarize(firstRounds).median : NaN,
        targetBytesPerSession: (r.targetRss[0]!.after - r.targetRss[0]!.before) / n,
        targetBytesPerSessionPerRound: r.targetRss.map((x) => Math.round((x.after - x.before) / n)),
      };
    };
    return { sessions: n, rounds: counts.rounds, settleMs: counts.settleMs, paths: Object.fromEntries(paths.map((p) => [p, summary(p)])) as Record<SessionPath, ReturnType<typeof summary>> };
  } finally {
    await Promise.all([...open, ...inspectors].map((c) => c.close()));
    for (const child of children.reverse()) await child.stop();
    await Promise.all([tDirect, tRelay, tBroker].map((t) => t!.stop()));
  }
}

// ---------------------------------------------------------------------------------------------------
// Section 7: recording under load. N sessions on one broker (dist/cli.js) and one target, each sending
// `rate` evaluations a second (Runtime.evaluate('1') under the default grant: Loupe's interpreter answers it in the
// broker; two records each, the request write-ahead and the answer), or with BENCH_LOAD_REQUESTS=mixed alternately
// that and Runtime.getProperties of a 100-field object (forwarded to V8; its answer redacted and summarized), on a fixed schedule (open loop: a late answer does not delay the next request,
// so a backlog shows as growing latency and unanswered requests) for durationMs. Baseline: the same
// evaluations from one session on the same broker while it is otherwise idle, first. Broker CPU time comes
// from /proc (user + system); records are counted in the broker's local store after it stops.

export interface RecordingCounts {
  sessions: number;
  /** Evaluations a second per session. */
  rate: number;
  durationMs: number;
  idleMs: number;
  /** The same load, unmeasured, before the measured window: the JIT settles on 20 sessions' code paths first. */
  warmupMs: number;
  /** How long answers may still arrive after the schedule ends before they count as unanswered. */
  drainMs: number;
  requests: keyof typeof loadRequestKinds;
}

export const loadRequestKinds = {
  evaluate: "Runtime.evaluate('1'), answered by Loupe's interpreter (default grant)",
  mixed: "alternately Runtime.evaluate('1') (Loupe's interpreter) and Runtime.getProperties of a 100-field object (V8)",
} as const;

/** What a session sends: the calls of section 1, two records each (the request, write-ahead; the answer). */
const loadRequest = (kind: keyof typeof loadRequestKinds, i: number, objectId: string): [string, Record<string, unknown>] =>
  kind === 'evaluate' || i % 2 === 0 ? ['Runtime.evaluate', { expression: '1' }] : ['Runtime.getProperties', { objectId, ownProperties: true }];

/** CPU seconds a process has used so far, user and system, from /proc/<pid>/stat (clock ticks of 1/100 s). */
function cpuTimes(pid: number): { user: number; system: number } {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: Number(fields[11]) / 100, system: Number(fields[12]) / 100 };
  } catch {
    return { user: NaN, system: NaN };
  }
}
const cpuSeconds = (pid: number) => {
  const { user, system } = cpuTimes(pid);
  return user + system;
};

/** Counts the events of session streams in the broker's local store recorded within [from, to] (epoch ms). */
export function storedSessionEvents(storeDir: string, from = 0, to = Infinity): number {
  let count = 0;
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (/chunk-\d+-\d+\.ndjson$/.test(name))
        for (const line of readFileSync(path, 'utf8').split('\n')) {
          if (!line || line.startsWith('{"type":"seal"')) continue;
          const time = Date.parse((JSON.parse(line) as { time: string }).time);
          if (time >= from && time <= to) count++;
        }
    }
  };
  try {
    walk(join(storeDir, 'sessions'));
  } catch {
    /* no sessions yet */
  }
  return count;
}

interface ScheduleResult {
  latencies: number[];
  sent: number;
  answered: number;
  errors: number;
  /** Answers still missing when the schedule ended, and after the drain. */
  missingAtEnd: number;
  missingAfterDrain: number;
}

/** Each client sends `rate` evaluations a second for `ms`, on a fixed schedule staggered across clients. */
async function runSchedule(clients: { client: RttClient; objectId: string }[], kind: keyof typeof loadRequestKinds, rate: number, ms: number, drainMs: number): Promise<ScheduleResult> {
  const result: ScheduleResult = { latencies: [], sent: 0, answered: 0, errors: 0, missingAtEnd: 0, missingAfterDrain: 0 };
  const interval = 1000 / rate;
  const outstanding = new Set<Promise<void>>();
  const start = nowMs();
  const end = start + ms;
  const one = ({ client, objectId }: { client: RttClient; objectId: string }, i: number) => {
    const sentAt = nowMs();
    result.sent++;
    const [method, params] = loadRequest(kind, i, objectId);
    const p: Promise<void> = client.send(method, params, ms + drainMs + 10_000).then(
      (reply) => {
        result.answered++;
        if (reply.error) result.errors++;
        else result.latencies.push(nowMs() - sentAt);
      },
      () => undefined,
    );
    const tracked = p.finally(() => outstanding.delete(tracked));
    outstanding.add(tracked);
  };
  await Promise.all(
    clients.map(async (client, i) => {
      let next = start + (i * interval) / clients.length;
      for (let n = 0; ; n++) {
        const wait = next - nowMs();
        if (wait > 0) await sleep(wait);
        if (nowMs() >= end) return;
        one(client, n);
        next += interval;
      }
    }),
  );
  result.missingAtEnd = outstanding.size;
  const drainEnd = nowMs() + drainMs;
  while (outstanding.size > 0 && nowMs() < drainEnd) await sleep(20);
  result.missingAfterDrain = outstanding.size;
  return result;
}

export async function benchLoad(scratch: string, counts: RecordingCounts, log: (line: string) => void) {
  const fixture = join(__dirname, 'fixtures', 'target.js');
  const target = await startTarget(fixture);
  const stateDir = join(scratch, 'load-broker');
  const clients: { client: RttClient; objectId: string }[] = [];
  let broker: BrokerProcess | undefined;
  try {
    // BENCH_LOAD_CPU_PROF=<dir>: the broker runs under --cpu-prof, its profile written there when it stops.
    const profDir = process.env.BENCH_LOAD_CPU_PROF;
    // BENCH_LOAD_NODE_ARGS: more node options for that broker (space-separated), e.g. --trace-gc.
    const nodeArgs = [...(profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : []), ...(process.env.BENCH_LOAD_NODE_ARGS?.split(/\s+/).filter(Boolean) ?? [])];
    broker = await startBrokerProcess(basePolicy(target!.inspector), stateDir, 'broker (dist/cli.js)', nodeArgs);
    const pid = broker.child.proc.pid!;
    const identity = mintIdentity(broker.configFile);
    const floor = fdatasyncFloor(stateDir, 200, 'preallocated');
    log(`section 7: fdatasync floor on the broker's disk: median ${floor.median.toFixed(3)} ms, p99 ${floor.p99.toFixed(3)} ms`);

    const attach = async () => {
      const { client } = await grantAndAttach(broker!.url, identity, { mode: 'pause', reason: 'benchmark: recording under load' });
      await client.call('Debugger.enable', {}, 60_000);
      const { result } = await client.call('Runtime.evaluate', { expression: 'bigObject' });
      if (typeof result?.objectId !== 'string') throw new Error(`section 7: no objectId for bigObject: ${JSON.stringify(result)}`);
      const session = { client, objectId: result.objectId as string };
      clients.push(session);
      return session;
    };

    log(`section 7: idle broker, 1 session × ${counts.rate} requests/s for ${counts.idleMs / 1000} s`);
    const first = await attach();
    await runSchedule([first], counts.requests, counts.rate, 1000, 1000); // warm-up
    const idleCpu0 = cpuSeconds(pid);
    const idleStart = nowMs();
    const idle = await runSchedule([first], counts.requests, counts.rate, counts.idleMs, counts.drainMs);
    const idleWall = (nowMs() - idleStart) / 1000;
    const idleCpu = cpuSeconds(pid) - idleCpu0;

    log(`section 7: opening ${counts.sessions - 1} more sessions`);
    for (let i = 1; i < counts.sessions; i++) await attach();
    // Like every other section, measured warm: the first seconds of a new load shape compile code on V8's helper threads
    // (about a tenth of the broker's CPU in the first 20 s here), which a broker running for hours has long done.
    log(`section 7: warm-up, ${counts.sessions} sessions × ${counts.rate} requests/s for ${counts.warmupMs / 1000} s (not measured)`);
    await runSchedule(clients, counts.requests, counts.rate, counts.warmupMs, counts.drainMs);
    log(`section 7: ${counts.sessions} sessions × ${counts.rate} requests/s for ${counts.durationMs / 1000} s`);
    const cpu0 = cpuSeconds(pid);
    const times0 = cpuTimes(pid);
    const loadFrom = Date.now();
    const loadStart = nowMs();
    const load = await runSchedule(clients, counts.requests, counts.rate, counts.durationMs, counts.drainMs);
    const loadWall = (nowMs() - loadStart) / 1000;
    const loadCpu = cpuSeconds(pid) - cpu0;
    const times1 = cpuTimes(pid);
    const loadTo = Date.now();
    await Promise.all(clients.splice(0).map((c) => c.client.close()));
    const exit = await broker.child.stop(15_000);
    if (process.env.BENCH_LOAD_OUTPUT) writeFileSync(process.env.BENCH_LOAD_OUTPUT, broker.child.output());
    const store = join(stateDir, 'state', 'audit-store');
    const stored = storedSessionEvents(store);
    log(`section 7: broker exited (${exit}); ${load.answered} of ${load.sent} answered, broker CPU ${loadCpu.toFixed(2)} s over ${loadWall.toFixed(1)} s`);
    // Records made in the load window, by their own time (every record is in the store once the broker has stopped).
    const loadRecords = storedSessionEvents(store, loadFrom, loadTo);
    return {
      sessions: counts.sessions,
      rate: counts.rate,
      durationMs: counts.durationMs,
      idleMs: counts.idleMs,
      warmupMs: counts.warmupMs,
      drainMs: counts.drainMs,
      requests: loadRequestKinds[counts.requests],
      fdatasyncMs: floor,
      idle: { ...idle, latencies: undefined, latencyMs: summarize(idle.latencies), wallSeconds: idleWall, brokerCpuSeconds: idleCpu },
      load: {
        ...load,
        latencies: undefined,
        latencyMs: summarize(load.latencies),
        wallSeconds: loadWall,
        brokerCpuSeconds: loadCpu,
        brokerUserSeconds: times1.user - times0.user,
        brokerSystemSeconds: times1.system - times0.system,
        records: loadRecords,
        recordsPerSecond: loadRecords / loadWall,
        recordsPerCpuSecond: loadRecords / loadCpu,
        recordsPerRequest: loadRecords / Math.max(1, load.answered),
      },
      storedSessionEvents: stored,
      profileDir: process.env.BENCH_LOAD_CPU_PROF ?? null,
    };
  } finally {
    await Promise.all(clients.map((c) => c.client.close()));
    await broker?.child.stop();
    await target!.stop();
  }
}
