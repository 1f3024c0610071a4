/**
 * The one place where the broker evaluates in a session: the client's console, watch and hover expressions,
 * breakpoint conditions and logpoint parts in a paused frame. By default they are Loupe expressions, interpreted in
 * the broker (eval/: V8 only reads, taint decides what is secret); a grant with `evaluation: 'v8'` keeps V8's own
 * evaluation under its side-effect check and a timeout (redaction best-effort, after the fact). DebugSession picks
 * one of the two when the session starts (`frameEvaluation`).
 */
import type { Protocol } from 'devtools-protocol';
import type { BrokerLimits, TargetConfig } from '../config/types';
import type { Redactor } from '../policy/redact';
import { SessionEvaluator, type LoupeOutcome } from '../eval';
import { safeText, truncate, type LogTemplate } from '../gate/cdpGate';
import { conditionProbe } from '../gate/conditionCheck';
import type { TargetChannel } from './targetChannel';

/** A condition's verdict: false also when it could not be evaluated (`detail` says why). */
export interface ConditionVerdict {
  readonly value: boolean;
  readonly detail?: string;
  /** The value depends on this redacted field: the breakpoint must not decide a pause on it (it is disabled). */
  readonly tainted?: string;
  /** Loupe's cost of the verdict, for the record. */
  readonly reads?: number;
  readonly steps?: number;
}

/** A logpoint message, its parts evaluated within one budget; `tainted`: redacted fields whose marker it prints. */
export interface LogpointMessage {
  readonly message: string;
  readonly skippedParts: number;
  readonly tainted?: readonly string[];
}

/** A client's evaluation answered in the broker: the reply in place of V8's, and the outcome for the record. */
export interface BrokerEvaluation {
  readonly response: Protocol.Runtime.EvaluateResponse;
  readonly outcome: LoupeOutcome;
}

export interface FrameEvaluation {
  /** 'loupe': expressions are interpreted in the broker; 'v8': V8 runs them (a grant's privilege). */
  readonly kind: 'loupe' | 'v8';
  /** The target paused: its call frames as it sent them (before redaction). */
  paused(callFrames: readonly Protocol.Debugger.CallFrame[], prefetch: boolean): void;
  resumed(): void;
  /** Whether a breakpoint condition holds in the paused frame. Never throws. */
  condition(callFrameId: string, condition: string): Promise<ConditionVerdict>;
  /** A logpoint's message in the paused frame, within `budgetMs`; a refusal or error of a part as `<...>`. Never throws. */
  logpoint(callFrameId: string, template: LogTemplate, budgetMs: number): Promise<LogpointMessage>;
  /** [name, value] pairs of the sensitive values a probe (gate/targetScreen.ts) reads; undefined when it failed. */
  reachableValues(probe: { method: string; params: Record<string, unknown> }): Promise<[string, string][] | undefined>;
  /** Answers a client's Runtime.evaluate / Debugger.evaluateOnCallFrame in the broker (Loupe only; V8 otherwise). */
  evaluate?(expression: string, request: { callFrameId?: string; returnByValue?: boolean; objectGroup?: string }): Promise<BrokerEvaluation>;
}

export interface FrameEvaluationOptions {
  /** 'v8' only for a grant that carries that privilege. */
  readonly kind: 'loupe' | 'v8';
  readonly channel: TargetChannel;
  readonly limits: BrokerLimits;
  readonly redactor: Redactor;
  /** The target's policy now (a reload can make it stricter during the session). */
  readonly target: () => TargetConfig;
  /** The target's process facts, once read (values of the target that show one are tainted in Loupe). */
  readonly processFacts?: () => { factIn(text: string): string | undefined } | undefined;
}

/** The session's evaluation, chosen once when it starts. */
export function frameEvaluation(options: FrameEvaluationOptions): FrameEvaluation {
  return options.kind === 'v8' ? v8Evaluation(options.channel, options.limits.conditionTimeoutMs) : loupeEvaluation(options);
}

const globalPrefixes = /^(?:globalThis|global|window|self)\./;

/** The policy's evaluation.denyIdentifiers as a check of a dotted path the interpreter reads (`process.env.X`). */
export function denyCheck(deny: readonly string[]): (path: string) => string | undefined {
  return (path) => {
    let bare = path;
    while (globalPrefixes.test(bare)) bare = bare.replace(globalPrefixes, '');
    return deny.find((d) => bare === d || bare.startsWith(`${d}.`));
  };
}

