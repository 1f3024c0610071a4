// Section 2 of `npm run bench`: how long one breakpoint hit holds the target, measured INSIDE the target
// (bench/fixtures/pause-target.js times the breakpoint line with process.hrtime.bigint()), for
//   (0) no breakpoint: the floor of the measurement itself,
//   (a) a bare pause/resume: a direct CDP client with TCP_QUICKACK answering each Debugger.paused with
//       Debugger.resume at once, no capture (the baseline),
//   (a') the reads of (b)'s capture by a bare client: the same capture engine (captureFrames, (b)'s limits) over a
//       direct CDP link like (a)'s, with the resume sent as the broker sends it (right behind the last reads); no
//       broker, gate, redaction or record: the floor under (b),
//   (a'') the same for (c)'s reads (5 frames expanded): the floor under (c),
//   (b) a snapshot breakpoint through the broker, top frame expanded (expandFrames 1),
//   (c) the same with 5 frames expanded (expandFrames 5),
//   (b'') the top frame with its closure read too (closures: true, the module's scope here),
//   (b') (c') the same broker with its state dir (WAL, audit store) on tmpfs: not a durable setup, only to
//       split the disk's share from the software's,
//   (d) for comparison, a pause-mode breakpoint whose condition is always false: the broker checks it on each
//       pause (evaluateOnCallFrame, side-effect free) and resumes. The cost section 3 (d) pays per request.
//       The broker's pause budget for conditions is set to its maximum (limits.conditionBudgetMsPerSecond
//       1000) so the breakpoint is not suspended mid-measurement.
// Each variant has its own target process (a Debugger-enabled session sees every other session's pauses, and
// each one makes V8 serialise the paused call frames once more). The broker runs in this process
// (test/support/testBroker, policy per target: snapshot {minIntervalMs 0, maxCapturesPerMinute 100000,
// maxCapturesPerBreakpoint 100000, expandFrames 1 or 5, closures only in (b'')}); the broker resumes the target itself and sends
// Loupe.snapshotCaptured with its own pauseMs. A control session per target (direct, Debugger off) starts
// each burst of hits with Runtime.evaluate(`burst(n, gapMs)`, awaitPromise, returnByValue) and gets the
// target's own figures back. Rounds are interleaved, rotating the order, as in section 1.
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { markerLine, startTarget, type TargetProcess } from '../test/support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../test/support/testBroker';
import type { CdpClient } from '../test/support/cdpClient';
import { captureFrames, type PausedFrameInput } from '../broker/session/snapshot';
import { RttClient } from './lib/rttClient';
import { summarize, type Summary } from './lib/stats';

export const pauseFixture = join(__dirname, 'fixtures', 'pause-target.js');

export type PauseVariant = 'floor' | 'bare' | 'bareReads' | 'bareReads5' | 'snap1' | 'snap5' | 'snap1Closures' | 'snap1Mem' | 'snap5Mem' | 'cond';
export const pauseVariantNames: Record<PauseVariant, string> = {
  floor: '(0) no breakpoint (floor of the measurement)',
  bare: '(a) bare pause/resume, direct + QUICKACK',
  bareReads: "(a') (b)'s reads by a bare client, no broker",
  bareReads5: "(a'') (c)'s reads by a bare client, no broker",
  snap1: '(b) snapshot via broker, top frame (default)',
  snap5: '(c) snapshot via broker, 5 frames (asked)',
  snap1Closures: "(b'') snapshot, top frame and its closure (asked)",
  snap1Mem: "(b') snapshot, top frame, state on tmpfs",
  snap5Mem: "(c') snapshot, 5 frames, state on tmpfs",
  cond: '(d) false condition checked by broker',
};

export interface PauseCounts {
  rounds: number;
  perRound: number;
  warmup: number;
  gapMs: number;
}

interface Path {
  readonly variant: PauseVariant;
  readonly target: TargetProcess;
  readonly control: RttClient;
  /** The broker session's client (snapshot variants). */
  readonly session?: CdpClient;
  /** The bare variant's client. */
  readonly bare?: RttClient;
  /** The false-condition variant's broker session (pause mode). */
  readonly condition?: CdpClient;
  readonly samples: number[];
  readonly captures: { pauseMs: number; durationMs: number; bytes: number; truncated?: string; frames: number; expanded: number }[];
}

const snapshotLimits = (expandFrames: number, closures = false) => ({ minIntervalMs: 0, maxCapturesPerMinute: 100000, maxCapturesPerBreakpoint: 100000, expandFrames, closures });

async function burst(path: Path, n: number, gapMs: number): Promise<number[]> {
  const reply = await path.control.call('Runtime.evaluate', { expression: `burst(${n}, ${gapMs})`, awaitPromise: true, returnByValue: true }, 120_000);
  const values = reply.result?.value;
  if (!Array.isArray(values) || values.length !== n) throw new Error(`${path.variant}: burst returned ${JSON.stringify(reply).slice(0, 300)}`);
  return values as number[];
}

