/**
 * Evaluating Loupe expressions (the entry points index.ts exports). Loupe expressions: the broker evaluates them itself, reading the target only through
 * Runtime.getProperties, so V8 never runs a user's expression (DESIGN.md, "Evaluation model").
 *
 * The session's three uses:
 * - Console, watch, hover: `evaluateLoupe(expression, options)` → `toEvaluateResponse(outcome)` is the reply
 *   the client gets in place of V8's (a refusal looks like V8's EvalError, where the Debug Console shows it).
 * - Breakpoint conditions: `evaluateCondition(condition, options)` on each pause; `{ tainted }` means the
 *   breakpoint must be disabled with a notice naming the field (a pause must never depend on a secret).
 * - Logpoints: `evaluateLogpoint({ literals, expressions }, options)`; each part separately, a tainted part
 *   prints the marker.
 * Parse once at breakpoint-set time with `parseLoupeExpression` to refuse a condition or logpoint part early.
 */
import type { Protocol } from 'devtools-protocol';
import { marker } from '../policy/redact';
import { defaultEvalBudget, LoupeRefusal, LoupeThrow, Spend, type EvalBudget } from './budget';
import { builtinCalls } from './builtins';
import { Interpreter, truthLabel } from './interpreter';
import { parseLoupeExpression } from './parse';
import type { RedactionContext } from './redaction';
import type { TargetReader } from './reader';
import { toRemoteObject } from './result';

export interface LoupeEvalOptions {
  /** Reads of the target; keep one per pause (its cache is valid while the target stays paused). */
  readonly reader: TargetReader;
  /** The paused frame (from Debugger.paused) whose scopes names resolve in; absent: the global scope. */
  readonly frame?: Protocol.Debugger.CallFrame;
  readonly redaction: RedactionContext;
  readonly budget?: Partial<EvalBudget>;
  /** Milliseconds, monotonic; defaults to performance.now. */
  readonly clock?: () => number;
  /** The client's returnByValue: objects of the target are read field by field into the value. */
  readonly returnByValue?: boolean;
  /** The policy's evaluation.denyIdentifiers as a check of a dotted path: the entry it falls under, if any. */
  readonly denied?: (path: string) => string | undefined;
  /**
   * The caller redacts the result's text by pattern itself, after cutting it to its bound (the session does, as for
   * any answer): a string result that is not tainted is then not scanned here, where a huge one would stall.
   */
  readonly redactedAfter?: boolean;
}

export interface LoupeCost {
  /** Runtime.getProperties calls (and the fixed global-scope reads) this evaluation made. */
  readonly reads: number;
  readonly steps: number;
  readonly ms: number;
}

export type LoupeOutcome =
  | ({ kind: 'value'; result: Protocol.Runtime.RemoteObject; /** Redacted names whose marker is in the result. */ tainted: string[] } & LoupeCost)
  | ({ kind: 'exception'; result: Protocol.Runtime.RemoteObject; exceptionDetails: Protocol.Runtime.ExceptionDetails } & LoupeCost)
  | ({ kind: 'refused'; refusal: { rule: LoupeRefusal['rule']; message: string } } & LoupeCost);

const budgetOf = (options: LoupeEvalOptions): EvalBudget => ({ ...defaultEvalBudget, ...options.budget });

const contextOf = (options: LoupeEvalOptions, spend: Spend) => ({
  reader: options.reader,
  spend,
  redaction: options.redaction,
  frame: options.frame,
  calls: builtinCalls,
  ...(options.denied ? { denied: options.denied } : {}),
});

function cost(spend: Spend): LoupeCost {
  return { reads: spend.reads, steps: spend.steps, ms: Math.round(spend.elapsed() * 1000) / 1000 };
}

/** Evaluates one expression. Never throws: every failure is an exception or a refusal outcome. */
export async function evaluateLoupe(source: string, options: LoupeEvalOptions): Promise<LoupeOutcome> {
  const budget = budgetOf(options);
  const spend = new Spend(budget, options.clock ?? (() => performance.now()));
  const parsed = parseLoupeExpression(source, budget);
  if (!parsed.ok) return { kind: 'refused', refusal: { rule: parsed.refusal.rule, message: parsed.refusal.message }, ...cost(spend) };
  const interp = new Interpreter(contextOf(options, spend), source);
  try {
    const value = await interp.eval(parsed.ast, undefined);
    const labels = new Set<string>();
    // An untainted string handed to a caller that redacts it after a cut (the session) is not scanned here in full.
    const plain = options.redactedAfter === true && value.kind === 'prim' && !value.taint && typeof value.value === 'string';
    const result = plain ? { type: 'string' as const, value: value.value } : await toRemoteObject(interp, value, options.returnByValue === true, labels);
    const bytes = JSON.stringify(result).length;
    if (bytes > budget.maxResultBytes) throw new LoupeRefusal('budget', `the expression needed a result of more than ${budget.maxResultBytes} bytes (Loupe's budget per evaluation)`);
    return { kind: 'value', result, tainted: [...labels], ...cost(spend) };
  } catch (error) {
    return failure(error, options.redaction, spend);
  }
}