/** Loupe expressions: the broker interprets them, reading the target through the session's own recorded commands. */
function loupeEvaluation({ channel, limits, redactor, target, processFacts }: FrameEvaluationOptions): FrameEvaluation {
  const evaluator = new SessionEvaluator({
    send: (method, params) => channel.command(method, params, { quiet: true }),
    redactor,
    // The interpreter bounds its result at the frame bound; the session then cuts it to evaluation.maxResultBytes
    // as it cuts V8's answers, with the same note.
    budget: () => ({ maxMs: limits.evaluateTimeoutMs, maxResultBytes: limits.maxTargetFrameBytes }),
    denied: () => denyCheck(target().evaluation.denyIdentifiers),
    // clientRelay.ts cuts and redacts each answer as it does V8's.
    redactsAnswers: true,
    ...(processFacts ? { processFacts } : {}),
  });
  const conditionBudget = () => ({ maxMs: limits.conditionTimeoutMs });
  return {
    kind: 'loupe',
    paused: (callFrames, prefetch) => evaluator.paused(callFrames, prefetch),
    resumed: () => evaluator.resumed(),
    async condition(callFrameId, condition) {
      try {
        const verdict = await evaluator.condition(callFrameId, condition, conditionBudget());
        const cost = { reads: verdict.reads, steps: verdict.steps };
        if ('tainted' in verdict) return { value: false, tainted: verdict.tainted, detail: `depends on the redacted field "${verdict.tainted}"`, ...cost };
        if ('error' in verdict) return { value: false, detail: `${verdict.refused ? 'refused' : 'threw'}: ${truncate(verdict.error, 200)}`, ...cost };
        return { value: verdict.value, ...cost };
      } catch (err) {
        return { value: false, detail: (err as Error).message };
      }
    },
    async logpoint(callFrameId, template, budgetMs) {
      try {
        const out = await evaluator.logpoint(callFrameId, template, { maxMs: budgetMs });
        const skippedParts = out.message.split('<skipped: budget>').length - 1;
        return { message: out.message, skippedParts, tainted: out.tainted };
      } catch (err) {
        return { message: template.literals.join(`<error: ${(err as Error).message}>`), skippedParts: 0 };
      }
    },
    // Nothing to learn ahead: the interpreter taints what it reads under a redacted name.
    reachableValues: async () => undefined,
    evaluate: inTurn(maxEvaluationsAtOnce, (expression: string, request: Parameters<SessionEvaluator['evaluate']>[1]) => evaluator.evaluate(expression, request)),
  };
}

/**
 * A session's evaluations running at once, at most: each may compute for its whole time bound (in slices, letting
 * the loop run between them), and a client sending many at once would otherwise take as many slices of every turn
 * of the broker's loop. Those past it wait their turn; each one's time bound starts when it runs.
 */
export const maxEvaluationsAtOnce = 4;

/** `run`, with at most `limit` calls running at once; the rest start in order as those end. */
function inTurn<A extends unknown[], R>(limit: number, run: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  let running = 0;
  const waiting: (() => void)[] = [];
  return async (...args) => {
    if (running >= limit) await new Promise<void>((start) => waiting.push(start));
    else running++;
    try {
      return await run(...args);
    } finally {
      const next = waiting.shift();
      if (next) next();
      else running--;
    }
  };
}

/** V8 evaluates, under throwOnSideEffect and a timeout, through the session's own (recorded) commands. */
export function v8Evaluation(channel: TargetChannel, conditionTimeoutMs: number): FrameEvaluation {
  const logpointPart = async (callFrameId: string, expression: string, timeoutMs: number): Promise<string> => {
    try {
      const result = await channel.command('Debugger.evaluateOnCallFrame', { callFrameId, expression, throwOnSideEffect: true, timeout: timeoutMs, silent: true });
      const details = result.exceptionDetails as { exception?: { description?: string } } | undefined;
      const value = result.result as { type: string; value?: unknown; description?: string } | undefined;
      if (details)
        return /Possible side-effect/.test(safeText(details.exception?.description ?? ''))
          ? '<refused: side effect>'
          : `<error: ${truncate(safeText(details.exception?.description ?? 'exception').split('\n')[0]!, 80)}>`;
      return safeText(value?.type === 'string' ? value.value : (value?.description ?? value?.value));
    } catch (err) {
      return `<error: ${(err as Error).message}>`;
    }
  };
  return {
    kind: 'v8',
    paused: () => undefined,
    resumed: () => undefined,
    async condition(callFrameId, condition) {
      try {
        const result = await channel.command('Debugger.evaluateOnCallFrame', {
          callFrameId,
          expression: conditionProbe(condition),
          throwOnSideEffect: true,
          timeout: conditionTimeoutMs,
          silent: true,
          returnByValue: true,
        });
        const details = result.exceptionDetails as { exception?: { description?: string }; text?: string } | undefined;
        if (details) return { value: false, detail: `refused or threw: ${truncate(details.exception?.description ?? details.text ?? 'exception', 200)}` };
        return { value: (result.result as { value?: unknown } | undefined)?.value === true };
      } catch (err) {
        return { value: false, detail: (err as Error).message };
      }
    },

    async logpoint(callFrameId, template, budgetMs) {
      // One budget for the whole message, not one per part: a duration of real work in the target, measured finely.
      const started = performance.now();
      const values: string[] = [];
      let skippedParts = 0;
      for (const expression of template.expressions) {
        const leftMs = Math.floor(budgetMs - (performance.now() - started));
        if (leftMs < 1) {
          values.push('<skipped: budget>');
          skippedParts++;
          continue;
        }
        values.push(await logpointPart(callFrameId, expression, leftMs));
      }
      return { message: template.literals.map((literal, i) => literal + (values[i] ?? '')).join(''), skippedParts };
    },

    async reachableValues(probe) {
      try {
        const result = await channel.command(probe.method, probe.params, { quiet: true });
        const pairs = (result.result as { value?: unknown } | undefined)?.value;
        return Array.isArray(pairs) ? (pairs as [string, string][]) : undefined;
      } catch {
        // The probe is bounded like any evaluation; what it could not read is still scrubbed by name and pattern.
        return undefined;
      }
    },
  };
}
