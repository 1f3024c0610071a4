// Section 6 of `npm run bench`: several brokers, one truth. Grants issued per second and attach latency
//   (a) through one broker with the state in its files (the embedded default), and
//   (b) through three replicas on one PostgreSQL database (state: { postgres: { url: DATABASE_URL } }): each grant
//       is requested from one replica and attached through the next, as a load balancer spreads a client's calls.
// Every broker is a process of its own (node dist/cli.js broker), on one target, sharing one local audit store,
// trusting one identity issuer (test/support/replicas.ts). Grants: `grants` requests, `concurrency` in flight,
// spread over the replicas; grants/s = requests / wall. Attach: from the WebSocket upgrade sent to the socket
// open, then Debugger.enable answered; one session at a time, closed before the next. Rounds are interleaved,
// (a) then (b), then (b) then (a). Goal: attach median through the replicas within 1.5× of the single broker's.
import { join } from 'node:path';
import { freshDatabase } from '../test/support/postgres';
import { startReplicas, type Replica, type ReplicaSet } from '../test/support/replicas';
import { startTarget } from '../test/support/target';
import { RttClient } from './lib/rttClient';
import { nowMs, summarize } from './lib/stats';

export interface ReplicaCounts {
  rounds: number;
  /** Grant requests per variant and round. */
  grants: number;
  concurrency: number;
  /** Attaches per variant and round. */
  attaches: number;
}

type Variant = 'single' | 'replicas';
export const replicaVariantNames: Record<Variant, string> = {
  single: '(a) one broker, state in files',
  replicas: '(b) three replicas on PostgreSQL',
};

async function grantOn(replica: Replica, identity: string): Promise<{ grantId: string; token: string }> {
  const res = await replica.api('POST', '/v1/grants', identity, { target: 'app', mode: 'pause', durationSeconds: 600, reason: 'benchmark' });
  if (res.status !== 201) throw new Error(`grant refused by ${replica.name}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

export async function benchReplicas(scratch: string, counts: ReplicaCounts, log: (line: string) => void) {
  const databaseUrl = process.env.DATABASE_URL;
  if (!databaseUrl) {
    log('section 8: no DATABASE_URL (scripts/bench.mjs starts PostgreSQL unless --no-postgres): skipped');
    return { skipped: 'no DATABASE_URL in the environment (PostgreSQL not started)' };
  }
  const target = await startTarget(join(__dirname, 'fixtures', 'target.js'));
  const sets: Partial<Record<Variant, ReplicaSet>> = {};
  try {
    const policy = {
      roles: { dev: { groups: ['devs'] } },
      targets: { app: { inspector: target.inspector, access: [{ role: 'dev', modes: ['pause', 'snapshot'], maxDuration: '10m' }] } },
    };
    const audit = (dir: string) => ({ store: 'local', dir: join(scratch, dir) });
    log('section 8: starting one broker (state in files) and three replicas on PostgreSQL (dist/cli.js)');
    sets.single = await startReplicas({ names: ['single'], config: { ...policy, audit: audit('replicas-audit-single') } });
    // A database of its own: the server is shared with the tests, whose databases hold other schemas.
    const state = { postgres: { url: await freshDatabase('loupe_bench', databaseUrl) } };
    sets.replicas = await startReplicas({
      names: ['a', 'b', 'c'],
      config: { ...policy, audit: audit('replicas-audit-shared'), state },
      perReplica: (name) => ({ state: { ...state, replica: name } }),
    });
    const identity: Record<Variant, string> = { single: await sets.single.token('dev', ['devs']), replicas: await sets.replicas.token('dev', ['devs']) };

    const samples: Record<Variant, { grantMs: number[]; grantsPerSecond: number[]; attachMs: number[]; enableMs: number[] }> = {
      single: { grantMs: [], grantsPerSecond: [], attachMs: [], enableMs: [] },
      replicas: { grantMs: [], grantsPerSecond: [], attachMs: [], enableMs: [] },
    };
    const measure = async (variant: Variant) => {
      const replicas = sets[variant]!.replicas;
      const s = samples[variant];
      // Grants: `concurrency` workers, each request to the next replica in turn.
      let next = 0;
      const start = nowMs();
      await Promise.all(
        Array.from({ length: counts.concurrency }, async () => {
          while (next < counts.grants) {
            const i = next++;
            const t0 = nowMs();
            await grantOn(replicas[i % replicas.length]!, identity[variant]);
            s.grantMs.push(nowMs() - t0);
          }
        }),
      );
      s.grantsPerSecond.push(counts.grants / ((nowMs() - start) / 1000));
      // Attaches: granted by one replica, attached through the next (the same one for a single broker).
      for (let i = 0; i < counts.attaches; i++) {
        const grant = await grantOn(replicas[i % replicas.length]!, identity[variant]);
        const through = replicas[(i + 1) % replicas.length]!;
        const t0 = nowMs();
        const client = await RttClient.connect(`${through.url.replace(/^http/, 'ws')}/v1/attach/${grant.grantId}`, { headers: { authorization: `Bearer ${grant.token}` } });
        const t1 = nowMs();
        await client.call('Debugger.enable');
        s.attachMs.push(t1 - t0);
        s.enableMs.push(nowMs() - t1);
        await client.close();
      }
    };
    for (let round = 0; round < counts.rounds; round++) {
      const order: Variant[] = round % 2 === 0 ? ['single', 'replicas'] : ['replicas', 'single'];
      for (const variant of order) {
        log(`section 8: round ${round + 1}/${counts.rounds}: ${replicaVariantNames[variant]}`);
        await measure(variant);
      }
    }
    const variants = Object.fromEntries(
      (Object.keys(samples) as Variant[]).map((v) => [
        v,
        {
          name: replicaVariantNames[v],
          replicas: sets[v]!.replicas.length,
          grantsPerSecond: summarize(samples[v].grantsPerSecond),
          grantsPerSecondPerRound: samples[v].grantsPerSecond,
          grantMs: summarize(samples[v].grantMs),
          attachMs: summarize(samples[v].attachMs),
          enableMs: summarize(samples[v].enableMs),
        },
      ]),
    );
    return { counts, variants };
  } finally {
    await Promise.all(Object.values(sets).map((set) => set.close()));
    await target.stop();
  }
}
