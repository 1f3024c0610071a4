// Benchmark: 20 live sessions evaluating while 200 attaches with bad grant tokens arrive at once.
// Prints the sessions' evaluation latency (p50/p99) without and with the flood, and how fast the bad
// attaches were answered. Run: node --import tsx scripts/bench/attachFlood.ts
import { badAttaches, evaluateFor, floodFromChild } from '../../test/support/attachFlood';
import { startTarget } from '../../test/support/target';
import { basePolicy, startTestBroker } from '../../test/support/testBroker';
import type { CdpClient } from '../../test/support/cdpClient';

const sessions = Number(process.env.SESSIONS ?? 20);
const flood = Number(process.env.FLOOD ?? 200);
const seconds = Number(process.env.SECONDS ?? 3);
/** Each session evaluates once per PACE_MS (0: back to back, which saturates the broker). */
const paceMs = Number(process.env.PACE_MS ?? 50);

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : NaN;
};

async function main() {
  const target = await startTarget();
  const broker = await startTestBroker(basePolicy(target.inspector));
  try {
    const clients: CdpClient[] = [];
    for (let i = 0; i < sessions; i++) clients.push((await broker.attach()).client);
    await evaluateFor(clients, 500, paceMs);
    const quiet = await evaluateFor(clients, seconds * 1000, paceMs);
    // The attacker is another process, as in production: its handshakes do not run on the broker's event loop.
    const attacker = await floodFromChild(await badAttaches(await broker.grant('mallory', ['devs']), 'mallory', flood));
    const [loud, answers] = await Promise.all([evaluateFor(clients, seconds * 1000, paceMs), attacker.fire()]);
    attacker.stop();
    const answered = answers.filter((a) => a.ms < 1000).length;
    const statuses = Object.entries(answers.reduce<Record<number, number>>((m, a) => ((m[a.status] = (m[a.status] ?? 0) + 1), m), {}));
    console.log(`sessions ${sessions} (one evaluation per ${paceMs} ms each), bad attaches ${flood}`);
    console.log(`evaluations without flood: n=${quiet.length} p50=${pct(quiet, 50).toFixed(1)} ms p99=${pct(quiet, 99).toFixed(1)} ms`);
    console.log(
      `evaluations with flood:    n=${loud.length} p50=${pct(loud, 50).toFixed(1)} ms p99=${pct(loud, 99).toFixed(1)} ms (ratio p50 ${(pct(loud, 50) / pct(quiet, 50)).toFixed(2)}, p99 ${(pct(loud, 99) / pct(quiet, 99)).toFixed(2)})`,
    );
    console.log(
      `bad attaches: answered within 1 s ${answered}/${flood}; p50=${pct(
        answers.map((a) => a.ms),
        50,
      ).toFixed(1)} ms p99=${pct(
        answers.map((a) => a.ms),
        99,
      ).toFixed(1)} ms max=${Math.max(...answers.map((a) => a.ms)).toFixed(1)} ms; statuses ${statuses.map(([s, n]) => `${s}:${n}`).join(' ')}`,
    );
    for (const c of clients) await c.close();
  } finally {
    await broker.close();
    await target.stop();
  }
}

if (require.main === module)
  void main().then(
    () => process.exit(0),
    (err) => (console.error(err), process.exit(1)),
  );
