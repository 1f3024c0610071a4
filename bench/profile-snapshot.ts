// Where a snapshot hit's pause goes (bench section 2, when it is far off its goal): an in-process broker, one
// target (bench/fixtures/pause-target.js), a snapshot breakpoint, N hits; the broker's own commands to the
// target are timed from the outside (no broker change) by wrapping DebugSession's command() and the target
// socket of the session:
//   before send  = command() called → frame written to the target socket (for command(), the broker.request
//                  record made durable first: WAL append, one write + fdatasync when alone; a capture's reads
//                  and its resume go through captureCommand(), sent at once)
//   target RTT   = frame written → answer read from the target socket (reads are pipelined, so this
//                  includes waiting behind the reads sent before it)
//   after answer = answer read → command() resolved (parse, broker.response record)
// Usage: node --import tsx bench/profile-snapshot.ts [N] [--tmpfs] [--expand=5] [--budget=1000]
//   (--budget raises the capture time budget so the whole capture is seen, not just its first 10 ms)
// Add --cpu-prof --cpu-prof-dir=/tmp/loupe-prof before --import for a CPU profile; summarise it with
//   node bench/lib/summarizeProfile.mjs --window=<printed> /tmp/loupe-prof/<file>.cpuprofile
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { DebugSession } from '../broker/session/debugSession';
import { basePolicy, startTestBroker } from '../test/support/testBroker';
import { markerLine, startTarget } from '../test/support/target';
import { RttClient } from './lib/rttClient';
import { nowMs, summarize } from './lib/stats';

const n = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 100);
const tmpfs = process.argv.includes('--tmpfs');
const expandFrames = Number(/--expand=(\d+)/.exec(process.argv.join(' '))?.[1] ?? 1);
const budget = /--budget=(\d+)/.exec(process.argv.join(' '))?.[1];
const fmt = (s: { median: number; p99: number }) => `median ${s.median.toFixed(3)} ms, p99 ${s.p99.toFixed(3)} ms`;

interface Timed {
  method: string;
  called: number;
  sent?: number;
  answered?: number;
  resolved?: number;
}

async function main(): Promise<void> {
  const file = join(__dirname, 'fixtures', 'pause-target.js');
  const target = await startTarget(file);
  const control = await RttClient.connect(target.wsUrl);
  const stateDir = tmpfs ? mkdtempSync('/dev/shm/loupe-profile-') : undefined;
  const base = basePolicy(target.inspector);
  const snapshot = { minIntervalMs: 0, maxCapturesPerMinute: 100000, maxCapturesPerBreakpoint: 100000, expandFrames, ...(budget ? { timeBudgetMs: Number(budget) } : {}) };
  const tb = await startTestBroker({ ...base, targets: { app: { ...base.targets.app, snapshot } } }, stateDir ? { stateDir } : {});
  const timed: Timed[] = [];
  const byTargetId = new Map<number, Timed>();
  let recording = false;
  // Both ways the session sends its own commands: command() (recorded first) and captureCommand() (a capture's
  // reads and its resume, recorded once in the capture's event).
  const proto = DebugSession.prototype as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  const originals = { command: proto.command!, captureCommand: proto.captureCommand! };
  const patched = new WeakSet<object>();
  const wrap = (original: (...a: unknown[]) => Promise<unknown>) =>
    function (this: { options: { targetSocket: any }; nextTargetId: number }, ...args: unknown[]) {
      const socket = this.options.targetSocket;
      if (!patched.has(socket)) {
        patched.add(socket);
        const send = socket.send.bind(socket);
        socket.send = (data: string, ...rest: unknown[]) => {
          const id = Number(/^\{"id":(\d+)/.exec(String(data))?.[1]);
          const t = byTargetId.get(id);
          if (t) t.sent = nowMs();
          return send(data, ...rest);
        };
        socket.prependListener('message', (data: Buffer) => {
          const id = Number(/^\{"id":(\d+)/.exec(data.toString('utf8', 0, 24))?.[1]);
          const t = byTargetId.get(id);
          if (t) t.answered = nowMs();
        });
      }
      const t: Timed = { method: String(args[0]), called: nowMs() };
      byTargetId.set(this.nextTargetId, t);
      if (recording) timed.push(t);
      const result = original.apply(this, args);
      void result.then(
        () => (t.resolved = nowMs()),
        () => (t.resolved = nowMs()),
      );
      return result;
    };
  for (const [name, original] of Object.entries(originals)) proto[name] = wrap(original);
  try {
    const { client } = await tb.attach({ mode: 'snapshot' });
    await client.call('Debugger.enable');
    await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(file, 'hot'), urlRegex: 'pause-target\\.js$' });
    const burst = async (count: number) => (await control.call('Runtime.evaluate', { expression: `burst(${count}, 10)`, awaitPromise: true, returnByValue: true }, 120_000)).result.value as number[];
    await burst(20);
    await new Promise((r) => setTimeout(r, 300));
    client.events.splice(0);
    recording = true;
    const windowStartUs = Math.round(nowMs() * 1000);
    const inside = await burst(n);
    await new Promise((r) => setTimeout(r, 500));
    const windowEndUs = Math.round(nowMs() * 1000);
    recording = false;
    const captures = client.events.filter((e) => e.method === 'Loupe.snapshotCaptured').map((e) => e.params);
    const gets = timed.filter((t) => t.method === 'Runtime.getProperties' && t.sent && t.answered && t.resolved);
    const resumes = timed.filter((t) => t.method === 'Debugger.resume' && t.sent);
    process.stdout.write(
      `in-process broker${tmpfs ? ' (state dir on tmpfs)' : ''}, expandFrames ${expandFrames}${budget ? `, timeBudgetMs ${budget}` : ''}, ${n} hits 10 ms apart:\n` +
        `  pause inside the target        ${fmt(summarize(inside))}\n` +
        `  broker pauseMs                 ${fmt(summarize(captures.map((c) => c.pauseMs)))}; truncated ${captures.filter((c) => c.truncated).length}/${captures.length} (${[...new Set(captures.map((c) => c.truncated).filter(Boolean))].join('; ')})\n` +
        `  getProperties per capture      ${(gets.length / Math.max(1, captures.length)).toFixed(1)}\n` +
        `  per getProperties: before send ${fmt(summarize(gets.map((t) => t.sent! - t.called)))}\n` +
        `                     target RTT  ${fmt(summarize(gets.map((t) => t.answered! - t.sent!)))}\n` +
        `                     after answer ${fmt(summarize(gets.map((t) => t.resolved! - t.answered!)))}\n` +
        `  Debugger.resume: before send   ${fmt(summarize(resumes.map((t) => t.sent! - t.called)))}\n` +
        `  measured window for the profile summary: --window=${windowStartUs},${windowEndUs}\n`,
    );
    await client.close();
  } finally {
    Object.assign(proto, originals);
    await control.close();
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
