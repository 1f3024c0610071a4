// Where a broker round trip's time goes: an in-process broker (test/support/testBroker), one target,
// N timed round trips, with the broker's WAL appends timed from the outside (no broker change).
// Run with a CPU profile:
//   node --cpu-prof --cpu-prof-dir=/tmp/loupe-prof --import tsx bench/profile.ts [N] [--tmpfs]
//   node bench/lib/summarizeProfile.mjs --window=<printed> /tmp/loupe-prof/<main thread file>.cpuprofile
// --tmpfs puts the broker's state dir (WAL, local store) on /dev/shm, leaving only the software cost.
// --v8 holds a grant with evaluation: v8, as section 1's (d): V8 answers evaluate (the default grant's is Loupe's interpreter).
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { basePolicy, startTestBroker } from '../test/support/testBroker';
import { startTarget } from '../test/support/target';
import type { WalRecord } from '../broker/audit/wal';
import { WalWriter } from '../broker/audit/walWriter';
import { RttClient } from './lib/rttClient';
import { nowMs, summarize } from './lib/stats';

const n = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 1500);
const tmpfs = process.argv.includes('--tmpfs');
const v8 = process.argv.includes('--v8');
const fmt = (s: { median: number; p99: number }) => `median ${s.median.toFixed(3)} ms, p99 ${s.p99.toFixed(3)} ms`;

async function main(): Promise<void> {
  const target = await startTarget(join(__dirname, 'fixtures', 'target.js'));
  const stateDir = tmpfs ? mkdtempSync('/dev/shm/loupe-profile-') : undefined;
  const policy = basePolicy(target.inspector);
  if (v8) policy.targets.app.access = [{ role: 'dev', modes: ['pause', 'snapshot'], evaluation: ['loupe', 'v8'], maxDuration: '10m' }];
  const tb = await startTestBroker(policy, stateDir ? { stateDir } : {});
  try {
    const wal = tb.broker.audit.wal;
    const appendMs: number[] = [];
    let recording = false;
    // The WAL's commits, timed around its writer thread's write (one write, and its sync, per group commit).
    const writeMs: number[] = [];
    const commitBytes: number[] = [];
    const writerWrite = WalWriter.prototype.write;
    WalWriter.prototype.write = function (this: WalWriter, ...a: Parameters<WalWriter['write']>) {
      const start = nowMs();
      const written = writerWrite.apply(this, a);
      if (recording) {
        commitBytes.push(a[2]);
        if (typeof written === 'number') writeMs.push(nowMs() - start);
        else
          void written.then(
            () => writeMs.push(nowMs() - start),
            () => undefined,
          );
      }
      return written;
    };
    const original = wal.append.bind(wal);
    wal.append = (record: WalRecord, ...rest: unknown[]) => {
      const start = nowMs();
      const done = (original as (r: WalRecord, ...a: unknown[]) => Promise<void>)(record, ...rest);
      if (recording && record.t === 'event')
        void done.then(
          () => appendMs.push(nowMs() - start),
          () => undefined,
        );
      return done;
    };
    const grant = await tb.grant('dev', ['devs'], v8 ? ({ evaluation: 'v8' } as Record<string, string>) : {});
    const client = await RttClient.connect(grant.attachUrl, { headers: { authorization: `Bearer ${grant.token}` } });
    await client.call('Debugger.enable');
    const { result } = await client.call('Runtime.evaluate', { expression: 'bigObject' });
    for (let i = 0; i < 100; i++) await client.timed('Runtime.evaluate', { expression: '1' });
    recording = true;
    const evaluate: number[] = [];
    const t0 = nowMs();
    const windowStartUs = Math.round(t0 * 1000);
    for (let i = 0; i < n; i++) evaluate.push(await client.timed('Runtime.evaluate', { expression: '1' }));
    const evaluateWal = summarize(appendMs.splice(0));
    const evaluateEndUs = Math.round(nowMs() * 1000);
    const getProperties: number[] = [];
    for (let i = 0; i < n; i++) getProperties.push(await client.timed('Runtime.getProperties', { objectId: result.objectId, ownProperties: true }));
    const getPropertiesWal = summarize(appendMs.splice(0));
    const wall = nowMs() - t0;
    const windowEndUs = Math.round(nowMs() * 1000);
    recording = false;
    process.stdout.write(
      `in-process broker${tmpfs ? ' (state dir on tmpfs)' : ''}${v8 ? ', grant with evaluation: v8' : ''}, ${n} round trips each (${(wall / 1000).toFixed(1)} s):\n` +
        `  Runtime.evaluate       RTT ${fmt(summarize(evaluate))}; WAL append→durable per record ${fmt(evaluateWal)} (${evaluateWal.n} records, 2 per RTT, serial)\n` +
        `  Runtime.getProperties  RTT ${fmt(summarize(getProperties))}; WAL append→durable per record ${fmt(getPropertiesWal)} (${getPropertiesWal.n} records)\n` +
        `  inside the WAL, per group commit (write and sync on the writer thread): ${fmt(summarize(writeMs))}, median ${summarize(commitBytes).median} bytes (${writeMs.length} commits)\n` +
        `  measured window for the profile summary: --window=${windowStartUs},${windowEndUs} (evaluate alone: --window=${windowStartUs},${evaluateEndUs}; getProperties alone: --window=${evaluateEndUs},${windowEndUs})\n`,
    );
    await client.close();
  } finally {
    await tb.close();
    await tb.broker.audit.stop();
    await target.stop();
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`profile failed: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
