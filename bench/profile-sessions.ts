// Where the time of opening sessions goes: the broker as in section 4 (node dist/cli.js broker, under --cpu-prof),
// one target, R rounds of N sessions opened at once (grant, attach, Debugger.enable each), all closed between rounds.
//   node --import tsx bench/profile-sessions.ts [N=100] [R=3] [--prof-dir=/tmp/loupe-prof-sessions] [--no-prof]
// (--no-prof: no profiler, for the broker's CPU per session and the rounds' times as they are without one)
//   node bench/lib/summarizeProfile.mjs --window=<printed> <prof-dir>/<the broker's file>.cpuprofile
// (build dist/ first: node esbuild.mjs)
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { basePolicy } from '../test/support/testBroker';
import { startTarget } from '../test/support/target';
import { grantAndAttach, mintIdentity, startBrokerProcess } from './lib/broker';
import type { RttClient } from './lib/rttClient';
import { nowMs, summarize } from './lib/stats';
import { cpuSeconds } from './throughput';

const numbers = process.argv
  .slice(2)
  .filter((a) => /^\d+$/.test(a))
  .map(Number);
const n = numbers[0] ?? 100;
const rounds = numbers[1] ?? 3;
const profDir = process.argv.find((a) => a.startsWith('--prof-dir='))?.slice(11) ?? '/tmp/loupe-prof-sessions';
const profile = !process.argv.includes('--no-prof');

async function main(): Promise<void> {
  const target = await startTarget(join(__dirname, 'fixtures', 'target.js'));
  const scratch = mkdtempSync(join(tmpdir(), 'loupe-profile-sessions-'));
  const broker = await startBrokerProcess(basePolicy(target.inspector), scratch, 'broker', profile ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : []);
  const brokerPid = broker.child.proc.pid!;
  try {
    const identity = mintIdentity(broker.configFile);
    const open = async () => {
      const t0 = nowMs();
      const s = await grantAndAttach(broker.url, identity, { mode: 'pause', reason: 'profile: opening sessions' });
      const t1 = nowMs();
      await s.client.call('Debugger.enable', {}, 60_000);
      return { client: s.client, grantMs: s.grantMs, attachMs: s.attachMs, enableMs: nowMs() - t1, totalMs: nowMs() - t0 };
    };
    for (let i = 0; i < 5; i++) await (await open()).client.close();
    const fmt = (xs: number[]) => {
      const s = summarize(xs);
      return `${s.median.toFixed(1)} / ${s.p99.toFixed(1)}`;
    };
    const windowStart = process.hrtime.bigint() / 1000n;
    const openWindows: string[] = [];
    const walls: number[] = [];
    const cpuBefore = cpuSeconds(brokerPid);
    for (let round = 0; round < rounds; round++) {
      const start = nowMs();
      const openedFrom = process.hrtime.bigint() / 1000n;
      const sessions = await Promise.all(Array.from({ length: n }, open));
      const wall = nowMs() - start;
      openWindows.push(`${openedFrom},${process.hrtime.bigint() / 1000n}`);
      walls.push(wall);
      process.stdout.write(
        `round ${round + 1}: ${n} sessions in ${wall.toFixed(0)} ms; med/p99 grant ${fmt(sessions.map((s) => s.grantMs))}, attach ${fmt(sessions.map((s) => s.attachMs))}, enable ${fmt(sessions.map((s) => s.enableMs))} ms\n`,
      );
      await Promise.all(sessions.map((s) => (s.client as RttClient).close()));
      await new Promise((r) => setTimeout(r, 500));
    }
    const cpuMs = (cpuSeconds(brokerPid) - cpuBefore) * 1000;
    process.stdout.write(
      `rounds: median ${summarize(walls).median.toFixed(0)} ms per ${n} sessions; broker CPU (all threads, opening and closing) ${(cpuMs / (n * rounds)).toFixed(2)} ms per session\n`,
    );
    // The profile's timestamps are this clock's (CLOCK_MONOTONIC, µs): the rounds alone, without the broker's start.
    process.stdout.write(`window: --window=${windowStart},${process.hrtime.bigint() / 1000n}\n`);
    // Each round's opening alone (from the first request to the last Debugger.enable answer), for a closer look.
    process.stdout.write(`opening windows: ${openWindows.join(';')}\n`);
  } finally {
    await broker.child.stop(15_000);
    await target.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
  if (profile) process.stdout.write(`profile of the broker in ${profDir} (the largest new .cpuprofile)\n`);
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
