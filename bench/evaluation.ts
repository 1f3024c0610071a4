// Section 5 of `npm run bench`: the cost of an evaluation through Loupe's interpreter (broker-side, reads by
// Runtime.getProperties) against V8's own (Debugger.evaluateOnCallFrame with throwOnSideEffect and a
// timeout, as the gate forwards it), on the same paused frame of test/fixtures/eval-app.js, over one
// TCP_QUICKACK connection (as the broker's target link). Rounds interleave the variants. Variants:
//   V8        evaluateOnCallFrame, one round trip;
//   Loupe     the interpreter with a fresh reader (no cache: the first evaluation in a pause);
//   Loupe, scopes read at pause: a fresh reader whose prefetchScopes(frame) ran as the pause arrived (the
//             session's setup: the reads overlap the client rendering the pause), timed from the expression;
//   Loupe ↻   the interpreter with the pause's reader (cache warm: watch expressions re-evaluated).
// Run alone: node --import tsx bench/evaluation.ts
import { join } from 'node:path';
import type { Protocol } from 'devtools-protocol';
import { defaultEvalBudget, evaluateLoupe, redactionContextOf, TargetReader } from '../broker/eval';
import { Spend } from '../broker/eval/budget';
import { compileRedaction, defaultPatterns, defaultSensitiveNames, Redactor } from '../broker/policy/redact';
import { startTarget } from '../test/support/target';
import { RttClient } from './lib/rttClient';
import { nowMs, summarize, type Summary } from './lib/stats';

export const evaluationExpressions = ['order.customer.name', 'items.map(i => i.price)'] as const;

export interface EvaluationCounts {
  rounds: number;
  perRound: number;
  warmup: number;
}

export interface EvaluationRow {
  expression: string;
  v8: Summary;
  loupe: Summary;
  loupeScoped: Summary;
  loupeWarm: Summary;
  /** Reads per evaluation with a fresh reader. */
  reads: number;
}

