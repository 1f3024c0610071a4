// Section 4 of `npm run bench`: idle sessions. N sessions on one target (bench/fixtures/target.js), each
// Debugger.enable'd, opened all at once:
//   (a) direct: N WebSocket clients (TCP_QUICKACK) straight to the target's inspector (no proxy process),
//   (c) the bare ws relay (bench/relay.mjs), one target connection per client: the floor for any proxy,
//   (d) the broker (node dist/cli.js broker): per session one grant (POST /v1/grants, one identity token for
//       all, minted once with `dist/cli.js token`), one attach, Debugger.enable.
// Time to open: from the first request to the last Debugger.enable answer (wall), and per session (grant,
// attach, enable). Memory: the proxy process's RSS (VmRSS) after the N sessions settled minus before, / N;
// the target's RSS delta / N as well (every session, proxied or not, is an inspector session in the target).
// Each path has its own target process (a target that once held N sessions reuses that memory for the next
// N). Each round opens N, waits, measures, closes all; rounds are interleaved, rotating the order. Memory is
// reported from each path's first round (a process that once held N sessions keeps part of that heap).
import { join } from 'node:path';
import { basePolicy } from '../test/support/testBroker';
import { startTarget, type TargetProcess } from '../test/support/target';
import { grantAndAttach, mintIdentity, rssBytes, startBrokerProcess } from './lib/broker';
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
  settleMs: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Median of a few RSS reads, 50 ms apart: one read can land mid-allocation. */
async function steadyRss(pid: number): Promise<number> {
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
  try {
    const relay = await spawnNode([join(__dirname, 'relay.mjs'), tRelay!.wsUrl], /relay listening on (ws:\/\/\S+)/, { cwd: join(__dirname, '..'), label: 'relay' });
    children.push(relay);
    const broker = await startBrokerProcess(basePolicy(tBroker!.inspector), join(scratch, 'sessions-broker'));
    children.push(broker.child);
    const identity = mintIdentity(broker.configFile);
    const proxyPid: Record<SessionPath, number | undefined> = { direct: undefined, relay: relay.proc.pid, broker: broker.child.proc.pid };

    const openOne = async (path: SessionPath) => {
      const t0 = nowMs();
      let grantMs = 0;
      let attachMs: number;
      let client: RttClient;
      if (path === 'broker') {
        const s = await grantAndAttach(broker.url, identity, { mode: 'pause', reason: 'benchmark: idle sessions' });
        ({ client, grantMs, attachMs } = s);
      } else {
        client = await RttClient.connect(path === 'direct' ? tDirect!.wsUrl : `${relay.ready}/`, { quickAck: path === 'direct' });
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
        const before = pid ? await steadyRss(pid) : NaN;
        const targetBefore = await steadyRss(targetOf[path].proc.pid!);
        const start = nowMs();
        const sessions = await Promise.all(Array.from({ length: counts.sessions }, () => openOne(path)));
        const wallMs = nowMs() - start;
        await sleep(counts.settleMs);
        const after = pid ? await steadyRss(pid) : NaN;
        const targetAfter = await steadyRss(targetOf[path].proc.pid!);
        await closeAll();
        await sleep(counts.settleMs);
        const closed = pid ? await steadyRss(pid) : NaN;
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
    const n = counts.sessions;
    const summary = (path: SessionPath) => {
      const r = results[path];
      const first = r.proxyRss[0]!;
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
        targetBytesPerSession: (r.targetRss[0]!.after - r.targetRss[0]!.before) / n,
        targetBytesPerSessionPerRound: r.targetRss.map((x) => Math.round((x.after - x.before) / n)),
      };
    };
    return { sessions: n, rounds: counts.rounds, settleMs: counts.settleMs, paths: Object.fromEntries(paths.map((p) => [p, summary(p)])) as Record<SessionPath, ReturnType<typeof summary>> };
  } finally {
    await Promise.all(open.map((c) => c.close()));
    for (const child of children.reverse()) await child.stop();
    await Promise.all([tDirect, tRelay, tBroker].map((t) => t!.stop()));
  }
}