/** Waits until the broker session has sent `count` captures (they leave after the resume, so may trail the burst). */
async function capturesReach(path: Path, count: number, timeoutMs = 5000): Promise<void> {
  const started = Date.now();
  const have = () => path.session!.events.filter((e) => e.method === 'Loupe.snapshotCaptured').length;
  while (have() < count) {
    if (Date.now() - started > timeoutMs) {
      const throttled = path.session!.events.filter((e) => e.method === 'Loupe.snapshotThrottled').map((e) => e.params);
      throw new Error(`${path.variant}: ${have()} captures, expected ${count} (throttled: ${JSON.stringify(throttled).slice(0, 300)})`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function benchPause(scratch: string, counts: PauseCounts, tmpfsDir: string | undefined, log: (line: string) => void) {
  const line = markerLine(pauseFixture, 'hot');
  const variants: PauseVariant[] = ['floor', 'bare', 'bareReads', 'bareReads5', 'snap1', 'snap5', 'snap1Closures', ...(tmpfsDir ? (['snap1Mem', 'snap5Mem'] as const) : []), 'cond'];
  log(`section 2: starting ${variants.length} targets (${pauseFixture.split('/').pop()}, breakpoint on line ${line + 1}) and the broker${tmpfsDir ? 's' : ''} (in process)`);
  const targets = await Promise.all(variants.map(() => startTarget(pauseFixture)));
  const byVariant = new Map(variants.map((v, i) => [v, targets[i]!]));
  const brokers: TestBroker[] = [];
  const clients: { close(): Promise<unknown> }[] = [];
  const memDir = tmpfsDir ? mkdtempSync(join(tmpfsDir, 'loupe-bench-pause-')) : undefined;
  try {
    const policyFor = (one: TargetProcess, five: TargetProcess) => {
      const base = basePolicy(one.inspector);
      return {
        ...base,
        targets: { snap1: { ...base.targets.app, inspector: one.inspector, snapshot: snapshotLimits(1) }, snap5: { ...base.targets.app, inspector: five.inspector, snapshot: snapshotLimits(5) } },
      };
    };
    const diskPolicy = policyFor(byVariant.get('snap1')!, byVariant.get('snap5')!);
    // The budget only charges pauses that capture nothing (condition checks, throttled hits): (b) and (c) are unaffected.
    const disk = await startTestBroker(
      {
        ...diskPolicy,
        limits: { conditionBudgetMsPerSecond: 1000 },
        targets: {
          ...diskPolicy.targets,
          snap1Closures: { ...diskPolicy.targets.snap1, inspector: byVariant.get('snap1Closures')!.inspector, snapshot: snapshotLimits(1, true) },
          cond: basePolicy(byVariant.get('cond')!.inspector).targets.app,
        },
      },
      { stateDir: join(scratch, 'pause-broker'), keepRecords: false },
    );
    brokers.push(disk);
    const mem = memDir ? await startTestBroker(policyFor(byVariant.get('snap1Mem')!, byVariant.get('snap5Mem')!), { stateDir: memDir, keepRecords: false }) : undefined;
    if (mem) brokers.push(mem);

    const paths: Path[] = [];
    for (const variant of variants) {
      const target = byVariant.get(variant)!;
      const control = await RttClient.connect(target.wsUrl);
      clients.push(control);
      const path: { -readonly [K in keyof Path]: Path[K] } = { variant, target, control, samples: [], captures: [] };
      const breakpoint = { lineNumber: line, urlRegex: 'pause-target\\.js$' };
      if (variant === 'bare') {
        const bare = await RttClient.connect(target.wsUrl, { quickAck: true });
        clients.push(bare);
        // Resume at once, without parsing: the fastest answer a client can give.
        const resume = JSON.stringify({ id: 1_000_000, method: 'Debugger.resume', params: {} });
        bare.onEvent = (text) => {
          if (text.startsWith('{"method":"Debugger.paused"')) bare.socket.send(resume);
        };
        await bare.call('Debugger.enable');
        const set = await bare.call('Debugger.setBreakpointByUrl', breakpoint);
        if (!set.locations?.length) throw new Error('bare: breakpoint did not resolve');
        path.bare = bare;
      } else if (variant === 'bareReads' || variant === 'bareReads5') {
        const bare = await RttClient.connect(target.wsUrl, { quickAck: true });
        clients.push(bare);
        // As the broker's target link: no Nagle on our side either.
        (bare.socket as unknown as { _socket: { setNoDelay(on: boolean): void } })._socket.setNoDelay(true);
        const limits = disk.config.targets[variant === 'bareReads' ? 'snap1' : 'snap5']!.snapshot;
        const read = (objectId: string, preview: boolean) => bare.call('Runtime.getProperties', { objectId, ownProperties: true, ...(preview ? { generatePreview: true } : {}) });
        const resume = JSON.stringify({ id: 1_000_000, method: 'Debugger.resume', params: {} });
        bare.onEvent = (text) => {
          if (!text.startsWith('{"method":"Debugger.paused"')) return;
          const frames = (JSON.parse(text) as { params: { callFrames: PausedFrameInput[] } }).params.callFrames;
          // As the broker does: the resume goes right behind the last reads (or at the end, if the capture did not send it).
          let resumed = false;
          const resumeOnce = () => {
            if (!resumed) bare.socket.send(resume);
            resumed = true;
          };
          void captureFrames(frames, new Map(), read, limits, { resume: resumeOnce }).finally(resumeOnce);
        };
        await bare.call('Debugger.enable');
        const set = await bare.call('Debugger.setBreakpointByUrl', breakpoint);
        if (!set.locations?.length) throw new Error(`${variant}: breakpoint did not resolve`);
        path.bare = bare;
      } else if (variant === 'cond') {
        const { client } = await disk.attach({ mode: 'pause', target: 'cond' });
        clients.push(client);
        await client.call('Debugger.enable');
        const set = await client.call('Debugger.setBreakpointByUrl', { ...breakpoint, condition: 'user.tier === "platinum"' });
        if (!set.locations?.length) throw new Error('cond: breakpoint did not resolve');
        path.condition = client;
      } else if (variant !== 'floor') {
        const broker = variant.endsWith('Mem') ? mem! : disk;
        const { client } = await broker.attach({ mode: 'snapshot', target: variant === 'snap1Closures' ? 'snap1Closures' : variant.startsWith('snap1') ? 'snap1' : 'snap5' });
        clients.push(client);
        await client.call('Debugger.enable');
        const set = await client.call('Debugger.setBreakpointByUrl', breakpoint);
        if (!set.locations?.length) throw new Error(`${variant}: breakpoint did not resolve`);
        path.session = client;
      }
      paths.push(path);
    }

    const take = async (path: Path, n: number, keep: boolean) => {
      const before = path.session ? path.session.events.filter((e) => e.method === 'Loupe.snapshotCaptured').length : 0;
      const samples = await burst(path, n, counts.gapMs);
      if (path.session) {
        await capturesReach(path, before + n);
        if (keep) {
          for (const e of path.session.events.filter((x) => x.method === 'Loupe.snapshotCaptured').slice(before, before + n)) {
            const c = e.params;
            path.captures.push({
              pauseMs: c.pauseMs,
              durationMs: c.durationMs,
              bytes: c.bytes,
              truncated: c.truncated,
              frames: c.frames.length,
              expanded: c.frames.filter((f: { scopes?: unknown }) => f.scopes).length,
            });
          }
        }
        // The client keeps every event; drop the measured ones so memory stays flat.
        path.session.events.splice(0);
      }
      if (path.condition) {
        const seen = path.condition.events.filter((e) => /^Debugger\.paused$|^Loupe\.breakpointSuspended$/.test(e.method ?? ''));
        if (seen.length > 0) throw new Error(`cond: the client saw ${seen.map((e) => e.method).join(', ')}: ${JSON.stringify(seen[0]!.params).slice(0, 300)}`);
        path.condition.events.splice(0);
      }
      if (keep) path.samples.push(...samples);
    };

    log(`section 2: warm-up (${counts.warmup} hits per variant)`);
    for (const path of paths) await take(path, counts.warmup, false);
    for (let round = 0; round < counts.rounds; round++) {
      const order = paths.map((_, i) => paths[(i + round) % paths.length]!);
      for (const path of order) await take(path, counts.perRound, true);
      log(`section 2: round ${round + 1}/${counts.rounds} done`);
    }
    const check = (path: Path) => {
      const truncated = path.captures.filter((c) => c.truncated);
      return {
        name: pauseVariantNames[path.variant],
        pauseMs: summarize(path.samples),
        ...(path.session
          ? {
              brokerPauseMs: summarize(path.captures.map((c) => c.pauseMs)),
              captureMs: summarize(path.captures.map((c) => c.durationMs)),
              bytes: summarize(path.captures.map((c) => c.bytes)),
              framesCaptured: summarize(path.captures.map((c) => c.frames)).median,
              framesExpanded: summarize(path.captures.map((c) => c.expanded)).median,
              captures: path.captures.length,
              truncated: truncated.length,
              truncatedReasons: [...new Set(truncated.map((c) => c.truncated))],
            }
          : {}),
      };
    };
    return {
      line: line + 1,
      gapMs: counts.gapMs,
      variants: Object.fromEntries(paths.map((p) => [p.variant, check(p)])) as Record<PauseVariant, ReturnType<typeof check> & { brokerPauseMs?: Summary }>,
    };
  } finally {
    for (const c of clients) await c.close().catch(() => undefined);
    for (const b of brokers) {
      await b.close().catch(() => undefined);
      await b.broker.audit.stop().catch(() => undefined);
    }
    await Promise.all(targets.map((t) => t.stop()));
    if (memDir) rmSync(memDir, { recursive: true, force: true });
  }
}