export async function benchEvaluation(counts: EvaluationCounts = { rounds: 5, perRound: 60, warmup: 30 }): Promise<{ rows: EvaluationRow[]; counts: EvaluationCounts }> {
  const target = await startTarget(join(__dirname, '..', 'test', 'fixtures', 'eval-app.js'));
  const client = await RttClient.connect(target.wsUrl, { quickAck: true });
  try {
    let paused: ((frame: Protocol.Debugger.CallFrame) => void) | undefined;
    const frameReady = new Promise<Protocol.Debugger.CallFrame>((resolve) => (paused = resolve));
    client.onEvent = (text) => {
      if (text.startsWith('{"method":"Debugger.paused"')) paused?.(JSON.parse(text).params.callFrames[0]);
    };
    await client.call('Runtime.enable');
    await client.call('Debugger.enable');
    // The inspector listens before the script has run: wait for its `run` to exist, or the pause never comes.
    for (const deadline = nowMs() + 10_000; ;) {
      const probe = (await client.call('Runtime.evaluate', { expression: 'typeof run', returnByValue: true })) as { result?: { value?: unknown } };
      if (probe.result?.value === 'function') break;
      if (nowMs() > deadline) throw new Error('section 5: test/fixtures/eval-app.js never defined run()');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await client.call('Runtime.evaluate', { expression: 'setTimeout(run, 0), 1' });
    const frame = await Promise.race([frameReady, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('section 5: the target did not pause in run() within 10 s')), 10_000).unref())]);
    client.onEvent = undefined;
    const send = (method: string, params: Record<string, unknown>) => client.call(method, params);
    const redaction = redactionContextOf(new Redactor(compileRedaction(defaultSensitiveNames, defaultPatterns)));
    const warmReader = new TargetReader(send);
    const variants = {
      v8: (expression: string) => client.call('Debugger.evaluateOnCallFrame', { callFrameId: frame.callFrameId, expression, throwOnSideEffect: true, timeout: 1000, silent: true }),
      loupe: (expression: string) => evaluateLoupe(expression, { reader: new TargetReader(send), frame, redaction }),
      loupeScoped: async (expression: string) => evaluateLoupe(expression, { reader: scopedReaders.shift()!, frame, redaction }),
      loupeWarm: (expression: string) => evaluateLoupe(expression, { reader: warmReader, frame, redaction }),
    };
    // Readers whose scope reads completed before the timed evaluation starts, as at a pause.
    const scopedReaders: TargetReader[] = [];
    const prepare = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const reader = new TargetReader(send);
        reader.prefetchScopes(frame);
        await reader.getProperties(frame.scopeChain[0]!.object.objectId!, new Spend(defaultEvalBudget, nowMs));
        scopedReaders.push(reader);
      }
    };
    const rows: EvaluationRow[] = [];
    for (const expression of evaluationExpressions) {
      const samples: Record<keyof typeof variants, number[]> = { v8: [], loupe: [], loupeScoped: [], loupeWarm: [] };
      const names = Object.keys(variants) as (keyof typeof variants)[];
      await prepare(counts.warmup);
      for (const name of names) for (let i = 0; i < counts.warmup; i++) await variants[name](expression);
      for (let round = 0; round < counts.rounds; round++) {
        const order = names.map((_, i) => names[(i + round) % names.length]!);
        for (const name of order) {
          if (name === 'loupeScoped') await prepare(counts.perRound);
          for (let i = 0; i < counts.perRound; i++) {
            const start = nowMs();
            const outcome = await variants[name](expression);
            samples[name].push(nowMs() - start);
            if (name !== 'v8' && (outcome as { kind?: string }).kind !== 'value') throw new Error(`${expression}: ${JSON.stringify(outcome)}`);
          }
        }
      }
      const once = await variants.loupe(expression);
      rows.push({ expression, v8: summarize(samples.v8), loupe: summarize(samples.loupe), loupeScoped: summarize(samples.loupeScoped), loupeWarm: summarize(samples.loupeWarm), reads: once.reads });
    }
    return { rows, counts };
  } finally {
    await client.close();
    await target.stop();
  }
}

const fmt = (x: number) => (x >= 10 ? x.toFixed(1) : x.toFixed(3));

/** The table rows as scripts/bench.mjs prints them. */
export function evaluationTable(result: { rows: EvaluationRow[] }): string[][] {
  return result.rows.map((r) => [
    r.expression,
    `${fmt(r.v8.median)} / ${fmt(r.v8.p99)}`,
    `${fmt(r.loupe.median)} / ${fmt(r.loupe.p99)}`,
    `${(r.loupe.median / r.v8.median).toFixed(2)}×`,
    `${fmt(r.loupeScoped.median)} / ${fmt(r.loupeScoped.p99)}`,
    `${(r.loupeScoped.median / r.v8.median).toFixed(2)}×`,
    `${fmt(r.loupeWarm.median)} / ${fmt(r.loupeWarm.p99)}`,
    `${(r.loupeWarm.median / r.v8.median).toFixed(2)}×`,
    String(r.reads),
  ]);
}

export const evaluationHeaders = ['expression (paused frame)', 'V8 ms med / p99', 'Loupe ms med / p99', 'vs V8', 'Loupe, scopes read at pause', 'vs V8', 'Loupe, warm reader', 'vs V8', 'reads'];

if (require.main === module) {
  benchEvaluation().then(
    (result) => {
      const rows = [evaluationHeaders, ...evaluationTable(result)];
      const widths = evaluationHeaders.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
      for (const row of rows) process.stdout.write(row.map((c, i) => c.padEnd(widths[i]!)).join('  ') + '\n');
      process.exit(0);
    },
    (error) => {
      process.stderr.write(`${(error as Error).stack}\n`);
      process.exit(1);
    },
  );
}