function failure(error: unknown, redaction: RedactionContext, spend: Spend): LoupeOutcome {
  if (error instanceof LoupeRefusal) return { kind: 'refused', refusal: { rule: error.rule, message: clean(error.message, redaction) }, ...cost(spend) };
  if (error instanceof LoupeThrow) {
    const description = `${error.className}: ${clean(error.message, redaction)}`;
    const exception: Protocol.Runtime.RemoteObject = { type: 'object', subtype: 'error', className: error.className, description };
    return { kind: 'exception', result: exception, exceptionDetails: { exceptionId: 1, text: 'Uncaught', lineNumber: 0, columnNumber: 0, exception }, ...cost(spend) };
  }
  // A fault of the interpreter itself: refused, never thrown out of here.
  const message = error instanceof RangeError ? 'the expression was too deep for the interpreter' : `Loupe could not evaluate the expression (${(error as Error)?.message ?? String(error)})`;
  return { kind: 'refused', refusal: { rule: 'construct', message: clean(message, redaction) }, ...cost(spend) };
}

/** A message that would carry a value that looks secret is replaced (error texts quote the target). */
const clean = (message: string, redaction: RedactionContext) => {
  const secret = redaction.secretIn(message);
  if (!secret) return message;
  // The head before the first colon says what happened, unless it is where the secret is.
  const head = message.split(':')[0]!;
  const withheld = `(message withheld: it quoted ${marker(secret)})`;
  return head === message || redaction.secretIn(head) ? withheld : `${head}: ${withheld}`;
};

/** exceptionDetails.text of a refusal by Loupe. */
export const loupeRefusalText = 'Refused by Loupe';

/**
 * The reply to Runtime.evaluate / Debugger.evaluateOnCallFrame. A refusal is shaped like V8's EvalError
 * (result of subtype error plus exceptionDetails) so every client shows it where the expression was typed.
 */
export function toEvaluateResponse(outcome: LoupeOutcome): Protocol.Runtime.EvaluateResponse {
  if (outcome.kind === 'value') return { result: outcome.result };
  if (outcome.kind === 'exception') return { result: outcome.result, exceptionDetails: outcome.exceptionDetails };
  // Clients show the exception's description (js-debug, DevTools): it says whose refusal it is.
  const description = `EvalError: ${loupeRefusalText}: ${outcome.refusal.message}`;
  const exception: Protocol.Runtime.RemoteObject = { type: 'object', subtype: 'error', className: 'EvalError', description };
  // The text tells a client it is Loupe's refusal, not an EvalError of the app (V8 says 'Uncaught').
  return { result: exception, exceptionDetails: { exceptionId: 1, text: loupeRefusalText, lineNumber: 0, columnNumber: 0, exception } };
}

export type ConditionVerdict =
  | ({ value: boolean } & LoupeCost)
  /** The decision depends on a redacted value: disable the breakpoint, naming it. */
  | ({ tainted: string } & LoupeCost)
  /** The condition threw (V8 counts that as false) or was refused. */
  | ({ error: string; refused: boolean } & LoupeCost);

/** A breakpoint condition's verdict; never a pause that depends on a secret. */
export async function evaluateCondition(condition: string, options: LoupeEvalOptions): Promise<ConditionVerdict> {
  const budget = budgetOf(options);
  const spend = new Spend(budget, options.clock ?? (() => performance.now()));
  const parsed = parseLoupeExpression(condition, budget);
  if (!parsed.ok) return { error: parsed.refusal.message, refused: true, ...cost(spend) };
  const interp = new Interpreter(contextOf(options, spend), condition);
  try {
    const value = await interp.eval(parsed.ast, undefined);
    const label = truthLabel(value);
    if (label) return { tainted: label, ...cost(spend) };
    return { value: value.kind === 'prim' ? Boolean(value.value) : true, ...cost(spend) };
  } catch (error) {
    const outcome = failure(error, options.redaction, spend);
    if (outcome.kind === 'refused') return { error: outcome.refusal.message, refused: true, ...cost(spend) };
    return { error: outcome.kind === 'exception' ? (outcome.result.description ?? 'exception') : 'exception', refused: false, ...cost(spend) };
  }
}

export interface LogpointTemplate {
  readonly literals: readonly string[];
  readonly expressions: readonly string[];
}

/** A logpoint message: each `{part}` evaluated on its own; one time budget for the whole message. */
export async function evaluateLogpoint(template: LogpointTemplate, options: LoupeEvalOptions): Promise<{ message: string; tainted: string[]; refusedParts: number } & LoupeCost> {
  const budget = budgetOf(options);
  const clock = options.clock ?? (() => performance.now());
  const started = clock();
  let reads = 0;
  let steps = 0;
  let refusedParts = 0;
  const tainted = new Set<string>();
  const values: string[] = [];
  for (const expression of template.expressions) {
    const left = budget.maxMs - (clock() - started);
    if (left < 1) {
      values.push('<skipped: budget>');
      continue;
    }
    const outcome = await evaluateLoupe(expression, { ...options, clock, budget: { ...budget, maxMs: left } });
    reads += outcome.reads;
    steps += outcome.steps;
    if (outcome.kind === 'refused') {
      refusedParts++;
      values.push(`<refused: ${outcome.refusal.message}>`);
    } else if (outcome.kind === 'exception') values.push(`<error: ${outcome.result.description ?? 'exception'}>`);
    else {
      for (const t of outcome.tainted) tainted.add(t);
      values.push(logText(outcome.result));
    }
  }
  const message = template.literals.map((literal, i) => literal + (values[i] ?? '')).join('');
  return { message, tainted: [...tainted], refusedParts, reads, steps, ms: Math.round((clock() - started) * 1000) / 1000 };
}

/** How a logpoint prints a value: strings bare, by-value containers as JSON, the rest by description. */
function logText(result: Protocol.Runtime.RemoteObject): string {
  if (result.type === 'string') return String(result.value);
  if (result.type === 'undefined') return 'undefined';
  if (result.value !== undefined && result.type === 'object' && result.subtype !== 'null') return JSON.stringify(result.value);
  return result.description ?? String(result.value);
}
