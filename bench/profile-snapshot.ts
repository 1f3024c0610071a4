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
import { TargetChannel } from '../broker/session/targetChannel';
import { basePolicy, startTestBroker } from '../test/support/testBroker';
import { markerLine, startTarget } from '../test/support/target';
import { RttClient } from './lib/rttClient';
import { nowMs, summarize } from './lib/stats';

const n = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 100);
const tmpfs = process.argv.includes('--tmpfs');
const expandFrames = Number(/--expand=(\d+)/.exec(process.argv.join(' '))?.[1] ?? 1);
const budget = /--budget=(\d+)/.exec(process.argv.join(' '))?.[1];
const fmt = (s: { median: number; p99: number }) => `median ${s.median.toFixed(3)} ms, p99 ${s.p99.toFixed(3)} ms`;

async function main(): Promise<void> {
  const file = join(__dirname, 'fixtures', 'pause-target.js');
  const target = await startTarget(file);
  const control = await RttClient.connect(target.wsUrl);
  const stateDir = tmpfs ? mkdtempSync('/dev/shm/loupe-profile-') : undefined;
  const base = basePolicy(target.inspector);
  const snapshot = { minIntervalMs: 0, maxCapturesPerMinute: 100000, maxCapturesPerBreakpoint: 100000, expandFrames, ...(budget ? { timeBudgetMs: Number(budget) } : {}) };
  const tb = await startTestBroker({ ...base, targets: { app: { ...base.targets.app, snapshot } } }, stateDir ? { stateDir } : {});
  // The session's target socket, watched from the outside: every frame sent (id, method) and read (answer id or
  // event), timed, so each hit reads as a timeline: Debugger.paused read → reads sent/answered → resume sent.
  const frames: { t: number; dir: 'out' | 'in'; id?: number; method?: string }[] = [];
  let recording = false;
  const proto = TargetChannel.prototype as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  const originals = { captureCommand: proto.captureCommand!, command: proto.command! };
  const patched = new WeakSet<object>();
  const wrap = (original: (...a: unknown[]) => Promise<unknown>) =>
    function (this: { context: { socket: any } }, ...args: unknown[]) {
      const socket = this.context.socket;
      if (!patched.has(socket)) {
        patched.add(socket);
        const send = socket.send.bind(socket);
        socket.send = (data: string, ...rest: unknown[]) => {
          const m = /^\{"id":(\d+),"method":"([^"]+)"/.exec(String(data));
          if (recording) frames.push({ t: nowMs(), dir: 'out', id: Number(m?.[1]), method: m?.[2] });
          return send(data, ...rest);
        };
        socket.prependListener('message', (data: Buffer) => {
          const head = data.toString('utf8', 0, 40);
          const id = /^\{"id":(\d+)/.exec(head)?.[1];
          const method = /^\{"method":"([^"]+)"/.exec(head)?.[1];
          if (recording) frames.push({ t: nowMs(), dir: 'in', ...(id ? { id: Number(id) } : {}), ...(method ? { method } : {}) });
        });
      }
      return original.apply(this, args);
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
    // Per hit: from the Debugger.paused read to the resume sent; reads sent, and read levels (a read sent after
    // an answer arrived, as opposed to alongside the first).
    const hits: { reads: number; toFirstRead: number; readsMs: number; lastAnswerToResume: number; resumeToLastAnswer: number; total: number; levels: number }[] = [];
    for (let i = 0; i < frames.length; i++) {
      if (frames[i]!.method !== 'Debugger.paused' || frames[i]!.dir !== 'in') continue;
      const t0 = frames[i]!.t;
      const outs: typeof frames = [];
      let resume: (typeof frames)[number] | undefined;
      let lastAnswer = t0;
      let levels = 0;
      let answeredSinceSend = true;
      const sentIds = new Set<number>();
      for (let j = i + 1; j < frames.length; j++) {
        const f = frames[j]!;
        if (f.dir === 'in' && f.method === 'Debugger.paused') break;
        if (resume) {
          // The resume goes right behind the last reads: their answers follow it.
          if (f.id !== undefined && sentIds.has(f.id)) lastAnswer = f.t;
          continue;
        }
        if (f.dir === 'out' && f.method === 'Debugger.resume') {
          resume = f;
          continue;
        }
        if (f.dir === 'out') {
          outs.push(f);
          sentIds.add(f.id!);
          if (answeredSinceSend) levels++;
          answeredSinceSend = false;
        } else if (f.id !== undefined && sentIds.has(f.id)) {
          lastAnswer = f.t;
          answeredSinceSend = true;
        }
      }
      if (!resume) continue;
      hits.push({
        reads: outs.length,
        toFirstRead: outs.length ? outs[0]!.t - t0 : NaN,
        readsMs: outs.length ? lastAnswer - outs[0]!.t : 0,
        lastAnswerToResume: resume.t - lastAnswer,
        resumeToLastAnswer: lastAnswer - resume.t,
        total: resume.t - t0,
        levels,
      });
    }
    process.stdout.write(
      `in-process broker${tmpfs ? ' (state dir on tmpfs)' : ''}, expandFrames ${expandFrames}${budget ? `, timeBudgetMs ${budget}` : ''}, ${n} hits 10 ms apart:\n` +
        `  pause inside the target        ${fmt(summarize(inside))}\n` +
        `  broker pauseMs                 ${fmt(summarize(captures.map((c) => c.pauseMs)))}; truncated ${captures.filter((c) => c.truncated).length}/${captures.length} (${[...new Set(captures.map((c) => c.truncated).filter(Boolean))].join('; ')})\n` +
        `  reads per capture              ${fmt(summarize(hits.map((h) => h.reads)))} (in ${fmt(summarize(hits.map((h) => h.levels)))} levels)\n` +
        `  paused read → first read sent  ${fmt(summarize(hits.map((h) => h.toFirstRead).filter(Number.isFinite)))}\n` +
        `  first read sent → last answer  ${fmt(summarize(hits.map((h) => h.readsMs)))}\n` +
        `  last answer → resume sent      ${fmt(summarize(hits.map((h) => h.lastAnswerToResume)))} (negative: the resume went first, with the reads)\n` +
        `  resume sent → last answer      ${fmt(summarize(hits.map((h) => h.resumeToLastAnswer)))} (V8 answers the reads, then resumes)\n` +
        `  paused read → resume sent      ${fmt(summarize(hits.map((h) => h.total)))}\n` +
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
